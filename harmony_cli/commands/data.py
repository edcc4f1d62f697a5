"""``harmony data preview``: look at the data a run will use."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(help="Inspect data sets.", no_args_is_help=True)


def preview_grid(datamodule, out: Path, split: str = "train", n: int = 32, columns: int = 8) -> Path:
    """Write a PNG grid of ``n`` items of ``split`` with their class and mask outline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lightning_modules.data import denormalize

    dataset = datamodule.split(split)
    n = min(n, len(dataset))
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.8), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(n), axes.flat):
        item = dataset[i]
        if item is None:
            continue
        ax.imshow(denormalize(item["image"]).permute(1, 2, 0).numpy())
        if "mask" in item:
            ax.contour(item["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(item["class_name"], fontsize=7)
    fig.suptitle(f"{datamodule.name} / {split}: first {n} items (white: object mask)", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


@app.command("preview")
def preview(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides, e.g. data=imagenet data.root=/data"),
    out: Path = typer.Option(Path("outputs/data_preview.png"), "--out", help="PNG file to write."),
    split: str = typer.Option("train", help="train, val or test."),
    n: int = typer.Option(32, help="How many items."),
) -> None:
    """Write a PNG grid of examples with their mask outlines."""
    from hydra.utils import instantiate
    from rich import print as rprint

    from ..hydra_app import compose_config

    cfg = compose_config(overrides or [], task="data")
    datamodule = instantiate(cfg.data)
    path = preview_grid(datamodule, out, split=split, n=n)
    rprint(f"wrote [bold]{path}[/]")
