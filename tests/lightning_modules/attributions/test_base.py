"""The attribution interface's contract at its edges (lightning_modules/attributions/base.py):
maps carry no graph unless asked, and a target class index is valid exactly in [0, classes).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.attributions import InputXGradient

CLASSES = 3


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, CLASSES))


def test_explain_by_default_returns_maps_without_a_graph(model):
    x = torch.randn(2, 3, 4, 4)
    out = InputXGradient(model).explain(x, 1)
    assert not out.maps.requires_grad and not out.logits.requires_grad
    kept = InputXGradient(model).explain(x, 1, create_graph=True)
    assert kept.maps.requires_grad  # the graph to the weights, when asked for


def test_class_zero_is_a_valid_target(model):
    x = torch.randn(2, 3, 4, 4)
    maps = InputXGradient(model)(x, 0)
    # Input x Gradient for class 0, by autograd on the plain model
    x_ = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x_)[:, 0].sum(), x_)
    torch.testing.assert_close(maps, (x * grad).sum(1, keepdim=True))


@pytest.mark.parametrize("target", [-1, CLASSES])
def test_targets_outside_the_classes_are_refused(model, target):
    with pytest.raises(ValueError):  # a clear error before the gather (which fails late on a GPU)
        InputXGradient(model)(torch.randn(2, 3, 4, 4), target)
