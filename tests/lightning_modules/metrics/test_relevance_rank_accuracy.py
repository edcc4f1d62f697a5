"""Relevance rank accuracy (lightning_modules/metrics/relevance_rank_accuracy.py): by hand, equal to Quantus
0.6's ``RelevanceRankAccuracy``, the soft loss's direction and its gradient (float64 finite differences
through GradCAM and LayerCAM), and a few fine-tuning steps on the embedded default raise it while
agreement holds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, LayerCAM
from lightning_modules.metrics import RelevanceRankAccuracy, metric_class, relevance_rank_accuracy
from tests.metric_cases import finetuning_moves, loss_gradient_check, synthetic_batch


def fixed(maps):
    return lambda x, y, create_graph=False: maps


def test_by_hand():
    """Object = 3 of 6 pixels; the 3 highest values are 9 (in), 8 (out), 7 (in): 2 of 3."""
    maps = torch.tensor([[[[9.0, 8.0, 7.0], [1.0, 2.0, -3.0]]]])
    masks = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]])
    assert relevance_rank_accuracy(maps, masks).item() == pytest.approx(2 / 3)
    # top 3 of -a: -3 (out), -2 (in), -1 (out)
    assert relevance_rank_accuracy(-maps, masks).item() == pytest.approx(1 / 3)
    assert math.isnan(relevance_rank_accuracy(maps, torch.zeros_like(masks)).item())
    assert relevance_rank_accuracy(maps, torch.ones_like(masks)).item() == 1.0


def test_equals_quantus(tiny, quantus):
    x, y, masks = synthetic_batch(6, 32)
    maps = torch.randn(6, 1, 32, 32) + 2 * masks * torch.rand(6, 1, 1, 1)  # a range of accuracies
    reference = quantus.RelevanceRankAccuracy(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy(), s_batch=masks.numpy())
    ours = relevance_rank_accuracy(maps, masks)
    assert ours.std() > 0.05
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-6)


def test_facts_and_loss_direction():
    cls = metric_class("rra")
    assert cls is RelevanceRankAccuracy and (cls.family, cls.higher_is_better, cls.needs_masks) == \
        ("localization", True, True)
    x, y, _ = synthetic_batch(2, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[..., :4, :4] = 1
    on, off = torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    on[..., :4, :4], off[..., 10:14, 10:14] = 1, 1
    base = 0.1 * torch.rand(2, 1, 16, 16)
    losses = [float(RelevanceRankAccuracy().loss(None, x, y, fixed(base + t * on + (1 - t) * off), masks))
              for t in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < -0.9


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"), "layercam": lambda m: LayerCAM(m, "features.20")}[method]
    loss_gradient_check(RelevanceRankAccuracy(), make, masks=True)


def test_a_few_finetuning_steps_raise_rra_while_agreement_holds(trained_tiny, synthetic_dm):
    """GradCAM's 4x4 layer map, upsampled, ranks coarse blocks: RRA moves by a few points within a few steps
    (+2.4 points on the base model tried; 12 steps gave no more). A flipped loss sign lowers it."""
    finetuning_moves(trained_tiny, synthetic_dm, "rra", direction=+1, images=16, margin=0.01)
