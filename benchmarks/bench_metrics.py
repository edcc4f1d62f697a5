"""Metric speed and agreement: ours vs Quantus 0.6 on the same inputs, in the same run.

    python benchmarks/bench_metrics.py [--quick] [--threads N] [--only rma focus road irof ris]

Cases (CPU, random weights, eval mode): TinyCNN on 64x64 synthetic images and
torchvision resnet18 on 224x224, a batch of 32 (``--quick``: 4 images, 32x32 / 64x64).
Maps are smooth random maps (no ties, so both sides rank pixels identically); RIS uses
GradCAM. ratio = Quantus / ours. Targets: RMA, Focus >= 100x; ROAD >= 3x, IROF >= 1.5x,
RIS >= 2x, and each of these three within 1.5x of its *floor*: the time of the model
passes it needs, run as plain batched passes (``model(x)`` per batch of B under
inference_mode; for RIS, explain(x, y) per batch of B) in the same run.

Quantus needs help on RGB input (see lightning_modules/metrics/road.py, irof.py):
ROAD runs Quantus' own evaluate loop and imputation with the map ranked per pixel,
IROF runs with the superpixel mask broadcast to the channels and our per-image mean
baseline (its default baseline depends on the whole batch), and ``np.trapz`` is
aliased to ``np.trapezoid``. ROAD runs with noise=0 on both sides so that the values
compare (the noise costs nothing measurable). ``max_abs_diff`` compares per-image
values: ROAD 1 - mean MoRF accuracy; IROF in Quantus' units (n - trapz, with its
zero-padding); RIS with Quantus' NaN-on-prediction-change rule and replayed draws.
``main()`` returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from rich.table import Table

from lightning_modules.attributions import GradCAM
from lightning_modules.backbones import TinyCNN, torchvision_classifier
from lightning_modules.data.synthetic import normalized_batch
from lightning_modules.metrics import (focus, irof_curves, make_mosaics, relative_input_stability,
                                       relevance_mass_accuracy, road_curve)
from console import table_console  # benchmarks/console.py, beside this file

METRICS = ("rma", "focus", "road", "irof", "ris")


def seconds(fn, repeats: int = 1) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls (less disturbed by other load than a mean) and the last result."""
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def synthetic(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n synthetic test images (normalized), their object masks and class labels."""
    x, labels, masks = normalized_batch(n, size)
    return x, masks, labels


def smooth_maps(n: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 7, 7, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def cases(quick: bool):
    """(name, model, GradCAM layer, x, y = the model's predictions, masks, the images' class labels)."""
    batch = 4 if quick else 32
    torch.manual_seed(0)
    for name, model, layer, size in (("tiny", TinyCNN(8), "features.20", 32 if quick else 64),
                                     ("resnet18", torchvision_classifier("resnet18", 1000), "layer4",
                                      64 if quick else 224)):
        model.eval()
        x, masks, labels = synthetic(batch, size)
        with torch.no_grad():
            y = model(x).argmax(1)  # the model's own predictions: the MoRF curves start at 1
        yield f"{name} {batch}x3x{size}x{size}", model, layer, x, y, masks, labels


def plain_passes_seconds(model, x, passes: int) -> float:
    """The floor: ``passes`` plain batched forward passes of x."""
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(passes):
            model(x)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- Quantus on RGB

def quantus_road_rgb(quantus):
    """Quantus' ROAD with its own imputation and loop, ranking the map per pixel (its RGB bug fixed)."""
    from quantus.helpers.model.model_interface import ModelInterface

    class PixelROAD(quantus.ROAD):
        def evaluate_batch(self, model: ModelInterface, x_batch, y_batch, a_batch, **kwargs):
            batch_size = a_batch.shape[0]
            ordered = np.argsort(-a_batch.reshape(batch_size, -1), axis=1)  # (B,1,H,W): per pixel
            results = []
            for p in self.percentages:
                top_k = ordered[:, : int(self.a_size * p / 100)]
                perturbed = np.stack([self.perturb_func(arr=x, indices=k) for x, k in zip(x_batch, top_k)])
                x_input = model.shape_input(perturbed, x_batch.shape, channel_first=True, batched=True)
                results.append(y_batch == np.argmax(model.predict(x_input), axis=-1))
            return [np.stack(results, axis=1).astype(int)]

        def custom_postprocess(self, **kwargs):  # keep the per-image curves
            self.evaluation_scores = np.concatenate(self.evaluation_scores, axis=0)

    return PixelROAD


def broadcast_mask_replacement(arr, mask, **kwargs):
    from quantus.functions.perturb_func import baseline_replacement_by_mask

    return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)


def max_abs_diff(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return math.inf
    both = ~np.isnan(a)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


# ----------------------------------------------------------------------------- one metric

def bench_metric(metric: str, quantus, model, layer, x, y, masks, labels, quick: bool, repeats: int) -> dict:
    b, _, h, w = x.shape
    maps = smooth_maps(b, h)
    row: dict = {}
    if metric == "rma":
        positive = maps.clamp_min(0)
        reference = quantus.RelevanceMassAccuracy(disable_warnings=True)
        ours_s, ours = seconds(lambda: relevance_mass_accuracy(maps, masks), repeats * 5)
        ref_s, ref = seconds(lambda: reference(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                               a_batch=positive.numpy(), s_batch=masks.numpy()), repeats)
        row.update(target=">= 100x", ok=ref_s / ours_s >= 100, diff=max_abs_diff(ours, ref))
    elif metric == "focus":
        mosaics, labels, quadrants = make_mosaics(x, labels)  # random weights predict one class
        mosaic_maps = smooth_maps(b, 2 * h, seed=1)
        reference = quantus.Focus(disable_warnings=True)
        ours_s, ours = seconds(lambda: focus(mosaic_maps, quadrants), repeats * 5)
        ref_s, ref = seconds(lambda: reference(model=model, x_batch=mosaics.numpy(), y_batch=labels.numpy(),
                                               a_batch=mosaic_maps.numpy(), custom_batch=quadrants.int().numpy()),
                             repeats)
        row.update(target=">= 100x", ok=ref_s / ours_s >= 100, diff=max_abs_diff(ours, ref))
    elif metric == "road":
        percentages = list(range(5, 95, 9))
        floor_s = plain_passes_seconds(model, x, len(percentages))
        ours_s, curve = seconds(lambda: road_curve(model, x, y, maps, percentages, noise=0.0))
        reference = quantus_road_rgb(quantus)(percentages=percentages, noise=0.0, disable_warnings=True)
        ref_s, ref = seconds(lambda: reference(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                               a_batch=maps.numpy(), device="cpu", batch_size=b))
        ours_values = 1 - curve.float().mean(1).numpy()
        ref_values = 1 - np.asarray(ref, dtype=np.float64).mean(1)
        row.update(floor_s=floor_s, target=">= 3x, <= 1.5x floor",
                   ok=ref_s / ours_s >= 3 and ours_s / floor_s <= 1.5, diff=max_abs_diff(ours_values, ref_values))
    elif metric == "irof":
        baseline = x.mean(dim=(2, 3), keepdim=True)
        ours_s, (curves, counts) = seconds(lambda: irof_curves(model, x, y, maps, baseline=baseline))
        floor_s = plain_passes_seconds(model, x, math.ceil((int(counts.sum()) + b) / b))
        reference = quantus.IROF(return_aggregate=False, perturb_func=broadcast_mask_replacement,
                                 perturb_baseline=baseline.expand_as(x).numpy(), disable_warnings=True)
        ref_s, ref = seconds(lambda: reference(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                               a_batch=maps.numpy(), device="cpu", batch_size=b))
        # Quantus' value from our curves: n - trapz over the zero-padded curve (its batch padding)
        ours_in_quantus_units = counts.double().numpy() - np.trapezoid(curves.numpy(), dx=1, axis=1)
        row.update(floor_s=floor_s, target=">= 1.5x, <= 1.5x floor",
                   ok=ref_s / ours_s >= 1.5 and ours_s / floor_s <= 1.5,
                   diff=max_abs_diff(ours_in_quantus_units, ref))
    elif metric == "ris":
        n_samples = 3 if quick else 10
        explain = GradCAM(model, layer)

        def explain_seconds():
            explain(x, y)
            start = time.perf_counter()
            for _ in range(n_samples + 1):
                explain(x, y)
            return time.perf_counter() - start

        floor_s = explain_seconds()
        np.random.seed(0)
        draws = np.stack([np.random.uniform(0.02, 0.2, size=(b, x[0].numel())) for _ in range(n_samples)])
        perturbations = torch.from_numpy(draws).view(n_samples, *x.shape)
        ours_s, ours = seconds(lambda: relative_input_stability(model, x, y, explain, perturbations=perturbations,
                                                                nan_on_prediction_change=True))

        def quantus_explain(model, inputs, targets, **kwargs):
            return explain(torch.from_numpy(inputs).float(), torch.from_numpy(np.asarray(targets)).long()).numpy()

        reference = quantus.RelativeInputStability(nr_samples=n_samples, disable_warnings=True)
        np.random.seed(0)
        ref_s, ref = seconds(lambda: reference(model=model, x_batch=x.numpy(), y_batch=y.numpy(),
                                               explain_func=quantus_explain, device="cpu", batch_size=b))
        row.update(floor_s=floor_s, target=">= 2x, <= 1.5x floor",
                   ok=ref_s / ours_s >= 2 and ours_s / floor_s <= 1.5, diff=max_abs_diff(ours, ref))
    row.update(ours_s=ours_s, reference_s=ref_s, ratio=ref_s / ours_s)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 images of 32x32 / 64x64 (a smoke run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the fast metrics (best reported)")
    parser.add_argument("--only", nargs="*", choices=METRICS, default=list(METRICS))
    args, _ = parser.parse_known_args(argv)  # a collector may call main() with its own flags
    torch.set_num_threads(args.threads)
    import quantus

    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # Quantus 0.6 calls np.trapz, removed in NumPy 2.4
    warnings.filterwarnings("ignore", module=r"quantus\.")
    rows = []
    for case, model, layer, x, y, masks, labels in cases(args.quick):
        for metric in args.only:
            print(f"  {metric} {case} ...", flush=True)
            row = bench_metric(metric, quantus, model, layer, x, y, masks, labels, args.quick, args.repeats)
            floor = row.get("floor_s")
            notes = f"floor {floor:.3g} s, ours/floor {row['ours_s'] / floor:.2f}" if floor else ""
            rows.append({"benchmark": "metric vs Quantus 0.6", "case": f"{metric} {case}", "ours_s": row["ours_s"],
                         "reference_s": row["reference_s"], "ratio": row["ratio"], "target": row["target"],
                         "ok": bool(row["ok"]), "max_abs_diff": row["diff"], "floor_s": floor, "notes": notes})
    table = Table(title=f"metrics vs Quantus 0.6 ({args.threads} threads)")
    for column in ("case", "ours s", "Quantus s", "ratio", "floor s", "ours/floor", "target", "ok", "max |diff|"):
        table.add_column(column, justify="left" if column in ("case", "target") else "right")
    for r in rows:
        floor = r["floor_s"]
        table.add_row(r["case"], f"{r['ours_s']:.4g}", f"{r['reference_s']:.4g}", f"{r['ratio']:.1f}",
                      f"{floor:.4g}" if floor else "", f"{r['ours_s'] / floor:.2f}" if floor else "", r["target"],
                      "yes" if r["ok"] else "NO", f"{r['max_abs_diff']:.2g}")
    table_console().print(table)
    return rows


if __name__ == "__main__":
    main()
