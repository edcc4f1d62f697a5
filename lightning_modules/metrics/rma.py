"""Relevance mass accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset
for the ground truth evaluation of neural network explanations", Information Fusion 81).

RMA = (positive relevance inside the object mask) / (total positive relevance), per
image, in [0, 1]; higher = the map puts its mass on the object.

Differences from Quantus 0.6 (``quantus.RelevanceMassAccuracy``):

- Quantus sums the *signed* relevance (``sum(a*s) / sum(a)``), so negative relevance
  outside the mask raises the score, and a map with negative total relevance gives a
  negative or >1 value. Arras et al. evaluate the positive relevance only (signed
  relevance mixes evidence for and against the class), and so does this function:
  ``relu`` first. On non-negative maps (GradCAM's, or any map after ``relu``) the two
  are equal, which the tests check.
- A map with no positive relevance (e.g. all zeros) scores 0 here (no mass on the
  object); Quantus returns NaN (0/0).
- An empty mask gives NaN in both (the score is undefined without an object).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, as_maps, explain_maps, share


def relevance_mass_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Positive relevance inside ``masks`` over total positive relevance.

    maps (B,1,H,W) or (B,H,W); masks of the same shape, any nonzero value counts as
    inside (as Quantus' ``astype(bool)``). Returns (B,) in [0,1]; NaN where a mask is
    empty; 0 where a map has no positive relevance. Differentiable in ``maps``.
    """
    maps = as_maps(maps)
    masks = as_maps(masks, "masks")
    if masks.shape != maps.shape:
        raise MetricInputError(f"masks {tuple(masks.shape)} do not match maps {tuple(maps.shape)}: "
                               f"give one (H,W) object mask per map")
    positive = maps.flatten(1).clamp_min(0)
    region = masks.flatten(1).bool().to(positive.dtype)  # nonzero = inside; .bool() is the fast test
    score = share(torch.linalg.vecdot(positive, region), positive.sum(1))
    return score.masked_fill(region.sum(1) == 0, float("nan"))


class RelevanceMassAccuracy(Metric):
    """RMA as a fine-tuning target (conf/metric/rma.yaml); needs object masks.

    score: :func:`relevance_mass_accuracy` of ``explain(x, y)`` (higher is better).
    loss: minus the mean RMA over the images with a non-empty mask (differentiable
    through the positive part; 0 when no image has a mask).
    """

    name = "rma"
    family = "localization"
    higher_is_better = True
    needs_masks = True

    def _masks(self, masks: Tensor | None) -> Tensor:
        if masks is None:
            raise MetricInputError("metric=rma needs object masks, but the data module gives none: "
                                   "use a dataset with masks (data=synthetic or data=imagenet_s)")
        return masks

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self._masks(masks)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return relevance_mass_accuracy(maps, masks)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self._masks(masks)
        maps = explain_maps(explain, x, y, create_graph=True)
        scores = relevance_mass_accuracy(maps, masks)
        valid = ~scores.isnan()
        if not valid.any():
            return maps.sum() * 0.0
        return -scores[valid].mean()
