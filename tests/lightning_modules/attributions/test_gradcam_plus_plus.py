"""Grad-CAM++ and LayerCAM (lightning_modules/attributions/gradcam_plus_plus.py, layercam.py).

Captum has neither: the reference is each paper's formula written out here on the activations and
gradients Captum's ``LayerGradCam`` machinery gives (max abs difference < 1e-5 and < 1e-4 of the
map's scale), on a model whose gradient varies over the layer's positions (a flattening head) and on
TinyCNN; plus float64 finite differences of a loss on the maps.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.attributions import GradCAM, GradCAMPlusPlus, LayerCAM
from tests.attribution_references import (assert_same, batch, check_graph_contract, layer_activations_and_gradients,
                                          tiny_finite_difference_check, upsampled)


def gradcam_plus_plus_reference(acts, grads):
    """Chattopadhay et al. eq. 19 with the exponential score's derivatives (pytorch-grad-cam's form)."""
    alpha = grads ** 2 / (2 * grads ** 2 + acts.sum((2, 3), keepdim=True) * grads ** 3)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * grads.clamp(min=0)).sum((2, 3), keepdim=True)
    return (weights * acts).sum(1, keepdim=True).clamp(min=0)


def layercam_reference(acts, grads):
    """Jiang et al. eq. 4-5: each location's activation times its positive gradient, summed over channels."""
    return (grads.clamp(min=0) * acts).sum(1, keepdim=True).clamp(min=0)


REFERENCES = {GradCAMPlusPlus: gradcam_plus_plus_reference, LayerCAM: layercam_reference}


def flattening_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(6 * 5 * 7, 3)).eval()


@pytest.mark.parametrize("method", list(REFERENCES), ids=lambda m: m.__name__)
def test_equals_the_formula_on_captum_s_layer_gradients(tiny, method):
    cases = [(flattening_model(), "3", torch.randn(4, 3, 5, 7, generator=torch.Generator().manual_seed(1))),
             (tiny, "features.20", batch("tiny", size=32, n=3)[0])]
    for model, layer, x in cases:
        target = model(x).argmax(1)
        acts, grads = layer_activations_and_gradients(model, model.get_submodule(layer), x, target)
        reference = REFERENCES[method](acts, grads)
        out = method(model, layer).explain(x, target)
        assert_same(out.raw, reference)
        assert_same(out.maps, upsampled(reference, x.shape[2:]))
        gradcam = GradCAM(model, layer).explain(x, target).raw
        assert (out.raw / out.raw.amax() - gradcam / gradcam.amax()).abs().max() > 1e-3  # not Grad-CAM again


def test_layercam_on_a_pooled_head_with_positive_gradients_is_gradcam_times_the_area():
    """With global average pooling and a positive linear head, dy/dA = w_k / (h*w) everywhere and positive:
    LayerCAM is then exactly Grad-CAM (the mean gradient is the gradient), a check independent of Captum."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(5, 2)).eval()
    with torch.no_grad():
        model[4].weight.abs_()
    x = torch.randn(2, 3, 6, 6)
    target = torch.tensor([0, 1])
    torch.testing.assert_close(LayerCAM(model, "1")(x, target), GradCAM(model, "1")(x, target))


@pytest.mark.parametrize("method", list(REFERENCES), ids=lambda m: m.__name__)
def test_gradient_matches_finite_differences(method):
    tiny_finite_difference_check(lambda model: method(model, "features.20"))


@pytest.mark.parametrize("method", list(REFERENCES), ids=lambda m: m.__name__)
def test_graph_contract_and_config(tiny, method):
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    x, target = batch("tiny", size=32)
    check_graph_contract(lambda m: method(m, "features.20"), tiny, x, target)
    name = {GradCAMPlusPlus: "gradcam_plus_plus", LayerCAM: "layercam"}[method]
    cfg = compose_config([f"attribution={name}", "backbone=tiny"])
    explain = instantiate(cfg.attribution.explainer, model=tiny)
    assert type(explain) is method
    torch.testing.assert_close(explain(x, target), method(tiny, "features.20")(x, target))
    assert F.relu(explain(x, target)).equal(explain(x, target))


def test_grad_cam_plus_plus_weights_by_hand_with_a_vanishing_denominator():
    """One channel of activations 1 (sum S = 4), gradients 1, 0.5, -0.5, 0: alpha = 1 / (2 + S g) is 1/6 and 1/4
    for the positive ones; at g = -0.5 the denominator 2 + S g is 0, where the ReLU of g gives no weight (a finite
    0, not inf * 0); at g = 0 no weight. weights = 1/6 * 1 + 1/4 * 0.5 = 7/24, the map 7/24 everywhere."""
    method = GradCAMPlusPlus(nn.Sequential(nn.Conv2d(1, 1, 1)), "0")
    acts = torch.ones(1, 1, 2, 2, dtype=torch.float64)
    grads = torch.tensor([[[[1.0, 0.5], [-0.5, 0.0]]]], dtype=torch.float64)
    torch.testing.assert_close(method.combine(acts, grads), torch.full((1, 1, 2, 2), 7 / 24, dtype=torch.float64))
