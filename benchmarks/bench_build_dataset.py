"""build-dataset throughput: examples per second, batched vs one image at a time.

    python benchmarks/bench_build_dataset.py [--quick] [--threads N]

One example = both models' maps for the true class, both models' RMA scores,
five PNGs rendered and written (image, two overlays, two heatmaps), as
``harmony build-dataset`` does per example. Models: resnet18 with random
weights (original and a perturbed copy as the "fine-tuned" one), 8 classes;
images at 64x64 (the synthetic default) and 224x224 (ImageNet), rendered at
224. ours = the batched pipeline (study.batch_size images per call), reference
= the same pipeline on one image at a time; ratio = reference / ours, target
>= 1 (batching is no slower). ``main()`` returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from rich.table import Table

from harmony_cli.study.pairs import explain_and_score, write_example_files
from harmony_cli.study.rendering import RenderSettings, render_pairs
from lightning_modules.attributions import GradCAM, GuidedBackprop
from lightning_modules.backbones import torchvision_classifier
from lightning_modules.metrics import RelevanceMassAccuracy
from console import table_console  # benchmarks/console.py, beside this file

EXPLAINERS = {
    "gradcam": lambda model: GradCAM(model, "layer4"),
    "guided_backprop": GuidedBackprop,
}


def pipeline_seconds(original, finetuned, make_explainer, metric, x, y, masks, batch_size: int, folder: Path,
                     settings: RenderSettings) -> float:
    """Wall seconds to turn all of ``x`` into stored-ready examples, ``batch_size`` images at a time."""
    start = time.perf_counter()
    for i in range(0, len(x), batch_size):
        xb, yb, mb = x[i:i + batch_size], y[i:i + batch_size], masks[i:i + batch_size]
        pair = explain_and_score(original, finetuned, make_explainer, metric, xb, yb, mb)
        rendered = render_pairs(xb, pair.original_maps, pair.finetuned_maps, settings)
        for j in range(len(xb)):
            write_example_files(folder, rendered, j)
    return time.perf_counter() - start


def box_masks(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n,1,size,size) masks of random boxes covering about a quarter of the image."""
    masks = torch.zeros(n, 1, size, size)
    for k in range(n):
        top, left = torch.randint(0, size // 2, (2,), generator=generator).tolist()
        masks[k, :, top:top + size // 2, left:left + size // 2] = 1
    return masks


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few examples (a smoke run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 3)
    n, batch_size = (4, 4) if args.quick else (32, 32)
    warnings.filterwarnings("ignore", message=".*backward hooks.*")
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    original = torchvision_classifier("resnet18", 8).eval()
    finetuned = copy.deepcopy(original)
    with torch.no_grad():
        for p in finetuned.parameters():
            p.add_(0.01 * torch.randn_like(p))
    metric = RelevanceMassAccuracy()
    settings = RenderSettings.defaults(image_size=224)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (64, 224):
            x = torch.randn(n, 3, size, size, generator=generator)
            y = torch.randint(0, 8, (n,), generator=generator)
            masks = box_masks(n, size, generator)
            for attribution, make_explainer in EXPLAINERS.items():
                def run(bs: int) -> float:
                    return pipeline_seconds(original, finetuned, make_explainer, metric, x, y, masks, bs,
                                            Path(tmp) / f"{attribution}-{size}-{bs}", settings)

                run(batch_size)  # warm-up (allocator, colormap table, thread pools)
                ours_s = statistics.median(run(batch_size) for _ in range(repeats))
                reference_s = statistics.median(run(1) for _ in range(repeats))
                ratio = reference_s / ours_s
                rows.append({"benchmark": f"build-dataset {attribution}", "case": f"resnet18 {size}px x{n}",
                             "ours_s": ours_s, "reference_s": reference_s, "ratio": ratio, "target": ">= 1.0",
                             "ok": ratio >= 1.0, "examples_per_s": n / ours_s,
                             "reference_examples_per_s": n / reference_s})

    table = Table(title=f"build-dataset throughput ({args.threads} threads, {n} examples, median of {repeats}; "
                        f"ours: batches of {batch_size}, reference: one image at a time)")
    for column in ("benchmark", "case", "ours s", "reference s", "ours ex/s", "reference ex/s", "ratio", "target", "ok"):
        table.add_column(column, justify="left" if column in ("benchmark", "case", "target", "ok") else "right")
    for row in rows:
        table.add_row(row["benchmark"], row["case"], f"{row['ours_s']:.3f}", f"{row['reference_s']:.3f}",
                      f"{row['examples_per_s']:.1f}", f"{row['reference_examples_per_s']:.1f}",
                      f"{row['ratio']:.2f}", row["target"], "yes" if row["ok"] else "NO")
    table_console().print(table)
    return rows


if __name__ == "__main__":
    main()
