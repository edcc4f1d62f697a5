"""The attribution methods and metrics of issue 28 against their references, in the same run.

    python benchmarks/bench_more_methods.py [--quick] [--threads N] [--repeats N]

Attributions (TinyCNN 64 px and resnet18 at 64 px (``--quick``: 32 px), random weights, eval mode):
median seconds of one batched call, ours (create_graph=False) vs Captum (IntegratedGradients,
NoiseTunnel(Saliency)) or zennit (EpsilonPlusFlat, EpsilonGammaBox, canonized); Grad-CAM++ and LayerCAM
against Captum's LayerGradCam, the nearest Captum method (same passes). ratio = reference / ours,
target >= 1 (ours no slower). Metrics (the same maps, 32 synthetic 64 px images): ours vs Quantus 0.6;
ratio = Quantus / ours, target >= 1 (max-sensitivity: both explain with harmony's GradCAM, 10 draws).
Training step: the metric's loss through GradCAM plus cross-entropy (create_graph=True) vs a plain
cross-entropy step of TinyCNN on the same batch; ratio = ours / plain.
``main()`` returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients as CaptumIntegratedGradients
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel
from captum.attr import Saliency as CaptumSaliency
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer

from bench_attributions import median_seconds, step_seconds  # benchmarks/, beside this file
from console import print_timing_rows
from lightning_modules.attributions import (GradCAM, GradCAMPlusPlus, IntegratedGradients, LayerCAM, LRP,
                                            SmoothGrad)
from lightning_modules.attributions.lrp import pixel_range_bounds
from lightning_modules.backbones import TinyCNN, torchvision_classifier
from lightning_modules.data.synthetic import normalized_batch
from lightning_modules.metrics import (Complexity, Deletion, Insertion, MaxSensitivity, PointingGame,
                                       RelevanceRankAccuracy, Sparseness, gini_index, map_entropy, max_sensitivity,
                                       pointing_game, relevance_rank_accuracy)


def attribution_pairs(model, layer, resnet: bool):
    canonizers = [ResNetCanonizer() if resnet else SequentialMergeBatchNorm()]
    low, high = (torch.tensor(v).view(1, 3, 1, 1) for v in pixel_range_bounds())

    def zennit(composite):
        def run(x, t):
            with Gradient(model, composite()) as attributor:
                return attributor(x, lambda out: F.one_hot(t, out.shape[1]).to(out))[1]
        return run

    def captum_gradcam(x, t):
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(x, t, relu_attributions=True)
        return LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear")

    ig, noise = CaptumIntegratedGradients(model), NoiseTunnel(CaptumSaliency(model))
    return [
        ("IntegratedGradients 16 steps", IntegratedGradients(model, steps=16),
         lambda x, t: ig.attribute(x, target=t, n_steps=16), "vs Captum"),
        ("SmoothGrad 8 samples", SmoothGrad(model, samples=8),
         lambda x, t: noise.attribute(x, nt_type="smoothgrad", nt_samples=8, stdevs=0.5, target=t), "vs Captum"),
        ("LRP EpsilonPlusFlat", LRP(model), zennit(lambda: EpsilonPlusFlat(canonizers=canonizers)), "vs zennit"),
        ("LRP EpsilonGammaBox", LRP(model, composite="epsilon_gamma_box"),
         zennit(lambda: EpsilonGammaBox(low=low, high=high, canonizers=canonizers)), "vs zennit"),
        ("Grad-CAM++", GradCAMPlusPlus(model, layer), captum_gradcam, "vs Captum LayerGradCam (none in Captum)"),
        ("LayerCAM", LayerCAM(model, layer), captum_gradcam, "vs Captum LayerGradCam (none in Captum)"),
    ]


SENSITIVITY_SAMPLES = 10  # draws of max-sensitivity in both (each explains every image once per draw)


def metric_pairs(quantus, model, x, y, maps, masks):
    xs, ys, a, s = x.numpy(), y.numpy(), maps.numpy(), masks.numpy()
    kw = {"model": model, "x_batch": xs, "y_batch": ys}

    def quantus_call(metric, **extra):
        return lambda: metric(disable_warnings=True)(**kw, a_batch=a.copy(), **extra)

    explain = GradCAM(model, "features.20")

    def quantus_explain(model, inputs, targets, **kwargs):
        return explain(torch.from_numpy(inputs), torch.from_numpy(np.asarray(targets)).long()).numpy()

    def quantus_sensitivity():
        return quantus.MaxSensitivity(nr_samples=SENSITIVITY_SAMPLES, disable_warnings=True)(
            **kw, explain_func=quantus_explain, device="cpu")

    return [
        ("Sparseness", lambda: gini_index(maps), quantus_call(quantus.Sparseness)),
        ("Complexity", lambda: map_entropy(maps), quantus_call(quantus.Complexity)),
        ("PointingGame", lambda: pointing_game(maps, masks, 0.0), quantus_call(quantus.PointingGame, s_batch=s)),
        ("RelevanceRankAccuracy", lambda: relevance_rank_accuracy(maps, masks),
         quantus_call(quantus.RelevanceRankAccuracy, s_batch=s)),
        (f"MaxSensitivity GradCAM {SENSITIVITY_SAMPLES} draws",
         lambda: max_sensitivity(model, x, y, explain, n_samples=SENSITIVITY_SAMPLES), quantus_sensitivity),
    ]


def train_step_ratio(metric, model, x, y, masks, repeats: int) -> tuple[float, float]:
    """Median seconds of a step on cross-entropy + ``metric``'s training loss through GradCAM, and of a plain
    cross-entropy step."""
    explain = GradCAM(model, "features.20")
    return step_seconds(model, lambda: F.cross_entropy(model(x), y) + metric.loss(model, x, y, explain, masks),
                        x, y, repeats)


def main(argv: list[str] | None = None) -> list[dict]:
    import quantus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=None)
    args, _ = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 5)
    warnings.filterwarnings("ignore")
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    torch.manual_seed(0)
    batch, size = (4, 32) if args.quick else (16, 64)
    rows = []
    for name, model, layer in (("tiny", TinyCNN(8).eval(), "features.20"),
                               ("resnet18", torchvision_classifier("resnet18", 1000).eval(), "layer4")):
        x = torch.randn(batch, 3, size, size)
        y = torch.randint(0, 8 if name == "tiny" else 1000, (batch,))
        for method, ours, reference, note in attribution_pairs(model, layer, name == "resnet18"):
            ours_s, reference_s = median_seconds(lambda: ours(x, y), lambda: reference(x, y), repeats=repeats)
            rows.append({"benchmark": "attribution vs reference", "case": f"{method} {name} {batch}x{size}",
                         "ours_s": ours_s, "reference_s": reference_s, "ratio": reference_s / ours_s,
                         "target": ">= 1.0", "ok": reference_s >= ours_s, "notes": note})

    tiny = TinyCNN(8).eval()
    x, y, masks = normalized_batch(batch * 2, 64)  # the synthetic images and masks of the metric tests
    maps = F.avg_pool2d(torch.rand(x.shape[0], 1, 64, 64), 9, 1, 4)  # smooth, no ties
    for metric, ours, reference in metric_pairs(quantus, tiny, x, y, maps, masks):
        ours_s, reference_s = median_seconds(ours, reference, repeats=repeats)
        rows.append({"benchmark": "metric vs Quantus 0.6", "case": f"{metric} {x.shape[0]}x64", "ours_s": ours_s,
                     "reference_s": reference_s, "ratio": reference_s / ours_s, "target": ">= 1.0",
                     "ok": reference_s >= ours_s, "notes": "same maps"})
    for metric in (Sparseness(), Complexity(), PointingGame(), RelevanceRankAccuracy(), Deletion(), Insertion(),
                   MaxSensitivity()):
        ours_s, plain_s = train_step_ratio(metric, tiny, x, y, masks, repeats)
        rows.append({"benchmark": "train step / plain CE step", "case": f"{metric.name} + GradCAM tiny {x.shape[0]}x64",
                     "ours_s": ours_s, "reference_s": plain_s, "ratio": ours_s / plain_s, "target": "report",
                     "ok": True, "notes": "create_graph=True map loss + cross-entropy"})

    print_timing_rows(f"methods and metrics ({args.threads} threads, median of {repeats})", rows)
    return rows


if __name__ == "__main__":
    main()
