"""Complexity (Bhatt, Weller & Moura 2020, "Evaluating and aggregating feature-based model
explanations", IJCAI): the entropy of the map's relevance distribution; lower = fewer features
carry it. As Quantus 0.6 (``quantus.Complexity()`` with its defaults): ``p = |a| / sum |a|`` (after
Quantus' max-normalization, which p does not depend on), ``H = -sum_i p_i log(p_i + 1e-12)``. In
[0, log(H*W)]; an all-zero map has no distribution: NaN (Quantus divides 0 by 0 too).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Explain, Metric, check_images, explain_maps
from .sparseness import max_normalized

LOG_OFFSET = 1e-12  # Quantus' offset inside the logarithm (log 0 for pixels without relevance)


def map_entropy(maps: Tensor) -> Tensor:
    """(B,1,H,W) or (B,H,W) -> (B,) entropy of each map's ``|a|`` as a distribution over pixels
    (module docstring); NaN for an all-zero map. Differentiable in ``maps``."""
    values = max_normalized(maps)
    total = values.sum(1, keepdim=True)
    p = values / torch.where(total > 0, total, torch.ones_like(total))
    entropy = -(p * torch.log(p + LOG_OFFSET)).sum(1)
    return entropy.masked_fill(total.squeeze(1) == 0, float("nan"))


class Complexity(Metric):
    """Complexity as a fine-tuning target (conf/metric/complexity.yaml).

    score: :func:`map_entropy` of ``explain(x, y)`` (lower is better; NaN for an all-zero map, as Quantus).
    loss: its mean divided by ``log(H*W)`` (in [0, 1], the scale of the agreement term), an all-zero
    map counting as uniform (1, the most complex): otherwise erasing a map would lower the loss.
    """

    name = "complexity"
    family = "complexity"
    higher_is_better = False
    needs_masks = False
    reference = "Bhatt et al. 2020"
    equals = "quantus.Complexity()"

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return map_entropy(maps)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y, create_graph=True)
        entropy = map_entropy(maps)
        most = math.log(maps[0].numel())
        return torch.where(entropy.isnan(), torch.full_like(entropy, most), entropy).mean() / most
