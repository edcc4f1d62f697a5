"""Sparseness (Chalasani et al. 2020, "Concise explanations of neural networks using adversarial
training", ICML): the Gini index of the map's absolute values; higher = the relevance sits on fewer
pixels. As Quantus 0.6 (``quantus.Sparseness()`` with its defaults): ``|a|`` divided by its maximum,
plus 1e-7, sorted ascending, ``G = sum_i (2i - n - 1) a_i / (n sum_i a_i)``. In [0, 1); an all-zero
map scores 0.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Explain, Metric, as_maps, check_images, explain_maps

OFFSET = 1e-7  # Quantus' offset: a constant (or all-zero) map has Gini 0, not 0/0


def max_normalized(maps: Tensor) -> Tensor:
    """(B,1,H,W) -> (B, H*W) ``|a| / max|a|`` per image (an all-zero map stays 0), as Quantus'
    ``abs=True`` then ``normalise_by_max``. Differentiable in ``maps``."""
    values = as_maps(maps).flatten(1).abs()
    peak = values.amax(1, keepdim=True)
    return values / torch.where(peak > 0, peak, torch.ones_like(peak))


def gini_index(maps: Tensor) -> Tensor:
    """(B,1,H,W) or (B,H,W) -> (B,) Gini index of each max-normalized ``|map|`` (module docstring).
    Differentiable in ``maps`` (through the sort's permutation)."""
    values = torch.sort(max_normalized(maps) + OFFSET, dim=1).values
    n = values.shape[1]
    ranks = torch.arange(1, n + 1, dtype=values.dtype, device=values.device)
    return ((2 * ranks - n - 1) * values).sum(1) / (n * values.sum(1))


class Sparseness(Metric):
    """Sparseness as a fine-tuning target (conf/metric/sparseness.yaml).

    score: :func:`gini_index` of ``explain(x, y)`` (higher is better). loss: minus its mean.
    """

    name = "sparseness"
    family = "complexity"
    higher_is_better = True
    needs_masks = False
    reference = "Chalasani et al. 2020"
    equals = "quantus.Sparseness()"

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return gini_index(maps)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        return -gini_index(explain_maps(explain, x, y, create_graph=True)).mean()
