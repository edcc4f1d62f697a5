"""Relevance mass accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI: A benchmark dataset
for the ground truth evaluation of neural network explanations", Information Fusion 81).

RMA = (relevance inside the object mask) / (total relevance), per image; higher = the
map puts its mass on the object. Which relevance counts is the ``relevance`` setting,
because the three references disagree:

- ``positive`` (default): ``relu(a)``, as Arras et al. define it ("positive relevance",
  signed relevance mixes evidence for and against the class). In [0,1]; a map with no
  positive relevance scores 0 (no mass on the object).
- ``absolute``: ``|a|``, as the CLEVR-XAI reference code (ahmedmagdiosman/clevr-xai)
  computes it. In [0,1]; an all-zero map scores 0.
- ``signed``: ``a`` as it is, as Quantus 0.6 (``quantus.RelevanceMassAccuracy``:
  ``sum(a*s) / sum(a)``): negative relevance outside the mask raises the score, and a
  map whose total is negative gives a negative or >1 value; a zero total divides by 0
  (inf or NaN, as Quantus' NumPy division).

On non-negative maps (GradCAM's, or any map after ``relu``) the three are equal, which
the tests check against Quantus. An empty mask gives NaN in every mode (the score is
undefined without an object).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, as_maps, explain_maps, share


RELEVANCE = ("positive", "absolute", "signed")


def _relevance(relevance: str) -> str:
    if relevance not in RELEVANCE:
        raise MetricInputError(f"unknown RMA relevance {relevance!r}: use one of {', '.join(RELEVANCE)}")
    return relevance


def relevance_mass_accuracy(maps: Tensor, masks: Tensor, relevance: str = "positive") -> Tensor:
    """Relevance inside ``masks`` over total relevance, counting ``relevance`` = "positive"
    (``relu(a)``), "absolute" (``|a|``) or "signed" (``a``) relevance (module docstring).

    maps (B,1,H,W) or (B,H,W); masks of the same shape, any nonzero value counts as
    inside (as Quantus' ``astype(bool)``). Returns (B,): in [0,1] for "positive" and
    "absolute" (0 where a map has no such relevance); NaN where a mask is empty.
    Differentiable in ``maps``.
    """
    relevance = _relevance(relevance)
    maps = as_maps(maps)
    masks = as_maps(masks, "masks")
    if masks.shape != maps.shape:
        raise MetricInputError(f"masks {tuple(masks.shape)} do not match maps {tuple(maps.shape)}: "
                               f"give one (H,W) object mask per map")
    values = maps.flatten(1)
    values = values.clamp_min(0) if relevance == "positive" else values.abs() if relevance == "absolute" else values
    region = masks.flatten(1).bool().to(values.dtype)  # nonzero = inside; .bool() is the fast test
    inside, total = torch.linalg.vecdot(values, region), values.sum(1)
    score = share(inside, total) if relevance != "signed" else inside / total
    return score.masked_fill(region.sum(1) == 0, float("nan"))


class RelevanceMassAccuracy(Metric):
    """RMA as a fine-tuning target (conf/metric/rma.yaml); needs object masks.

    score: :func:`relevance_mass_accuracy` of ``explain(x, y)`` (higher is better), counting
    ``relevance`` ("positive", "absolute" or "signed", see the module docstring).
    loss: minus the mean RMA over the images with a non-empty mask (differentiable;
    0 when no image has a mask).
    """

    name = "rma"
    family = "localization"
    higher_is_better = True
    needs_masks = True
    reference = "Arras et al. 2022"
    equals = "quantus.RelevanceMassAccuracy() on non-negative maps"

    def __init__(self, relevance: str = "positive"):
        self.relevance = _relevance(relevance)

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return relevance_mass_accuracy(maps, masks, self.relevance)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        maps = explain_maps(explain, x, y, create_graph=True)
        scores = relevance_mass_accuracy(maps, masks, self.relevance)
        valid = ~scores.isnan()
        if not valid.any():
            return maps.sum() * 0.0
        return -scores[valid].mean()
