"""Deletion and insertion (Petsiuk, Das & Saenko 2018, "RISE", BMVC): the target class probability as
the most relevant pixels are removed (deletion: lower area is better) or revealed (insertion: higher
area is better), in steps of ``step`` of the image's pixels, as an area under the curve over the
removed share [0, 1] (trapezoid, the unperturbed image included).

A removed pixel takes the ``baseline``: ``blur`` (a box blur of the image, :func:`box_blur`, as the
paper's insertion starts from a blurred image) or a constant (0.0: the data's mean in normalized
units); pixels are ranked by map value, all channels of a pixel together. Quantus 0.6 has deletion
as ``PixelFlipping(perturb_baseline=value, features_in_step=k)``: its curve leaves out the
unperturbed point and its AUC is ``np.trapz`` with dx = 1 (not normalized); on single-channel
images its curve equals :func:`perturbation_curve`'s after the first point. It has no insertion.

The training losses reuse the removal metrics' soft top-fraction mask (:func:`removal_loss`):
deletion, the class probability after softly removing the top ``loss_fraction``; insertion, minus
the probability after softly revealing it on the baseline.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import (Explain, MetricInputError, RemovalMetric, box_blur, check_images, explain_maps,
                   removal_loss)

MODES = ("deletion", "insertion")


def baseline_image(x: Tensor, baseline: str | float) -> Tensor:
    """(B,C,H,W) -> what a removed pixel becomes: the blurred image, or a constant."""
    if baseline == "blur":
        return box_blur(x)
    try:
        return torch.full_like(x, float(baseline))
    except (TypeError, ValueError):
        raise MetricInputError(f"deletion/insertion baseline must be 'blur' or a number, got {baseline!r}") from None


def perturbation_curve(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor, mode: str = "deletion",
                       step: float = 0.05, baseline: str | float = "blur", batch_size: int = 64) -> Tensor:
    """(B,S+1) softmax probability of class y after removing (deletion) / revealing (insertion) the
    ``s * k`` most relevant pixels, s = 0..S, k = max(1, round(step * H * W)), S = ceil(H * W / k)."""
    if mode not in MODES:
        raise MetricInputError(f"unknown perturbation mode {mode!r}: use deletion or insertion")
    if not 0 < step <= 1:
        raise MetricInputError(f"deletion/insertion step is a share of the pixels in (0, 1], got {step}")
    y, maps = check_images(x, y, maps)
    batch, pixels = x.shape[0], x.shape[2] * x.shape[3]
    per_step = max(1, round(step * pixels))
    steps = math.ceil(pixels / per_step)
    order = maps.flatten(1).argsort(1, descending=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=x.device).expand_as(order)
                                             .contiguous())
    counts = torch.arange(steps + 1, device=x.device) * per_step  # pixels perturbed at each point
    changed = (ranks[:, None, :] < counts[None, :, None]).view(batch, steps + 1, 1, *x.shape[2:])
    base = baseline_image(x, baseline)
    start, end = (x, base) if mode == "deletion" else (base, x)
    images = torch.where(changed, end[:, None], start[:, None]).flatten(0, 1)
    probs = []
    with torch.no_grad():
        for chunk in images.split(batch_size):
            probs.append(model(chunk).softmax(-1))
    probs = torch.cat(probs).view(batch, steps + 1, -1)
    return probs.gather(2, y.view(batch, 1, 1).expand(batch, steps + 1, 1)).squeeze(2)


def perturbation_auc(curve: Tensor, pixels: int, step: float) -> Tensor:
    """(B,S+1) -> (B,) trapezoid area over the perturbed share min(s * k, n) / n in [0, 1]."""
    per_step = max(1, round(step * pixels))
    shares = (torch.arange(curve.shape[1], device=curve.device) * per_step).clamp(max=pixels) / pixels
    return torch.trapezoid(curve, shares.to(curve.dtype), dim=1)


class _PerturbationCurveMetric(RemovalMetric):
    mode = "deletion"

    def __init__(self, step: float = 0.05, baseline: str | float = "blur", loss_fraction: float = 0.25,
                 loss_temperature: float = 0.1, batch_size: int = 64):
        super().__init__(loss_fraction, loss_temperature, batch_size)
        if not 0 < step <= 1:
            raise MetricInputError(f"{self.name} step is a share of the pixels in (0, 1], got {step}")
        baseline_image(torch.zeros(1, 1, 1, 1), baseline)  # checks the setting now
        self.step, self.baseline_setting = step, baseline

    def baseline(self, x: Tensor) -> Tensor:
        return baseline_image(x, self.baseline_setting)

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        curve = perturbation_curve(model, x, y, maps, self.mode, self.step, self.baseline_setting, self.batch_size)
        return perturbation_auc(curve, x.shape[2] * x.shape[3], self.step)


class Deletion(_PerturbationCurveMetric):
    """Deletion AUC (conf/metric/deletion.yaml); lower is better. loss: the probability after softly
    removing the top ``loss_fraction`` of each map (:meth:`RemovalMetric.loss`)."""

    name = "deletion"
    family = "perturbation"
    higher_is_better = False
    needs_masks = False
    reference = "Petsiuk et al. 2018"
    equals = "quantus.PixelFlipping(perturb_baseline=value) curve, single-channel images"
    mode = "deletion"


class Insertion(_PerturbationCurveMetric):
    """Insertion AUC (conf/metric/insertion.yaml); higher is better. loss: minus the probability after
    softly revealing the top ``loss_fraction`` of each map on the baseline."""

    name = "insertion"
    family = "perturbation"
    higher_is_better = True
    needs_masks = False
    reference = "Petsiuk et al. 2018"
    equals = "none in Quantus 0.6 (the deletion curve's mirror)"
    mode = "insertion"

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y, create_graph=True)
        revealed = removal_loss(model, self.baseline(x), y, maps, x, self.loss_fraction, self.loss_temperature)
        return -revealed
