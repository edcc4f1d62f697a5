"""RMA's training loss on hand-computed maps: its value on a batch with and without object masks.

Written for the mutants `make mutate MODULE=metrics.rma` found alive: the branch for a batch
where no image has an object (its loss must be exactly 0 and still back-propagate) and the
loss's sign. Expected values are computed by hand from RMA's definition (positive relevance
inside the mask / total positive relevance), not by the metric.
"""
from __future__ import annotations

import pytest
import torch

from lightning_modules.metrics import RelevanceMassAccuracy


def explainer(maps: torch.Tensor):
    """An ``explain(x, y, create_graph=...)`` that returns ``maps`` (B,1,H,W) whatever the images."""
    return lambda x, y, create_graph=False: maps


def batch(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(maps.shape[0], 3, *maps.shape[2:]), torch.zeros(maps.shape[0], dtype=torch.long)


def test_loss_is_minus_the_mean_rma_of_the_images_with_an_object():
    weights = torch.tensor([[1.0, 3.0], [2.0, -4.0]], requires_grad=True)  # image 0 / image 1 maps (2x2)
    maps = torch.stack([weights, weights.flip(1)])[:, None]  # (2,1,2,2)
    masks = torch.zeros(2, 1, 2, 2)
    masks[0, 0, 0, 1] = 1  # image 0: object at the top right
    masks[1, 0, 1, 1] = 1  # image 1: object at the bottom right
    x, y = batch(maps)
    loss = RelevanceMassAccuracy().loss(None, x, y, explainer(maps), masks)
    # image 0: positive relevance 1, 3, 2 (the -4 is not relevance): 3 of 6 inside -> 0.5
    # image 1 (columns flipped): [[3, 1], [-4, 2]]: 2 of 6 inside -> 1/3
    assert loss.item() == pytest.approx(-(0.5 + 1 / 3) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(weights.grad).all() and weights.grad.abs().sum() > 0


def test_loss_without_any_object_is_zero_and_still_differentiable():
    weights = torch.tensor([[1.0, 3.0], [2.0, -4.0]], requires_grad=True)
    maps = torch.stack([weights, 2 * weights])[:, None]
    x, y = batch(maps)
    loss = RelevanceMassAccuracy().loss(None, x, y, explainer(maps), torch.zeros(2, 1, 2, 2))
    assert loss.item() == 0.0
    loss.backward()  # connected to the graph: a training step on such a batch runs and changes nothing
    assert torch.equal(weights.grad, torch.zeros_like(weights))
