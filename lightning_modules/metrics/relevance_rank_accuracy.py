"""Relevance rank accuracy (Arras, Osman & Samek 2022, "CLEVR-XAI", Information Fusion 81): the share of
the K most relevant pixels that lie on the object, K the object's size in pixels; higher is better.

As Quantus 0.6 (``quantus.RelevanceRankAccuracy()``): signed relevance ranked by value (its default
max-normalization does not change the order), a mask's nonzero pixels count as the object, NaN for an
empty mask. The training loss replaces "among the top K" by a sigmoid around the K-th largest value
(scaled by the map's spread, as the removal metrics' soft mask), which is differentiable in the map.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, as_maps, check_images, explain_maps


def _flat(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, N) values, (B, N) bool object, (B,) long object sizes K."""
    maps, masks = as_maps(maps), as_maps(masks, "masks")
    if masks.shape != maps.shape:
        raise MetricInputError(f"masks {tuple(masks.shape)} do not match maps {tuple(maps.shape)}: "
                               f"give one (H,W) object mask per map")
    region = masks.flatten(1).bool()
    return maps.flatten(1), region, region.sum(1)


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """(B,1,H,W) maps and masks -> (B,) share of the K highest-valued pixels inside the mask (K = mask size);
    NaN where a mask is empty."""
    values, region, sizes = _flat(maps, masks)
    order = values.argsort(1, descending=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(values.shape[1], device=values.device)
                                             .expand_as(order).contiguous())
    hits = (region & (ranks < sizes[:, None])).sum(1).to(values.dtype)
    return (hits / sizes.clamp_min(1)).masked_fill(sizes == 0, float("nan"))


def soft_rank_accuracy(maps: Tensor, masks: Tensor, temperature: float = 0.1) -> Tensor:
    """(B,) the mask's share of a soft top-K membership ``sigmoid((a - t) / (temperature * std(a)))``,
    t halfway between the K-th and the (K+1)-th largest values; differentiable in ``maps``; NaN where a mask
    is empty."""
    values, region, sizes = _flat(maps, masks)
    ordered = values.sort(1, descending=True).values
    k = sizes.clamp(1, values.shape[1] - 1)[:, None]
    threshold = (ordered.gather(1, k - 1) + ordered.gather(1, k)) / 2  # between the K-th and the (K+1)-th
    spread = values.std(1, keepdim=True).clamp_min(1e-12)
    member = torch.sigmoid((values - threshold) / (temperature * spread))
    share = (member * region.to(values.dtype)).sum(1) / sizes.clamp_min(1).to(values.dtype)
    return share.masked_fill(sizes == 0, float("nan"))


class RelevanceRankAccuracy(Metric):
    """Relevance rank accuracy as a fine-tuning target (conf/metric/rra.yaml); needs object masks.

    score: :func:`relevance_rank_accuracy` of ``explain(x, y)`` (higher is better).
    loss: minus the mean :func:`soft_rank_accuracy` over the images with an object (0 when none has one).
    """

    name = "rra"
    family = "localization"
    higher_is_better = True
    needs_masks = True
    reference = "Arras et al. 2022"
    equals = "quantus.RelevanceRankAccuracy()"

    def __init__(self, loss_temperature: float = 0.1):
        self.loss_temperature = loss_temperature

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return relevance_rank_accuracy(maps, masks)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y, create_graph=True)
        share = soft_rank_accuracy(maps, masks, self.loss_temperature)
        valid = ~share.isnan()
        if not valid.any():
            return maps.sum() * 0.0
        return -share[valid].mean()
