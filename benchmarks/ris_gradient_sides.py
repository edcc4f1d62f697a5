"""Why RIS fine-tuning keeps both maps in the graph: the two sides of its gradient nearly cancel.

    python benchmarks/ris_gradient_sides.py [--steps 24] [--lrs 1e-4 3e-4 1e-3] [--batches 4]

RIS' training term L(e, e') (:class:`lightning_modules.metrics.RelativeInputStability.loss`,
e = the map of x, e' = the map of x + delta) has the gradient g = g_x + g_x', one part
through each map. Skipping the graph of e(x) (``detach_unperturbed=true``, the original
study's way) would save a graph-keeping pass per step. On the embedded default (the trained
``tiny`` backbone, GradCAM, 32 synthetic training images) this prints:

1. per batch, cos(g_x, g_x') and |g_x + g_x'| / |g_x|: how much of each part is left in
   their sum (the full gradient);
2. per learning rate, RIS (50 samples, 16 validation images) after ``--steps`` steps of
   fine-tuning with (a) both maps in the graph (the default), (b) one map chosen at random
   per step and its part doubled (an unbiased estimate of g at the detached setting's cost),
   (c) e(x) detached, beside RIS before fine-tuning (lower is better);
3. the step time of (b) and (c) over (a), measured alternately.
"""
from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.table import Table

from bench_finetune import _alternate, _module
from console import table_console  # benchmarks/console.py, beside this file
from lightning_modules.backbones import TinyCNN, build_backbone
from lightning_modules.data import SyntheticDataModule, collate_skip_none
from lightning_modules.metrics import RelativeInputStability

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HARMONY_TEST_CACHE", REPO / "outputs" / "test-cache"))
WAYS = ("both maps", "one map at random", "e(x) detached")


def _one_side_loss(metric, model, x, y, explain, side: int):
    """The library's RIS training term with the graph kept through one map only (side 0: the map of
    x, 1: the map of x + delta); the other map is explained without one."""
    calls = []

    def explain_one_side(inputs, target, create_graph=False):
        keep = create_graph and len(calls) == side
        calls.append(keep)
        maps = explain(inputs, target, create_graph=keep)
        return maps if keep else maps.detach()

    return RelativeInputStability.loss(metric, model, x, y, explain_one_side)


def _one_map_at_random(metric, model, x, y, explain, masks=None):
    value = _one_side_loss(metric, model, x, y, explain, int(torch.randint(2, ())))
    return value.detach() + 2 * (value - value.detach())  # the true value; twice the chosen part's gradient


def _module_for(way: str, base, lr: float):
    overrides = [f"finetune.lr={lr}"] + (["metric.metric.detach_unperturbed=true"] if way == WAYS[2] else [])
    module = _module("ris", "gradcam", base, overrides)
    module.train()
    if way == WAYS[1]:
        module.metric.loss = types.MethodType(_one_map_at_random, module.metric)
    return module


def _score(module, val: dict) -> str:
    """RIS with 50 samples on the validation images, and how many of their maps are all zero (a map
    that vanishes cannot change under noise: RIS 0 without any stability)."""
    metric, explain = module.metric, module.explainer("finetuned")
    old, metric.n_samples = metric.n_samples, 50
    try:
        ris = float(metric.score(module.finetuned, val["image"], val["label"], explain).nanmean())
    finally:
        metric.n_samples = old
    zero = int((explain(val["image"], val["label"]).flatten(1).abs().amax(1) == 0).sum())
    return f"RIS {ris:.2f}, all-zero maps {zero}/{len(val['label'])}"


def cancellation_rows(base, train: dict, batches: int) -> list[tuple[str, str]]:
    module = _module_for(WAYS[0], base, 1e-4)
    explain, params = module.explainer("finetuned"), list(module.finetuned.parameters())
    rows = []
    for index in range(batches):
        parts = []
        for side in (0, 1):
            torch.manual_seed(index)  # the same delta for both parts
            value = _one_side_loss(module.metric, module.finetuned, train["image"], train["label"], explain, side)
            grads = torch.autograd.grad(value, params, allow_unused=True)
            parts.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                    for g, p in zip(grads, params)]))
        cosine = float(F.cosine_similarity(parts[0], parts[1], dim=0))
        left = float((parts[0] + parts[1]).norm() / parts[0].norm())
        rows.append((f"batch {index}", f"cos(g_x, g_x') {cosine:+.4f}; |g_x + g_x'| / |g_x| {left:.3f}"))
    return rows


def training_rows(base, train: dict, val: dict, steps: int, lrs) -> list[tuple[str, str]]:
    rows = [("before", _score(_module_for(WAYS[0], base, 1e-4), val))]
    for lr in lrs:
        for way in WAYS:
            torch.manual_seed(0)
            module = _module_for(way, base, lr)
            optimizer = module.configure_optimizers()
            for _ in range(steps):
                optimizer.zero_grad(set_to_none=True)
                module.objective(train)["loss"].backward()
                optimizer.step()
            rows.append((f"lr {lr:g}, {way}", f"{_score(module, val)} after {steps} steps"))
    return rows


def time_rows(base, train: dict) -> list[tuple[str, str]]:
    def step_of(way):
        module = _module_for(way, base, 1e-4)
        optimizer = module.configure_optimizers()

        def step():
            optimizer.zero_grad(set_to_none=True)
            module.objective(train)["loss"].backward()
            optimizer.step()
        return step

    both = step_of(WAYS[0])
    rows = []
    for way in WAYS[1:]:
        ours, reference = _alternate(step_of(way), both, 15)
        rows.append((f"step, {way}", f"{ours:.4f} s / {reference:.4f} s (both maps) = {ours / reference:.2f}"))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args(argv)
    datamodule = SyntheticDataModule(cache_dir=CACHE / "cache")
    datamodule.setup()
    base = build_backbone(TinyCNN(num_classes=8), name="tiny", weights="auto", gradcam_layer="features.20",
                          datamodule=datamodule, cache_dir=CACHE / "models")
    train = collate_skip_none([datamodule.split("train")[i] for i in range(32)])
    val = collate_skip_none([datamodule.split("val")[i] for i in range(16)])
    table = Table(title="RIS gradient parts (tiny, GradCAM, batch 32; RIS: lower is better)")
    table.add_column("case")
    table.add_column("value", overflow="fold")
    for row in (cancellation_rows(base, train, args.batches) + training_rows(base, train, val, args.steps, args.lrs)
                + time_rows(base, train)):
        table.add_row(*row)
    table_console().print(table)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    main()
