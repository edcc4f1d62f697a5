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
from zennit.attribution import Gradient
from zennit.composites import ExcitationBackprop as ZennitExcitationBackprop

from lightning_modules.attributions import ExcitationBackprop, GradCAM, GuidedBackprop, InputXGradient
from lightning_modules.backbones import TinyCNN, torchvision_classifier
from console import print_timing_rows  # benchmarks/console.py, beside this file


def median_seconds(*fns, repeats: int, warmup: int = 1) -> list[float]:
    """Median wall time of each ``fn()``; the functions take turns, so load drift hits all alike."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(fn_times) for fn_times in times]


def backbones(quick: bool):
    """(name, model, GradCAM layer, batch (B,3,H,W)) for the two benchmarked backbones."""
    batch, tiny, large = (4, 32, 64) if quick else (32, 64, 224)
    yield "tiny", TinyCNN(8), "features.20", (batch, 3, tiny, tiny)
    yield "resnet18", torchvision_classifier("resnet18", 1000), "layer4", (batch, 3, large, large)


def method_pairs(model, layer):
    """(method, ours(x, t), reference(x, t), note) for each attribution method."""
    def captum_gradcam(x, t):
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(x, t, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear")

    def zennit_excitation(x, t):
        with Gradient(model, ZennitExcitationBackprop()) as attributor:
            return attributor(x, lambda out: F.one_hot(t, out.shape[1]).to(out))[1]

    return [
        ("GradCAM", GradCAM(model, layer), captum_gradcam,
         "vs Captum; create_graph=False skips the graph below the layer"),
        ("GuidedBackprop", GuidedBackprop(model), CaptumGuidedBackprop(model).attribute,
         "vs Captum; one gradient hook per ReLU"),
        ("InputXGradient", InputXGradient(model), CaptumInputXGradient(model).attribute,
         "vs Captum; the same forward + input gradient: ratio 1 within noise"),
        ("ExcitationBackprop", ExcitationBackprop(model), zennit_excitation,
         "vs zennit; ZPlus skips the zero x- term after ReLUs"),
    ]


def step_seconds(model, loss, x, y, repeats: int) -> tuple[float, float]:
    """Median seconds of an SGD step on ``loss()`` (which includes the cross-entropy) and of a plain
    cross-entropy step of the same model and batch, in train mode."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)

    def loss_step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    def plain_step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    ours, plain = median_seconds(loss_step, plain_step, repeats=repeats)
    model.eval()
    return ours, plain


def train_step_seconds(model, layer, x, y, repeats: int) -> tuple[float, float]:
    """Median seconds of a GradCAM-loss step (create_graph=True) and of a plain cross-entropy step."""
    explain = GradCAM(model, layer)
    # A localization-style loss: the map's share outside a fixed central box.
    outside = torch.ones_like(x[:, :1])
    h, w = x.shape[2:]
    outside[:, :, h // 4:3 * h // 4, w // 4:3 * w // 4] = 0

    def gradcam_loss():
        maps, logits, _ = explain.explain(x, y, create_graph=True)
        share_outside = (maps * outside).flatten(1).sum(1) / (maps.flatten(1).sum(1) + 1e-8)
        return F.cross_entropy(logits, y) + share_outside.mean()

    return step_seconds(model, gradcam_loss, x, y, repeats)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches and images (a smoke run)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (median reported)")
    args, _ = parser.parse_known_args(argv)  # a collector may call main() with its own flags
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (7 if args.quick else 5)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")  # warns on every call
    torch.manual_seed(0)

    rows = []
    for name, model, layer, shape in backbones(args.quick):
        model.eval()
        x = torch.randn(shape)
        y = torch.randint(0, 8 if name == "tiny" else 1000, (shape[0],))
        case = f"{name} {'x'.join(map(str, shape))}"
        for method, ours, reference, note in method_pairs(model, layer):
            ours_s, reference_s = median_seconds(lambda: ours(x, y), lambda: reference(x, y), repeats=repeats)
            ratio = reference_s / ours_s
            rows.append({"benchmark": "attribution vs reference", "case": f"{method} {case}", "ours_s": ours_s,
                         "reference_s": reference_s, "ratio": ratio, "target": ">= 1.0", "ok": ratio >= 1.0,
                         "notes": note})
        ours_s, plain_s = train_step_seconds(model, layer, x, y, repeats)
        ratio = ours_s / plain_s
        rows.append({"benchmark": "train step / plain CE step", "case": f"GradCAM create_graph {case}",
                     "ours_s": ours_s, "reference_s": plain_s, "ratio": ratio, "target": "<= 1.3",
                     "ok": ratio <= 1.3, "notes": "reference: plain cross-entropy step; logits shared with the maps"})

    print_timing_rows(f"attributions ({args.threads} threads, median of {repeats})", rows)
    return rows


if __name__ == "__main__":
    main()
