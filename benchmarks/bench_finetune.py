"""Fine-tuning cost per metric family, and what a default run achieves per metric.

    python benchmarks/bench_finetune.py [--quick] [--no-runs] [--no-study-code] [--threads N]

1. Seconds per training step of :class:`FinetuneModule` (agreement term + the metric's
   training term through the attribution map, backward, Adam step) vs a plain cross-entropy
   step of the same model and batch, measured alternately in the same run; ratio = ours / plain.
   Targets: GradCAM localization (RMA, Focus with its default ``mosaic: half``) <= 1.5, guided
   backprop localization <= 3.5; Focus with ``mosaic=full`` (B/4 mosaics of 2H x 2W), RIS with
   the unperturbed map detached (``detach_unperturbed=true``, the original code's way; off by default) and the perturbation
   family report their ratio, side by side with the defaults in the same run.
2. (unless --no-study-code) the same step against the published study's code's step for each
   family it fine-tuned (benchmarks/original_steps.py: the work of its step carried over), on
   its shape: resnet18 in eval mode, batch 8, 224 x 224; ratio = study code / harmony (speed-up),
   target >= 2.
3. (full mode, unless --no-runs) ``harmony finetune metric=<m>`` with the default config for
   each metric: seconds, original -> fine-tuned score, agreement. Targets: rma and focus improve
   by >= 0.05 with agreement >= 0.95; road, irof and ris improve in their direction.

``main(argv) -> list[dict]`` returns rows {benchmark, case, ours_s, reference_s, ratio, target, ok, notes}.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.table import Table
from console import table_console  # benchmarks/console.py, beside this file

REPO = Path(__file__).resolve().parent.parent
# (metric, attribution, family, target ratio ours/plain or None: reported only, extra overrides)
STEP_CASES = [
    ("rma", "gradcam", "localization", 1.5, ()),
    ("focus", "gradcam", "localization", 1.5, ()),  # B half-resolution H x W mosaics: the batch's pixels
    ("focus", "gradcam", "localization", None, ("metric.metric.mosaic=full",)),  # B/4 mosaics of 2H x 2W
    ("rma", "guided_backprop", "localization", 3.5, ()),
    ("road", "gradcam", "perturbation", None, ()),
    ("irof", "gradcam", "perturbation", None, ()),
    ("ris", "gradcam", "stability", None, ()),  # the map of x without a graph
    ("ris", "gradcam", "stability", None, ("metric.metric.detach_unperturbed=true",)),
]
RUN_METRICS = ("rma", "focus", "road", "irof", "ris")


def _batch(size: int) -> dict:
    from lightning_modules.data import SyntheticShapes, collate_skip_none

    dataset = SyntheticShapes("val", size=size, cache_dir=REPO / "outputs" / "cache")
    return collate_skip_none([dataset[i] for i in range(size)])


def _config(metric: str, attribution: str, overrides=()):
    from harmony_cli.hydra_app import compose_config

    return compose_config([f"metric={metric}", f"attribution={attribution}", *overrides])


def _module(metric: str, attribution: str, original, overrides=()):
    from lightning_modules.finetune import build_module

    return build_module(_config(metric, attribution, overrides), original=copy.deepcopy(original))


def step_rows(quick: bool, cases=None) -> list[dict]:
    """Training-step seconds per (metric, attribution) vs a plain cross-entropy step (``cases``:
    entries of STEP_CASES, all by default)."""
    from lightning_modules.backbones import TinyCNN

    batch_size, repeats = (16, 3) if quick else (32, 15)
    torch.manual_seed(0)
    original = TinyCNN(8).eval()
    batch = _batch(batch_size)
    x, y = batch["image"], batch["label"]
    rows = []
    for metric, attribution, family, target, overrides in cases or STEP_CASES:
        module = _module(metric, attribution, original, overrides)
        module.train()  # as in fit: both nets stay in eval mode
        optimizer = module.configure_optimizers()
        plain = copy.deepcopy(original).eval()
        plain_optimizer = torch.optim.Adam(plain.parameters(), lr=1e-4)

        def ours_step():
            optimizer.zero_grad(set_to_none=True)
            module.objective(batch)["loss"].backward()
            optimizer.step()

        def plain_step():
            plain_optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(plain(x), y).backward()
            plain_optimizer.step()

        ours_step(), plain_step()  # warm-up
        ours_times, plain_times = [], []
        for _ in range(repeats):  # alternate, so that load on a shared machine hits both alike
            start = time.perf_counter()
            plain_step()
            plain_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            ours_step()
            ours_times.append(time.perf_counter() - start)
        ours_s, plain_s = statistics.median(ours_times), statistics.median(plain_times)
        ratio = ours_s / plain_s
        rows.append({"benchmark": "finetune step", "case": f"{family}: {metric} + {attribution} {' '.join(overrides)} "
                                                       f"(batch {batch_size})",
                     "ours_s": ours_s, "reference_s": plain_s, "ratio": ratio,
                     "target": f"<= {target}" if target else "report", "ok": (ratio <= target) if target else None,
                     "notes": "reference: plain cross-entropy step, same model and batch"})
    return rows


# (metric, attribution): the families the study fine-tuned, each timed against its own code's step
ORIGINAL_CASES = [("rma", "gradcam"), ("rma", "guided_backprop"), ("focus", "gradcam"), ("road", "gradcam"),
                  ("irof", "gradcam"), ("ris", "gradcam")]


def _alternate(first, second, repeats: int) -> tuple[float, float]:
    """Median seconds of two callables, run alternately (load on a shared machine hits both alike)."""
    first(), second()  # warm-up
    times = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def original_rows(quick: bool) -> list[dict]:
    """harmony's step vs the published study's step (benchmarks/original_steps.py) on the shape
    the study used: resnet18 in eval mode, batch 8, 224 x 224 (quick: 112 x 112), same weights."""
    from hydra.utils import instantiate

    from lightning_modules.backbones import torchvision_classifier
    from original_steps import original_step

    size, repeats = (112, 2) if quick else (224, 5)
    torch.manual_seed(0)
    base = torchvision_classifier("resnet18", num_classes=8).eval()
    batch = _batch(8)
    x = F.interpolate(batch["image"], size=(size, size), mode="bilinear")
    masks = (F.interpolate(batch["mask"].float(), size=(size, size), mode="nearest") > 0.5).float()
    big = {**batch, "image": x, "mask": masks}
    rows = []
    for metric, attribution in ORIGINAL_CASES:
        module = _module(metric, attribution, base, ("backbone=resnet18",))
        module.train()
        optimizer = module.configure_optimizers()

        def ours_step():
            optimizer.zero_grad(set_to_none=True)
            module.objective(big)["loss"].backward()
            optimizer.step()

        learn, frozen = copy.deepcopy(base).eval(), copy.deepcopy(base).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        cfg = _config(metric, attribution, ("backbone=resnet18",))
        explain = instantiate(cfg.attribution.explainer, model=learn)
        theirs = original_step(metric, learn, frozen, explain, torch.optim.Adam(learn.parameters(), lr=1e-5),
                               x, batch["label"], masks)
        ours_s, theirs_s = _alternate(ours_step, theirs, repeats)
        rows.append({"benchmark": "finetune step vs study code", "case": f"{metric} + {attribution} (resnet18, batch 8, "
                                                                         f"{size} px)",
                     "ours_s": ours_s, "reference_s": theirs_s, "ratio": theirs_s / ours_s, "target": ">= 2",
                     "ok": theirs_s / ours_s >= 2,
                     "notes": "ratio = study code's step / harmony's step (speed-up); reference: "
                              "benchmarks/original_steps.py"})
    return rows


def run_rows(metrics: tuple[str, ...]) -> list[dict]:
    """A default ``harmony finetune metric=<m>`` per metric (the base model cached under outputs/models)."""
    root = REPO / "outputs" / "bench" / f"finetune-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    rows = []
    for metric in metrics:
        run_dir = root / metric
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "harmony_cli.main", "finetune", f"metric={metric}",
                                 f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"],
                                cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            rows.append({"benchmark": "finetune run", "case": f"metric={metric}", "ours_s": wall, "ok": False,
                         "notes": (result.stderr.strip().splitlines() or ["failed"])[-1][:200]})
            continue
        m = json.loads((run_dir / "metrics.json").read_text())
        gain = (m["finetuned_score"] - m["original_score"]) * (1 if m["higher_is_better"] else -1)
        localization = metric in ("rma", "focus")
        ok = (gain >= 0.05 and m["agreement"] >= 0.95) if localization else (gain > 0 and m["agreement"] >= 0.95)
        rows.append({"benchmark": "finetune run", "case": f"metric={metric} ({m['steps']} steps)",
                     "ours_s": m["seconds"], "reference_s": None, "ratio": gain,
                     "target": "gain >= 0.05, agreement >= 0.95" if localization else "gain > 0, agreement >= 0.95",
                     "ok": ok,
                     "notes": f"{m['original_score']:.3f} -> {m['finetuned_score']:.3f}, agreement "
                              f"{m['agreement']:.3f}, accuracy {m['original_accuracy']:.3f} -> "
                              f"{m['finetuned_accuracy']:.3f}; wall {wall:.0f} s; ratio = gain in the metric's "
                              f"direction; {run_dir.relative_to(REPO)}"})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats, no full runs")
    parser.add_argument("--no-runs", action="store_true", help="skip the full `harmony finetune` runs")
    parser.add_argument("--no-study-code", action="store_true",
                        help="skip the comparison with the published study's step (resnet18 at 224 px)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = step_rows(args.quick)
    if not args.no_study_code:
        rows += original_rows(args.quick)
    if not args.quick and not args.no_runs:
        rows += run_rows(RUN_METRICS)
    table = Table(title=f"fine-tuning ({torch.get_num_threads()} threads); step reference: a plain cross-entropy "
                        f"step of the same model and batch; run ratio: gain in the metric's direction")
    columns = ("benchmark", "case", "ours_s", "reference_s", "ratio", "target", "ok")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[f"{row.get(c):.4g}" if isinstance(row.get(c), float) else str(row.get(c, "") or "")
                        for c in columns])
    table_console().print(table)
    return rows


if __name__ == "__main__":
    os.chdir(REPO)
    main()
