"""Attribution speed: ours vs the reference library, and the cost of a GradCAM training step.

    python benchmarks/bench_attributions.py [--quick] [--threads N]

Per method and backbone (random weights, eval mode): median seconds of one batched
call, ours (create_graph=False) vs Captum (zennit for ExcitationBackprop);
ratio = reference / ours, target >= 1 (ours no slower). Then a fine-tuning step with a
GradCAM loss (create_graph=True: forward, maps, map loss + cross-entropy, backward,
SGD step) vs a plain cross-entropy step of the same model and batch; ratio = ours /
plain, target <= 1.3. ``main()`` returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr import InputXGradient as CaptumInputXGradient
from captum.attr import LayerAttribution, LayerGradCam
from rich.console import Console
from rich.table import Table
from zennit.attribution import Gradient
from zennit.composites import ExcitationBackprop as ZennitExcitationBackprop

from lightning_modules.attributions import ExcitationBackprop, GradCAM, GuidedBackprop, InputXGradient
from lightning_modules.backbones import TinyCNN, torchvision_classifier


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def backbones(quick: bool):
    """(name, model, GradCAM layer, batch (B,3,H,W)) for the two benchmarked backbones."""
    batch = 4 if quick else 32
    yield "tiny", TinyCNN(8), "features.20", (batch, 3, 32 if quick else 64, 32 if quick else 64)
    yield "resnet18", torchvision_classifier("resnet18", 1000), "layer4", (batch, 3, 64 if quick else 224, 64 if quick else 224)


def method_pairs(model, layer):
    """(method, ours(x, t), reference(x, t)) for each attribution method."""
    def captum_gradcam(x, t):
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(x, t, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear")

    def zennit_excitation(x, t):
        with Gradient(model, ZennitExcitationBackprop()) as attributor:
            return attributor(x, lambda out: F.one_hot(t, out.shape[1]).to(out))[1]

    return [
        ("GradCAM", GradCAM(model, layer), captum_gradcam),
        ("GuidedBackprop", GuidedBackprop(model), CaptumGuidedBackprop(model).attribute),
        ("InputXGradient", InputXGradient(model), CaptumInputXGradient(model).attribute),
        ("ExcitationBackprop (vs zennit)", ExcitationBackprop(model), zennit_excitation),
    ]


def train_step_seconds(model, layer, x, y, repeats: int) -> tuple[float, float]:
    """Median seconds of a GradCAM-loss step (create_graph=True) and of a plain cross-entropy step."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    explain = GradCAM(model, layer)
    # A localization-style loss: the map's share outside a fixed central box.
    outside = torch.ones_like(x[:, :1])
    h, w = x.shape[2:]
    outside[:, :, h // 4:3 * h // 4, w // 4:3 * w // 4] = 0

    def gradcam_step():
        optimizer.zero_grad(set_to_none=True)
        maps, logits, _ = explain.explain(x, y, create_graph=True)
        share_outside = (maps * outside).flatten(1).sum(1) / (maps.flatten(1).sum(1) + 1e-8)
        (F.cross_entropy(logits, y) + share_outside.mean()).backward()
        optimizer.step()

    def plain_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    ours = median_seconds(gradcam_step, repeats)
    plain = median_seconds(plain_step, repeats)
    model.eval()
    return ours, plain


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and images (a smoke run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # Captum warns on every call
    torch.manual_seed(0)

    rows = []
    for name, model, layer, shape in backbones(args.quick):
        model.eval()
        x = torch.randn(shape)
        y = torch.randint(0, 8 if name == "tiny" else 1000, (shape[0],))
        case = f"{name} {'x'.join(map(str, shape))}"
        for method, ours, reference in method_pairs(model, layer):
            ours_s = median_seconds(lambda: ours(x, y), repeats)
            reference_s = median_seconds(lambda: reference(x, y), repeats)
            ratio = reference_s / ours_s
            rows.append({"benchmark": f"attribution {method}", "case": case, "ours_s": ours_s,
                         "reference_s": reference_s, "ratio": ratio, "target": ">= 1.0", "ok": ratio >= 1.0})
        ours_s, plain_s = train_step_seconds(model, layer, x, y, repeats)
        ratio = ours_s / plain_s
        rows.append({"benchmark": "GradCAM train step (create_graph) / plain CE step", "case": case,
                     "ours_s": ours_s, "reference_s": plain_s, "ratio": ratio, "target": "<= 1.3",
                     "ok": ratio <= 1.3})

    table = Table(title=f"attributions ({args.threads} threads, median of {repeats})")
    for column in ("benchmark", "case", "ours s", "reference s", "ratio", "target", "ok"):
        table.add_column(column, justify="right" if column.endswith("s") or column == "ratio" else "left")
    for row in rows:
        table.add_row(row["benchmark"], row["case"], f"{row['ours_s']:.4f}", f"{row['reference_s']:.4f}",
                      f"{row['ratio']:.2f}", row["target"], "yes" if row["ok"] else "NO")
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
