"""Sparseness (lightning_modules/metrics/sparseness.py): the Gini index by hand, equal to Quantus 0.6's
``Sparseness`` on the same maps, its loss's gradient (float64 finite differences through GradCAM and
integrated gradients), and a few fine-tuning steps on the embedded default raise it while agreement holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, IntegratedGradients
from lightning_modules.metrics import Sparseness, gini_index, metric_class
from tests.metric_cases import finetuning_moves, loss_gradient_check, synthetic_batch


def fixed(maps):
    return lambda x, y, create_graph=False: maps


def test_gini_by_hand():
    """n = 4; one pixel holds all the relevance: sorted (e, e, e, 1 + e) with e = 1e-7 -> (n - 1) / n;
    a constant map -> 0; the sign does not matter (|a|), nor the scale (max-normalized)."""
    one_hot = torch.tensor([[[[0.0, 0.0], [0.0, 3.0]]]])
    e = 1e-7
    expected = ((2 * 4 - 4 - 1) * (1 + e) + (-3 - 1 + 1) * e) / (4 * (1 + 4 * e))
    assert gini_index(one_hot).item() == pytest.approx(expected, rel=1e-6)
    assert gini_index(one_hot).item() == pytest.approx(0.75, rel=1e-5)
    assert gini_index(torch.full((1, 1, 2, 2), 5.0)).item() == pytest.approx(0.0, abs=1e-7)
    assert gini_index(torch.zeros(1, 1, 2, 2)).item() == pytest.approx(0.0, abs=1e-7)
    two = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])  # two equal pixels of four: sorted (e, e, 1, 1)
    assert gini_index(two).item() == pytest.approx((1 * 1 + 3 * 1) / (4 * 2), rel=1e-5)
    assert gini_index(7 * two).item() == pytest.approx(gini_index(two).item(), rel=1e-6)
    # Quantus' offset counts after the max-normalization: exact in float64, and a tiny map is as sparse as a large one
    exact = one_hot.double()
    assert gini_index(exact).item() == pytest.approx(3 / (4 * (1 + 4 * e)), rel=1e-12)
    assert gini_index(exact * 1e-6).item() == pytest.approx(3 / (4 * (1 + 4 * e)), rel=1e-12)


def test_equals_quantus(tiny, quantus):
    x, y, _ = synthetic_batch(5, 32)
    maps = torch.randn(5, 1, 32, 32) * torch.rand(5, 1, 1, 1)
    maps[0, :, :16] = 0  # half of one map empty
    reference = quantus.Sparseness(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy().copy())
    np.testing.assert_allclose(gini_index(maps).numpy(), np.asarray(reference), rtol=1e-5, atol=1e-7)


def test_metric_facts_and_loss_sign():
    cls = metric_class("sparseness")
    assert cls is Sparseness and (cls.family, cls.higher_is_better, cls.needs_masks) == ("complexity", True, False)
    x, y, _ = synthetic_batch(2, 8)
    spread, peaked = torch.rand(2, 1, 8, 8) + 1, torch.zeros(2, 1, 8, 8)
    peaked[..., 2, 3] = 1
    losses = [float(Sparseness().loss(None, x, y, fixed(t * peaked + (1 - t) * spread))) for t in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2]  # minus Gini: falls as the map concentrates


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"),
            "integrated_gradients": lambda m: IntegratedGradients(m, steps=3)}[method]
    loss_gradient_check(Sparseness(), make)


def test_a_few_finetuning_steps_raise_sparseness_while_agreement_holds(trained_tiny, synthetic_dm):
    finetuning_moves(trained_tiny, synthetic_dm, "sparseness", direction=+1)
