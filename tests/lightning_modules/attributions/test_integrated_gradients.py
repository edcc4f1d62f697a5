"""Integrated gradients (lightning_modules/attributions/integrated_gradients.py): equal to Captum's
(max abs difference < 1e-5 and < 1e-4 of the map's scale), differentiable in the weights (float64
finite differences), built from its YAML."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.attributions import IntegratedGradients
from lightning_modules.attributions.integrated_gradients import path_points
from lightning_modules.backbones import TinyCNN
from tests.attribution_references import assert_same, batch, check_graph_contract, tiny_finite_difference_check
from tests.conf_checks import keys_defaulting_as_conf


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("baseline", [0.0, -0.5])
def test_equals_captum(tiny, method, baseline):
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients

    x, target = batch("tiny", size=32, n=3)
    out = IntegratedGradients(tiny, baseline=baseline, steps=8, method=method).explain(x, target)
    reference = CaptumIntegratedGradients(tiny).attribute(x, baselines=baseline, target=target, n_steps=8,
                                                          method=method)
    assert_same(out.raw, reference)
    assert_same(out.maps, reference.sum(1, keepdim=True))
    other = IntegratedGradients(tiny, baseline=baseline, steps=8, method=method).explain(x, (target + 1) % 8)
    assert (other.raw - reference).abs().max() > 1e-3 * reference.abs().max()  # the target matters


def test_completeness():
    """The attributions sum to logit(x) - logit(baseline) (Sundararajan et al.'s axiom), up to the quadrature."""
    torch.manual_seed(0)
    model = TinyCNN(8).double().eval()
    x, target = batch("tiny", size=32, n=2, dtype=torch.float64)
    out = IntegratedGradients(model, baseline=0.0, steps=64).explain(x, target)
    with torch.no_grad():
        gap = (out.logits - model(torch.zeros_like(x))).gather(1, target[:, None]).squeeze(1)
    assert gap.abs().min() > 1e-3
    torch.testing.assert_close(out.maps.sum((1, 2, 3)), gap, rtol=2e-2, atol=1e-4)


def test_gradient_matches_finite_differences():
    tiny_finite_difference_check(lambda model: IntegratedGradients(model, steps=3))


def test_graph_contract(tiny):
    x, target = batch("tiny", size=32)
    check_graph_contract(lambda m: IntegratedGradients(m, steps=4), tiny, x, target)


def test_bad_settings_fail_at_construction(tiny):
    with pytest.raises(ValueError, match="steps >= 2"):
        IntegratedGradients(tiny, steps=1)
    with pytest.raises(ValueError, match="gausslegendre, riemann_trapezoid"):
        IntegratedGradients(tiny, method="simpson")


def test_instantiate_from_config(tiny):
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    cfg = compose_config(["attribution=integrated_gradients", "backbone=tiny"])
    explain = instantiate(cfg.attribution.explainer, model=tiny)
    assert isinstance(explain, IntegratedGradients) and explain.steps == cfg.attribution.explainer.steps


def test_defaults_are_its_yamls_and_two_points_are_the_fewest(tiny):
    assert keys_defaulting_as_conf("attribution", "integrated_gradients") == {"baseline", "steps", "method"}
    alphas, sizes = path_points(2, "riemann_trapezoid")  # Captum's: 1/n per point, halved at both ends
    np.testing.assert_allclose(alphas, [0.0, 1.0])
    np.testing.assert_allclose(sizes, [0.25, 0.25])
    alphas, sizes = path_points(2, "gausslegendre")      # the two-point Gauss rule on [0, 1]
    np.testing.assert_allclose(alphas, [0.5 - 0.5 / np.sqrt(3), 0.5 + 0.5 / np.sqrt(3)])
    np.testing.assert_allclose(sizes, [0.5, 0.5])
    x, target = batch("tiny", size=32, n=2)
    assert IntegratedGradients(tiny, steps=2).explain(x, target).raw.shape == x.shape
