"""How many perturbation samples RIS needs: the n-sample estimate against the 200-sample one.

    python benchmarks/ris_sample_count.py [--images 64] [--methods gradcam ...]

On the embedded default (the trained ``tiny`` backbone on synthetic 64x64 test images,
weights from ``HARMONY_TEST_CACHE`` or outputs/test-cache), RIS is estimated with n
samples for several n from the same seeded draws (the n-sample draws are the first n of
the 200: the estimate is a running max). Reported per n: the mean over images of
``RIS_n / RIS_200`` (the share of the 200-sample value reached) and its 5th percentile.
The default ``n_samples`` of :class:`lightning_modules.metrics.RelativeInputStability`
is the smallest n whose mean share is >= 0.98 (within 2%).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from lightning_modules import attributions
from lightning_modules.backbones import TinyCNN, build_backbone
from lightning_modules.data import SyntheticDataModule
from lightning_modules.metrics import relative_input_stability
from console import table_console  # benchmarks/console.py, beside this file

COUNTS = (10, 20, 30, 50, 80, 100, 150, 200)
METHODS = {"gradcam": lambda m: attributions.GradCAM(m, "features.20"),
           "guided_backprop": attributions.GuidedBackprop,
           "input_x_gradient": attributions.InputXGradient}


def running_max(model, x, y, explain, step: int = 10) -> dict[int, np.ndarray]:
    """RIS_n for every n in COUNTS from one set of 200 draws: the max over the first n samples,
    in blocks of ``step`` replayed through ``perturbations=`` (uniform in [0.02, 0.2], as the default)."""
    generator = torch.Generator().manual_seed(0)
    best, out = None, {}
    for start in range(0, COUNTS[-1], step):
        delta = 0.02 + 0.18 * torch.rand((step, *x.shape), generator=generator)
        block = relative_input_stability(model, x, y, explain, perturbations=delta, batch_size=x.shape[0]).numpy()
        best = block if best is None else np.fmax(best, block)
        if start + step in COUNTS:
            out[start + step] = best.copy()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--methods", nargs="+", default=["gradcam"])
    args = parser.parse_args(argv)
    cache = Path(os.environ.get("HARMONY_TEST_CACHE", "outputs/test-cache"))
    dm = SyntheticDataModule(cache_dir=cache / "cache")
    dm.setup()
    model = build_backbone(TinyCNN(num_classes=8), name="tiny", weights="auto", gradcam_layer="features.20",
                           datamodule=dm, cache_dir=cache / "models").eval()
    batch = next(iter(dm.test_dataloader()))
    x, y = batch["image"][:args.images], batch["label"][:args.images]
    results = {}
    for name in args.methods:
        explain = METHODS[name](model)
        per_n = running_max(model, x, y, explain)
        full = per_n[COUNTS[-1]]
        valid = np.isfinite(full) & (full > 0)
        results[name] = {n: (float(np.mean(v[valid] / full[valid])), float(np.percentile(v[valid] / full[valid], 5)))
                         for n, v in per_n.items()}
    table = Table(title=f"RIS_n / RIS_200 on {len(x)} synthetic test images (tiny, trained)")
    table.add_column("n")
    for name in args.methods:
        table.add_column(f"{name} mean")
        table.add_column(f"{name} p5")
    for n in COUNTS:
        table.add_row(str(n), *[f"{results[m][n][k]:.4f}" for m in args.methods for k in (0, 1)])
    table_console().print(table)
    return results


if __name__ == "__main__":
    main()
