"""Attribution maps: equal to Captum / zennit, batched, differentiable in the weights
(checked against float64 finite differences), and leaving the model as they found it."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.attributions import ExcitationBackprop, GradCAM, GuidedBackprop, InputXGradient
from lightning_modules.backbones import TinyCNN, torchvision_classifier
from lightning_modules.errors import UserError
from tests.attribution_references import (assert_same, batch, finite_difference_check, randomized_batch_norms,
                                          small_resnet, tiny_finite_difference_check, zhang_reference)

LAYERS = {"tiny": "features.20", "resnet18": "layer4"}
METHODS = {
    "gradcam": lambda model, name: GradCAM(model, LAYERS[name]),
    "guided_backprop": lambda model, name: GuidedBackprop(model),
    "input_x_gradient": lambda model, name: InputXGradient(model),
    "excitation_backprop": lambda model, name: ExcitationBackprop(model),
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tensors are tiny: threads only add overhead, and on a busy 2-core machine
    OpenMP spin-waiting made this file ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_captum():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\.")
        yield


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"tiny": TinyCNN(8).eval(), "resnet18": torchvision_classifier("resnet18", 1000).eval()}


# ----------------------------------------------------------------- equal to the references

@pytest.mark.parametrize("name", ["tiny", "resnet18"])
def test_gradcam_matches_captum(models, name):
    from captum.attr import LayerAttribution, LayerGradCam

    model = models[name]
    x, _ = batch(name)
    target = model(x).argmax(1)  # a random-weight GradCAM map is often all zero for other classes
    out = GradCAM(model, LAYERS[name]).explain(x, target)
    cam = LayerGradCam(model, model.get_submodule(LAYERS[name])).attribute(x, target, relu_attributions=True)
    assert_same(out.raw, cam)
    assert_same(out.maps, LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear"))
    assert out.maps.shape == (2, 1, 64, 64)


@pytest.mark.parametrize("name", ["tiny", "resnet18"])
@pytest.mark.parametrize("method", ["guided_backprop", "input_x_gradient"])
def test_input_space_methods_match_captum(models, name, method):
    """Before the channel reduction, and after it (maps = the sum over channels)."""
    from captum.attr import GuidedBackprop as CaptumGuidedBackprop
    from captum.attr import InputXGradient as CaptumInputXGradient

    model = models[name]
    x, target = batch(name)
    reference = {"guided_backprop": CaptumGuidedBackprop,
                 "input_x_gradient": CaptumInputXGradient}[method](model).attribute(x, target)
    out = METHODS[method](model, name).explain(x, target)
    assert_same(out.raw, reference)
    assert_same(out.maps, reference.sum(1, keepdim=True))


@pytest.mark.parametrize("name", ["tiny", "resnet18"])
@pytest.mark.parametrize("method", ["guided_backprop", "excitation_backprop", "excitation_backprop_uncanonized"])
def test_rule_based_methods_match_zennit(models, name, method):
    """ExcitationBackprop on these BatchNorm models is canonized by default: zennit's composite
    with zennit's own canonizers (BatchNorm merge; ResNet blocks' Sum) is the reference."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import ExcitationBackprop as ZennitExcitationBackprop
    from zennit.composites import GuidedBackprop as ZennitGuidedBackprop
    from zennit.torchvision import ResNetCanonizer

    model = randomized_batch_norms(models[name])
    x, target = batch(name)
    canonizers = [ResNetCanonizer() if name == "resnet18" else SequentialMergeBatchNorm()]
    composite = {"guided_backprop": lambda: ZennitGuidedBackprop(),
                 "excitation_backprop": lambda: ZennitExcitationBackprop(canonizers=canonizers),
                 "excitation_backprop_uncanonized": lambda: ZennitExcitationBackprop()}[method]()
    with Gradient(model, composite) as attributor:
        _, reference = attributor(x, lambda out: F.one_hot(target, out.shape[1]).to(out))
    explain = ExcitationBackprop(model, canonize=False) if method.endswith("uncanonized") else \
        METHODS[method](model, name)
    out = explain.explain(x, target)
    assert_same(out.raw, reference)
    assert_same(out.maps, reference.sum(1, keepdim=True))


def test_canonized_excitation_backprop_equals_zhang_reference():
    model = small_resnet()
    x, _ = batch("tiny", size=32, n=3, dtype=torch.float64)
    target = torch.tensor([0, 3, 4])
    reference = zhang_reference(model, x, target).detach()
    ours = ExcitationBackprop(model, stabilizer=1e-12).explain(x, target).raw
    assert ExcitationBackprop(model).canonize and not ExcitationBackprop(model, canonize=False).canonize
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-9 * float(reference.abs().max()))
    plain = ExcitationBackprop(model, canonize=False).explain(x, target).raw
    assert (plain - reference).abs().max() > 0.1 * reference.abs().max()  # canonizing matters here


def test_canonized_excitation_backprop_second_order_matches_finite_differences():
    """The merge lives in the rules: the map stays differentiable in conv *and* BatchNorm parameters."""
    model = small_resnet()
    x, _ = batch("tiny", size=32, n=2, dtype=torch.float64)
    params = {name: model.get_parameter(name) for name in
              ("conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "layer2.0.bn2.bias", "fc.weight")}
    finite_difference_check(model, ExcitationBackprop(model), x, params)


# ----------------------------------------------------------------- gradients of a loss on the maps

@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("method", list(METHODS))
def test_map_loss_gradient_matches_finite_differences(method, mode):
    layers = ("features.0.weight", "features.1.weight", "features.14.weight", "classifier.weight")
    tiny_finite_difference_check(lambda model: METHODS[method](model, "tiny"), layers, train=mode == "train")


@pytest.mark.parametrize("method", ["gradcam", "guided_backprop"])
def test_map_loss_gradient_on_resnet18_train_mode(method):
    """Residual blocks reuse one ReLU module twice; BatchNorm uses batch statistics."""
    torch.manual_seed(4)
    model = torchvision_classifier("resnet18", 10).double().train()
    x, _ = batch("tiny", size=64, dtype=torch.float64)
    params = {name: model.get_parameter(name) for name in ("layer1.0.conv2.weight", "layer4.1.bn2.weight")}
    finite_difference_check(model, METHODS[method](model, "resnet18"), x, params, entries=1)


@pytest.mark.parametrize("method", list(METHODS))
def test_logits_carry_the_plain_gradient(method):
    """A loss on the returned logits trains the model as if it had run model(x) itself:
    the modified backward rules must not stay in the forward graph."""
    torch.manual_seed(6)
    model = TinyCNN(8, width=4).double().train()
    x, target = batch("tiny", size=32, dtype=torch.float64)
    out = METHODS[method](model, "tiny").explain(x, target, create_graph=True)
    ours = torch.autograd.grad(F.cross_entropy(out.logits, target), list(model.parameters()))
    plain = torch.autograd.grad(F.cross_entropy(model(x), target), list(model.parameters()))
    for a, b in zip(ours, plain):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", list(METHODS))
def test_create_graph_controls_the_graph(models, method):
    model = models["tiny"]
    x, _ = batch("tiny")
    target = model(x).argmax(1)
    assert not METHODS[method](model, "tiny")(x, target).requires_grad
    maps = METHODS[method](model, "tiny")(x, target, create_graph=True)
    (grad,) = torch.autograd.grad(maps.sum(), model.features[0].weight)
    assert grad.abs().sum() > 0


# ----------------------------------------------------------------- batching, targets, grad modes

@pytest.mark.parametrize("method", list(METHODS))
def test_batched_maps_equal_per_image_maps(models, method):
    model = models["tiny"]
    x, target = batch("tiny", n=3)
    explain = METHODS[method](model, "tiny")
    maps = explain(x, target)
    singles = torch.cat([explain(x[i:i + 1], target[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(maps, singles, rtol=1e-4, atol=1e-9)


def test_target_int_and_predicted(models):
    model = models["tiny"]
    x, _ = batch("tiny")
    explain = GradCAM(model, "features.20")
    torch.testing.assert_close(explain(x, 3), explain(x, torch.tensor([3, 3])))
    predicted = model(x).argmax(1)
    out = explain.explain(x)
    torch.testing.assert_close(out.maps, explain(x, predicted))
    assert torch.equal(out.logits.argmax(1), predicted)


def test_bad_target_is_a_one_line_error(models):
    x, _ = batch("tiny")
    with pytest.raises(ValueError, match=r"target classes must lie in \[0, 8\)"):
        InputXGradient(models["tiny"])(x, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="target must be"):
        InputXGradient(models["tiny"])(x, torch.tensor([0, 1, 2]))


def test_works_under_no_grad_and_inference_mode_without_touching_x(models):
    model = models["resnet18"]
    x, target = batch("resnet18")
    explain = GuidedBackprop(model)
    expected = explain(x, target)
    with torch.no_grad():
        torch.testing.assert_close(explain(x, target), expected)
    with torch.inference_mode():
        x_inference = x.clone()
        torch.testing.assert_close(explain(x_inference, target), expected)
    assert not x.requires_grad and x.grad is None


def test_gradcam_layer_by_name_or_module(models):
    model = models["resnet18"]
    x, target = batch("resnet18")
    torch.testing.assert_close(GradCAM(model, "layer4")(x, target), GradCAM(model, model.layer4)(x, target))
    with pytest.raises(UserError, match="'layer9' is not a submodule of ResNet") as info:
        GradCAM(model, "layer9")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not a submodule"):
        GradCAM(model, nn.ReLU())


def test_gradcam_rejects_a_layer_that_runs_twice(models):
    model = models["resnet18"]
    x, target = batch("resnet18")
    with pytest.raises(UserError, match="ran 2 times"):
        GradCAM(model, "layer1.0.relu")(x, target)  # BasicBlock calls its ReLU twice
    assert_no_hooks(model)


# ----------------------------------------------------------------- no side effects

def assert_no_hooks(model: nn.Module):
    from torch.nn.modules import module as module_globals

    for name, module in model.named_modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(module, hooks), f"{name or 'model'} keeps {hooks}"
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert not tensor._backward_hooks, f"tensor {name} keeps a hook"
    for hooks in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks"):
        assert not getattr(module_globals, hooks)


@pytest.mark.parametrize("name, mode", [("tiny", "eval"), ("tiny", "train"), ("resnet18", "train")])
def test_mode_kept_and_no_hooks_left_even_on_errors(name, mode):
    torch.manual_seed(5)
    model = (TinyCNN(8) if name == "tiny" else torchvision_classifier("resnet18", 1000)).train(mode == "train")
    (model.layer4 if name == "resnet18" else model.features[1]).eval()  # a mixed-mode model stays mixed
    modes = {key: module.training for key, module in model.named_modules()}
    x, target = batch(name, size=32)
    for method, make in METHODS.items():
        explain = make(model, name)
        for create_graph in (False, True):
            maps = explain(x, target, create_graph=create_graph)
            assert maps.shape == (2, 1, 32, 32), method
            if create_graph and name == "tiny":
                maps.sum().backward()  # after the call: no hook may fire here
        assert {key: module.training for key, module in model.named_modules()} == modes
        assert_no_hooks(model)
        with pytest.raises(RuntimeError):  # fails inside the forward, with hooks installed
            explain(torch.randn(2, 4, 32, 32), target)
        assert_no_hooks(model)


# ----------------------------------------------------------------- built from the YAML

@pytest.mark.parametrize("attribution", list(METHODS))
@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_instantiate_from_config(models, attribution, backbone):
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    cfg = compose_config([f"attribution={attribution}", f"backbone={backbone}"])
    model = models[backbone]
    explain = instantiate(cfg.attribution.explainer, model=model)
    x, target = batch(backbone, size=32)
    torch.testing.assert_close(explain(x, target), METHODS[attribution](model, backbone)(x, target))
