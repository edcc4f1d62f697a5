"""``harmony data``: look at the data a run will use (``preview``), or make a miniature ImageNet to try
the real loaders with (``make-miniature``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from ..outputs import check_file_target, check_writable_place, store_files, write_new_file

app = typer.Typer(help="Inspect data sets; make a miniature ImageNet + ImageNet-S.", no_args_is_help=True)


def preview_grid(datamodule, out: Path, split: str = "train", n: int = 32, force: bool = False) -> Path:
    """Write lightning_modules.plots.data_preview_figure of ``split`` to the PNG ``out`` (atomically)."""
    from lightning_modules.plots import data_preview_figure  # torch: only when a preview is drawn

    fig = data_preview_figure(datamodule, split=split, n=n)
    write_new_file(out, lambda temp: fig.savefig(temp, dpi=110, format="png"), force=force)
    return out


@app.command("preview")
def preview(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides, e.g. data=imagenet data.root=/data"),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG file to write [default: data_preview.png in the "
                                                            "outputs folder, paths.outputs]."),
    split: str = typer.Option("train", help="train, val or test."),
    n: int = typer.Option(32, help="How many items."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
) -> None:
    """Write a PNG grid of examples with their mask outlines."""
    from hydra.utils import instantiate
    from rich import print as rprint

    from ..hydra_app import compose_config

    cfg = compose_config(overrides or [], task="data")  # a bad override is the first thing to fix
    out = out if out is not None else Path(cfg.paths.outputs) / "data_preview.png"
    check_file_target(out, "--out", force, store_files(None))
    check_writable_place(out, "--out")
    datamodule = instantiate(cfg.data)
    path = preview_grid(datamodule, out, split=split, n=n, force=force)
    rprint(f"wrote [bold]{path}[/]")


STANDIN_ARCHS = ("resnet18", "vgg16")


@app.command("make-miniature")
def make_miniature_command(
    path: Path = typer.Argument(..., help="A new (or empty) folder to write the miniature into."),
    classes: int = typer.Option(4, help="Classes with images (1-8; the mapping still lists 1000)."),
    image_size: int = typer.Option(80, help="Side of the square images in pixels."),
    weights: str = typer.Option("resnet18,vgg16", help="Stand-in IMAGENET1K_V1 files to write under "
                                "PATH/torch_home (comma-separated archs, or 'none'); vgg16's is 527 MB."),
    weights_image_size: int = typer.Option(64, help="The data.image_size the runs will use: the stand-ins' "
                                           "heads are fitted at it."),
    seed: int = typer.Option(0, help="Seed of the drawings and of the stand-ins' random weights."),
) -> None:
    """Write a miniature ILSVRC-2012 + ImageNet-S tree (synthetic shapes as JPEGs, masks, CSVs) in seconds."""
    from rich.console import Console

    from lightning_modules.backbones.standin import check_standin_image_size
    from lightning_modules.data.miniature import make_miniature

    rprint = Console(soft_wrap=True, highlight=False).print  # whole lines: the paths are copied from here

    archs = [] if weights.strip().lower() == "none" else [a.strip() for a in weights.split(",") if a.strip()]
    unknown = sorted(set(archs) - set(STANDIN_ARCHS))
    if unknown:
        raise UserError(f"--weights {unknown[0]} has no stand-in: use {', '.join(STANDIN_ARCHS)} or none")
    if seed < 0:
        raise UserError(f"--seed {seed} must be a whole number of at least 0")
    check_standin_image_size(archs, weights_image_size)  # before the tree is written
    tree = make_miniature(path, classes=classes, image_size=image_size, seed=seed)
    counts = ", ".join(f"{n} {part}" for part, n in tree.counts.items())
    rprint(f"wrote a miniature of {len(tree.wnids)} classes ({counts} images) in [bold]{tree.root}[/]")
    rprint(f"  paper.imagenet_root={tree.imagenet_root} paper.imagenet_s_root={tree.imagenet_s_root}")
    if archs:
        from lightning_modules.backbones.standin import write_miniature_standins

        torch_home = tree.root / "torch_home"
        files = write_miniature_standins(tree.imagenet_root, archs, torch_home, image_size=weights_image_size,
                                         seed=seed)
        rprint(f"  stand-in weights (random features, head fitted on the miniature; not pretrained): "
               f"{', '.join(f.name for f in files)}; use them with TORCH_HOME={torch_home}")


@app.command("train-base")
def train_base_command(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides, e.g. seed=1 backbone=resnet18"),
) -> None:
    """Train the base model by backbone.auto's recipe (never from the shipped weights): how the weights
    harmony ships for the embedded default are reproduced. Prints the file and the name it ships under."""
    import logging
    import sys

    from hydra.utils import instantiate
    from rich.console import Console

    from lightning_modules.backbones.weights import train_base

    from ..hydra_app import compose_config

    cfg = compose_config(overrides or [], task="data")
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.backbone.model)
    path, shipped = train_base(model, str(cfg.backbone.name), datamodule, cfg.backbone.cache_dir,
                               dict(cfg.backbone.auto))
    rprint = Console(soft_wrap=True, highlight=False).print  # whole lines: the paths are copied from here
    rprint(f"trained {cfg.backbone.name}: {path}")
    rprint(f"  to ship it: cp {path} lightning_modules/backbones/shipped/{shipped}")
