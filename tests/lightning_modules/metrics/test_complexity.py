"""Complexity (lightning_modules/metrics/complexity.py): the entropy by hand, equal to Quantus 0.6's
``Complexity`` on the same maps, its loss's gradient (float64 finite differences through GradCAM and
LayerCAM), and a few fine-tuning steps on the embedded default lower it while agreement holds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, LayerCAM
from lightning_modules.metrics import Complexity, map_entropy, metric_class
from tests.metric_cases import finetuning_moves, loss_gradient_check, synthetic_batch


def fixed(maps):
    return lambda x, y, create_graph=False: maps


def test_entropy_by_hand():
    """Uniform over k of n pixels -> log k; the sign and scale do not matter; an all-zero map -> NaN."""
    two = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])
    assert map_entropy(two).item() == pytest.approx(math.log(2), rel=1e-6)
    assert map_entropy(torch.full((1, 1, 2, 2), -3.0)).item() == pytest.approx(math.log(4), rel=1e-6)
    uneven = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]]])  # p = (3/4, 1/4)
    assert map_entropy(uneven).item() == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), rel=1e-6)
    assert map_entropy(5 * uneven).item() == pytest.approx(map_entropy(uneven).item(), rel=1e-6)
    assert math.isnan(map_entropy(torch.zeros(1, 1, 2, 2)).item())


def test_equals_quantus(tiny, quantus):
    x, y, _ = synthetic_batch(5, 32)
    maps = torch.randn(5, 1, 32, 32) * torch.rand(5, 1, 1, 1)
    maps[0, :, :16] = 0
    reference = quantus.Complexity(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy().copy())
    np.testing.assert_allclose(map_entropy(maps).numpy(), np.asarray(reference), rtol=1e-5)


def test_metric_facts_and_loss():
    cls = metric_class("complexity")
    assert cls is Complexity and (cls.family, cls.higher_is_better, cls.needs_masks) == ("complexity", False, False)
    x, y, _ = synthetic_batch(2, 8)
    spread, peaked = torch.rand(2, 1, 8, 8) + 1, torch.zeros(2, 1, 8, 8)
    peaked[..., 2, 3] = 1
    losses = [float(Complexity().loss(None, x, y, fixed(t * peaked + (1 - t) * spread))) for t in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2]  # the entropy / log(64): falls as the map concentrates
    blank = peaked.clone()
    blank[1] = 0  # a map without relevance counts as uniform (1 after dividing by log 64), not as a free 0
    assert float(Complexity().loss(None, x, y, fixed(blank))) == pytest.approx(0.5, rel=1e-5)


def test_an_all_zero_map_leaves_the_loss_gradient_finite_and_one_image_is_enough():
    """A blank map divides 0 by 0 nowhere: the other maps' gradient stays finite (a NaN in the masked branch
    of a where would reach it); a batch of one image is divided by log of its own size (log 4 here)."""
    x, y, _ = synthetic_batch(2, 2)
    maps = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]]], requires_grad=True)
    Complexity().loss(None, x, y, fixed(maps)).backward()
    assert torch.isfinite(maps.grad).all() and maps.grad[0].abs().sum() > 0
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    one = Complexity().loss(None, x[:1], y[:1], fixed(maps[:1].detach()))
    assert float(one) == pytest.approx(entropy / math.log(4), rel=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"), "layercam": lambda m: LayerCAM(m, "features.20")}[method]
    loss_gradient_check(Complexity(), make)


def test_a_few_finetuning_steps_lower_complexity_while_agreement_holds(trained_tiny, synthetic_dm):
    """Through integrated gradients: GradCAM's map of this 4x4 layer collapses to all zero under the entropy
    loss at rates that move it. The entropy must fall by 0.1 nats (exp(-0.1): about 10% fewer effective pixels)."""
    finetuning_moves(trained_tiny, synthetic_dm, "complexity", direction=-1, lr=5e-4, steps=8, margin=0.1,
                     attribution="integrated_gradients", extra=["attribution.explainer.steps=4"])
