"""LRP (lightning_modules/attributions/lrp.py): equal to zennit's EpsilonPlusFlat and EpsilonGammaBox
composites (canonized with zennit's own canonizers on these BatchNorm models; max abs difference
< 1e-5 and < 1e-4 of the map's scale), differentiable in conv *and* BatchNorm parameters (float64
finite differences), built from its YAMLs."""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.attributions import LRP
from lightning_modules.attributions.lrp import GammaRule, ZBoxRule, pixel_range_bounds
from lightning_modules.backbones import TinyCNN, torchvision_classifier
from tests.attribution_references import (assert_same, batch, check_graph_contract, finite_difference_check,
                                          randomized_batch_norms, small_resnet)
from tests.conf_checks import keys_defaulting_as_conf


def zennit_reference(model, x, target, composite: str, canonize: bool):
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer

    is_resnet = hasattr(model, "layer1")
    canonizers = ([ResNetCanonizer() if is_resnet else SequentialMergeBatchNorm()]) if canonize else None
    low, high = (torch.tensor(v, dtype=x.dtype).view(1, 3, 1, 1) for v in pixel_range_bounds((0.0, 1.0)))
    built = (EpsilonPlusFlat(canonizers=canonizers) if composite == "epsilon_plus_flat" else
             EpsilonGammaBox(low=low, high=high, canonizers=canonizers))
    with Gradient(model, built) as attributor:
        _, relevance = attributor(x, lambda out: F.one_hot(target, out.shape[1]).to(out))
    return relevance


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {"tiny": randomized_batch_norms(TinyCNN(8).eval()),
            "resnet18": randomized_batch_norms(torchvision_classifier("resnet18", 1000).eval())}


@pytest.mark.parametrize("name,canonize", [("tiny", True), ("tiny", False), ("resnet18", True)],
                         ids=["tiny-canonized", "tiny-uncanonized", "resnet18-canonized"])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_equals_zennit(models, name, composite, canonize):
    model = models[name]
    x, target = batch(name, size=32)
    x = x.clamp(*pixel_range_bounds()[0][:1], *pixel_range_bounds()[1][2:])  # inside ZBox's bounds
    reference = zennit_reference(model, x, target, composite, canonize)
    out = LRP(model, composite=composite, canonize=canonize).explain(x, target)
    assert_same(out.raw, reference)
    assert_same(out.maps, reference.sum(1, keepdim=True))
    if canonize:
        other = LRP(model, composite=composite, canonize=False).explain(x, target).raw
        assert (other - reference).abs().max() > 1e-3 * reference.abs().max()  # canonizing matters here


def test_canonize_auto_follows_batch_norm(models):
    assert LRP(models["tiny"]).canonize
    assert not LRP(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten())).canonize


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_gradient_matches_finite_differences_in_conv_and_batch_norm_parameters(composite):
    model = small_resnet()
    x, _ = batch("tiny", size=32, n=2, dtype=torch.float64)
    first = "layer1.0.conv2.weight" if composite == "epsilon_plus_flat" else "conv1.weight"  # Flat ignores conv1's
    params = {name: model.get_parameter(name) for name in (first, "layer2.0.bn2.bias", "fc.weight")}
    finite_difference_check(model, LRP(model, composite=composite), x, params, entries=1)


def test_graph_contract():
    torch.manual_seed(3)
    model = TinyCNN(8, width=4).eval()
    x, target = batch("tiny", size=32)
    check_graph_contract(lambda m: LRP(m), model, x, target)


def test_bad_settings_and_configs(models):
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    with pytest.raises(ValueError, match="epsilon_plus_flat, epsilon_gamma_box"):
        LRP(models["tiny"], composite="alpha_beta")
    x, target = batch("tiny", size=32)
    for name, composite in (("lrp", "epsilon_plus_flat"), ("lrp_gamma_box", "epsilon_gamma_box")):
        cfg = compose_config([f"attribution={name}", "backbone=tiny"])
        explain = instantiate(cfg.attribution.explainer, model=models["tiny"])
        assert explain.composite == composite and isinstance(explain, LRP)
        torch.testing.assert_close(explain(x, target), LRP(models["tiny"], composite=composite)(x, target))


def test_the_gamma_and_zbox_rules_equal_zennits_on_signed_inputs_and_weights():
    """One layer, inputs and weights of both signs (inside a ReLU network every hidden input is >= 0, so
    the full-model comparisons never reach the rules' negative-input terms)."""
    from zennit.attribution import Gradient
    from zennit.composites import LayerMapComposite
    from zennit.rules import Gamma, ZBox

    torch.manual_seed(3)
    layer = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1)).eval()
    x = torch.randn(2, 3, 6, 6)
    low, high = torch.full((1, 3, 1, 1), -2.5), torch.full((1, 3, 1, 1), 2.5)

    def relevance(rule) -> torch.Tensor:
        with Gradient(layer, LayerMapComposite([(torch.nn.Conv2d, rule)])) as attributor:
            return attributor(x, lambda out: out.sign() * out.abs().sqrt())[1]  # signed relevance in

    for rule, zennits in ((GammaRule, Gamma), (ZBoxRule, ZBox)):  # the same defaults as the rules they equal
        theirs = inspect.signature(zennits).parameters
        assert all(p.default == theirs[k].default for k, p in inspect.signature(rule).parameters.items()
                   if p.default is not inspect.Parameter.empty)
    for ours, reference in ((GammaRule(gamma=0.25), Gamma(gamma=0.25)),
                            (ZBoxRule([-2.5] * 3, [2.5] * 3), ZBox(low=low, high=high))):
        expected = relevance(reference)
        assert expected.abs().max() > 0
        torch.testing.assert_close(relevance(ours), expected, rtol=1e-5, atol=1e-6)


def test_pixel_bounds_are_the_pixel_range_after_imagenets_normalization_and_defaults_are_the_yamls():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, written out
    low, high = pixel_range_bounds((0.0, 1.0))
    assert low == pytest.approx([-m / s for m, s in zip(mean, std)])
    assert high == pytest.approx([(1 - m) / s for m, s in zip(mean, std)])
    assert pixel_range_bounds() == (low, high)
    assert keys_defaulting_as_conf("attribution", "lrp") == {"composite", "epsilon", "canonize"}
    assert keys_defaulting_as_conf("attribution", "lrp_gamma_box") == {"epsilon", "gamma", "pixel_range", "canonize"}
