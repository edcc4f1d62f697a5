"""PNG figures of a fine-tuning run: maps of both models on the same images, and the validation curves."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from .data import denormalize as imagenet_denormalize
from .io import atomic_path


def normalize_map(attribution: Tensor) -> Tensor:
    """(H,W) map -> [0,1] for display: positive relevance over its maximum (negative relevance shown as 0)."""
    positive = attribution.clamp(min=0)
    top = positive.max()
    return positive / top if top > 0 else positive


def _maps(explainer, x: Tensor, y: Tensor) -> Tensor:
    return explainer(x, y).detach().cpu()[:, 0]


def _map_rows(fig, grid, module, dataset, n_images: int, denormalize=None) -> None:
    """Rows 1-3 of the figure: the first ``n_images`` of ``dataset``, the original's and the fine-tuned maps."""
    items = [dataset[i] for i in range(min(n_images, len(dataset)))]
    items = [item for item in items if item is not None]
    if not items:  # finetune.plot_images=0: the curves only
        return
    denormalize = imagenet_denormalize if denormalize is None else denormalize
    device = next(module.finetuned.parameters()).device
    x = torch.stack([item["image"] for item in items]).to(device)
    y = torch.tensor([int(item["label"]) for item in items], device=device)
    original_maps = _maps(module.explainer("original"), x, y)
    finetuned_maps = _maps(module.explainer("finetuned"), x, y)
    images = denormalize(x.cpu()).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i in range(len(items)):
        for row, (title, picture) in enumerate([("image", None), ("original", original_maps[i]),
                                                ("fine-tuned", finetuned_maps[i])]):
            ax = fig.add_subplot(grid[row, i])
            ax.imshow(images[i])
            if picture is not None:
                ax.imshow(normalize_map(picture).numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(str(items[i].get("class_name", y[i].item()))[:18], fontsize=7)
            if i == 0:
                ax.set_ylabel(title, fontsize=8)
            if "mask" in items[i] and row > 0:
                ax.contour(items[i]["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.6)


def _curves(fig, grid, history: list[dict[str, float]], summary: dict) -> None:
    """The last row: validation curves of the metric, the agreement (with its floor) and the accuracy."""
    name = summary["metric"]
    steps = [row["step"] for row in history]
    panels = [
        (f"{name} ({'higher' if summary.get('higher_is_better', True) else 'lower'} is better)",
         [(f"val/{name}", "fine-tuned"), (f"val/{name}_original", "original")], None),
        ("prediction agreement", [("val/agreement", "fine-tuned vs original")], summary.get("min_agreement")),
        ("accuracy", [("val/accuracy", "fine-tuned"), ("val/accuracy_original", "original")], None),
    ]
    curve_grid = grid[3, :].subgridspec(1, 3, wspace=0.35)
    for k, (title, series, floor) in enumerate(panels):
        ax = fig.add_subplot(curve_grid[0, k])
        for (key, label), style in zip(series, ("-", "--")):
            values = [row.get(key, float("nan")) for row in history]
            ax.plot(steps, values, style, marker="o", markersize=3, label=label)
        if floor is not None:
            ax.axhline(floor, color="grey", linestyle="--", linewidth=0.8, label=f"floor {floor:g}")
        if summary.get("best_step") is not None:
            ax.axvline(summary["best_step"], color="green", linestyle=":", linewidth=1, label="best checkpoint")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)


def finetune_figure(module, dataset, history: list[dict[str, float]], summary: dict, out: str | os.PathLike,
                    n_images: int = 8, denormalize=None) -> Path:
    """Write ``out``: row 1 the first ``n_images`` of ``dataset``, rows 2-3 the original's and the
    fine-tuned model's maps of their label, then the validation curves (metric of both models,
    prediction agreement with its floor, accuracy of both) with the best step marked.

    module: a FinetuneModule (``original``, ``finetuned``, ``explainer(which)``).
    history: validation rows (``step``, ``val/<metric>``, ``val/<metric>_original``, ``val/agreement``, ...).
    summary: the run's metrics.json content.
    denormalize: the data module's inverse of its normalization, for the images (None: ImageNet's).
    """
    columns = max(min(n_images, len(dataset)), 3)
    fig = Figure(figsize=(1.7 * columns, 1.7 * 3 + 2.8))  # no pyplot: no global figure or backend to manage
    grid = fig.add_gridspec(4, columns, height_ratios=[1, 1, 1, 1.5], hspace=0.25, wspace=0.05)
    _map_rows(fig, grid, module, dataset, n_images, denormalize)
    _curves(fig, grid, history, summary)
    fig.suptitle(f"{summary['metric']} / {summary['attribution']} / {summary['backbone']} on "
                 f"{summary.get('data', '')}: original {summary['original_score']:.3f} -> fine-tuned "
                 f"{summary['finetuned_score']:.3f}, agreement {summary['agreement']:.3f}, {summary['steps']} steps",
                 fontsize=9)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return out


def data_preview_figure(datamodule, split: str = "train", n: int = 32, columns: int = 8) -> Figure:
    """A grid of the first ``n`` items of ``split`` (a LightningDataModule with ``split`` and
    ``denormalize``), each titled with its class and outlined with its mask when it has one."""
    dataset = datamodule.split(split)
    n = min(n, len(dataset))
    rows = (n + columns - 1) // columns
    fig = Figure(figsize=(columns * 1.6, rows * 1.8))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in zip(range(n), axes.flat):
        item = dataset[i]
        if item is None:
            continue
        ax.imshow(datamodule.denormalize(item["image"]).permute(1, 2, 0).numpy())
        if "mask" in item:
            ax.contour(item["mask"][0].numpy(), levels=[0.5], colors="white", linewidths=0.8)
        ax.set_title(item["class_name"], fontsize=7)
    fig.suptitle(f"{datamodule.name} / {split}: first {n} items (white: object mask)", fontsize=9)
    fig.tight_layout()
    return fig
