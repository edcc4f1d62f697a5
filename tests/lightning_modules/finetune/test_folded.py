"""The BatchNorm-folded twin the fine-tuning step trains through: same gradients, shared weights, and the
model itself wherever the twin is not proven equal."""
from __future__ import annotations

import copy
import logging
from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from lightning_modules.attributions import GradCAM, GuidedBackprop
from lightning_modules.fast_forward import unequal
from lightning_modules.finetune.folded import FoldedConvBN, conv_bn_pairs, folded_twin, proven_twin


def _random_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> nn.BatchNorm2d:
    """Running statistics and affine terms far from the identity, so that a wrong fold shows."""
    c = bn.num_features
    bn.running_mean.copy_(torch.randn(c, generator=generator, dtype=bn.running_mean.dtype))
    bn.running_var.copy_(torch.rand(c, generator=generator, dtype=bn.running_var.dtype) * 3 + 0.2)
    if bn.affine:
        with torch.no_grad():
            bn.weight.copy_(torch.randn(c, generator=generator, dtype=bn.weight.dtype))
            bn.bias.copy_(torch.randn(c, generator=generator, dtype=bn.bias.dtype))
    return bn.eval()


@pytest.mark.parametrize("conv_bias", [False, True])
@pytest.mark.parametrize("affine", [False, True])
def test_folded_conv_equals_bn_of_conv_in_value_and_gradient(conv_bias, affine):
    generator = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=conv_bias).double()
    bn = _random_bn(nn.BatchNorm2d(5, affine=affine, eps=1e-3).double(), generator)
    x = torch.randn(2, 3, 9, 7, generator=generator, dtype=torch.float64)
    weights = [t for t in (*conv.parameters(), *bn.parameters())]

    def value_and_grads(fn):
        out = fn(x)
        loss = (out * torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out)).sum()
        return out, torch.autograd.grad(loss, weights)

    # bn(conv(x)) written out: (conv(x) - mean) / sqrt(var + eps) * gamma + beta
    def by_hand(inp):
        z = conv(inp)
        scale = (bn.running_var + bn.eps).rsqrt().view(1, -1, 1, 1)
        z = (z - bn.running_mean.view(1, -1, 1, 1)) * scale
        return z * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1) if affine else z

    expected, expected_grads = value_and_grads(by_hand)
    got, got_grads = value_and_grads(FoldedConvBN(conv, bn))
    torch.testing.assert_close(got, expected)
    for g, e in zip(got_grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_pairs_are_a_conv_output_read_by_a_batchnorm_only():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn_a = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
            self.b, self.bn_b = nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4)
            self.bn_c = nn.BatchNorm2d(4)  # reads a ReLU's output: nothing to fold into
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            x = self.bn_a(self.a(x))
            x = self.bn_b(self.b(x))
            return self.head(self.bn_c(torch.relu(x)).mean((2, 3)))

    net = Net().eval()
    assert conv_bn_pairs(net, torch.randn(1, 3, 8, 8)) == [("a", "bn_a"), ("b", "bn_b")]
    net.bn_a.train()  # train-mode BatchNorm uses batch statistics: never folded
    assert conv_bn_pairs(net, torch.randn(2, 3, 8, 8)) == [("b", "bn_b")]
    net.bn_a.eval()
    net.bn_b = nn.BatchNorm2d(4, track_running_stats=False).eval()  # batch statistics in eval mode too
    assert conv_bn_pairs(net, torch.randn(2, 3, 8, 8)) == [("a", "bn_a")]


def test_a_conv_that_pairs_twice_is_not_folded():
    class Shared(nn.Module):  # one conv, two BatchNorms: folding one into it would change the other use
        def __init__(self):
            super().__init__()
            self.conv, self.bn1, self.bn2 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.BatchNorm2d(3)
            self.other, self.bn3 = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.bn2(self.conv(self.bn1(self.conv(x)))) + self.bn3(self.other(x))

    assert conv_bn_pairs(Shared().eval(), torch.randn(1, 3, 4, 4)) == [("other", "bn3")]


def _small_resnet() -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, generator)
    return net.eval()


def _grads(model: nn.Module, explainer, x, y) -> list[torch.Tensor]:
    """Parameter gradients of an RMA-like map term plus a logit term, through ``explainer``'s model."""
    out = explainer.explain(x, y, create_graph=True)
    loss = (out.maps * torch.linspace(0, 1, out.maps.numel()).view_as(out.maps)).sum() + out.logits.square().mean()
    params = list(model.parameters())
    return [torch.zeros_like(p) if g is None else g
            for g, p in zip(torch.autograd.grad(loss, params, allow_unused=True), params)]


@pytest.mark.parametrize("attribution", [partial(GradCAM, layer="layer4"), GuidedBackprop])
def test_the_twin_gives_the_models_gradients_and_shares_its_weights(attribution):
    model = _small_resnet()
    x, y = torch.randn(3, 3, 48, 48), torch.tensor([0, 3, 4])
    trained, explainer = proven_twin(model, attribution, x, y)
    folded = [m for m in trained.modules() if isinstance(m, FoldedConvBN)]
    assert len(folded) == 20, "every conv + BatchNorm pair of resnet18 (17 convs, 3 downsamples) is folded"
    batchnorms = {id(m) for m in trained.modules() if isinstance(m, nn.BatchNorm2d)}
    assert batchnorms == {id(m.bn) for m in folded}, "no BatchNorm runs on its own in the twin"
    # the twin's parameters are the model's own tensors: an optimizer on the model trains the twin
    assert {id(p) for p in trained.parameters()} <= {id(p) for p in model.parameters()}
    assert trained.conv1.conv.weight is model.conv1.weight and trained.conv1.bn is model.bn1
    reference = copy.deepcopy(model)
    expected = _grads(reference, attribution(reference), x, y)
    got = _grads(model, explainer, x, y)
    for (name, _), g, e in zip(model.named_parameters(), got, expected):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5 * float(e.abs().max()) + 1e-12, msg=name)
    running_mean = model.bn1.running_mean.clone()
    explainer.explain(x, y, create_graph=True)
    assert torch.equal(model.bn1.running_mean, running_mean), "folding must never update running statistics"


def _conv_net() -> nn.Module:
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 6, 3), nn.BatchNorm2d(6),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m, generator)
    return net.eval()


@pytest.mark.parametrize("build, layer, reason, folded_layer", [(_conv_net, "3", "maps", "5"),
                                                                (_small_resnet, "layer4.1.conv2", "", "layer4")])
def test_a_map_taken_on_a_folded_convs_own_output_keeps_the_model(caplog, build, layer, reason, folded_layer):
    model = build()
    x, y = torch.randn(2, 3, 40, 40), torch.tensor([1, 2])
    # GradCAM on a convolution reads its output *before* its BatchNorm; the twin's module there outputs
    # after it (maps differ), or hands the hooked output to the block's in-place ops (it raises): either
    # way the model itself must train
    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune.folded"):
        trained, explainer = proven_twin(model, partial(GradCAM, layer=layer), x, y)
    assert trained is model and explainer.model is model
    assert "without BatchNorm folding" in caplog.text and reason in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune.folded"):  # after the BatchNorm: folded
        trained, _ = proven_twin(model, partial(GradCAM, layer=folded_layer), x, y)
    assert trained is not model and not caplog.text


def test_a_conv_output_read_twice_keeps_the_model(caplog):
    class Twice(nn.Module):  # the conv's output feeds the BatchNorm and, unnormalized, the head
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.head = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(8, 2)

        def forward(self, x):
            z = self.conv(x)
            return self.head(torch.cat([self.bn(z), z], 1).relu().mean((2, 3)))

    model = Twice().eval()
    _random_bn(model.bn, torch.Generator().manual_seed(2))
    x, y = torch.randn(2, 3, 10, 10), torch.tensor([0, 1])
    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune.folded"):
        trained, _ = proven_twin(model, GuidedBackprop, x, y)
    assert trained is model
    with torch.no_grad():  # the head reads conv(x) where the twin gives it bn(conv(x)); the proof runs in float64
        net, x = copy.deepcopy(model).double(), x.double()
        z = net.conv(x)
        wrong = net.head(torch.cat([net.bn(z), net.bn(z)], 1).relu().mean((2, 3)))
        largest = float((wrong - net(x)).abs().max())
    assert largest > 1e-3 and f"its logits' values differ by up to {largest:.3g}" in caplog.text


def test_a_twin_that_raises_keeps_the_model_and_logs_the_first_line(caplog):
    model = _conv_net()
    x, y = torch.randn(2, 3, 12, 12), torch.tensor([0, 1])

    def factory(net):  # an attribution that cannot handle the twin
        if any(isinstance(m, FoldedConvBN) for m in net.modules()):
            raise RuntimeError("no attribution for FoldedConvBN\nsecond line of the message")
        return GuidedBackprop(net)

    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune.folded"):
        trained, explainer = proven_twin(model, factory, x, y)
    assert trained is model and explainer.model is model
    assert caplog.messages == ["fine-tuning Sequential without BatchNorm folding: the folded twin is not used because "
                               "it raised RuntimeError: no attribution for FoldedConvBN"]


def test_models_without_batchnorm_or_in_train_mode_train_as_they_are():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    plain(x)
    assert proven_twin(plain, GuidedBackprop, x, y)[0] is plain
    training = _small_resnet().train()
    assert proven_twin(training, GuidedBackprop, x.expand(2, 3, 8, 8), y)[0] is training
    assert not any(isinstance(m, FoldedConvBN) for m in folded_twin(plain, x).modules())


def test_proven_equal_allows_float32_rounding_of_sums_that_nearly_cancel():
    """A guided-backprop map is a channel sum whose terms nearly cancel: float32 rounds each pixel by a part
    of the terms, which can exceed a part of the pixel itself. Equal allows that rounding, and rejects an
    image moved by 1% of its norm or a non-finite value."""
    generator = torch.Generator().manual_seed(0)
    signal = torch.randn(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    spread = torch.randn(2, 32, 16, 16, generator=generator, dtype=torch.float64) * 300
    terms = torch.cat([spread, -spread], 1) + signal / 64
    exact = terms.sum(1, keepdim=True).float()  # summed in float64: rounded once
    rounded = terms.float().sum(1, keepdim=True)  # summed in float32: the rounding a fast path's reordering adds
    assert float((rounded - exact).abs().max()) > 1e-4 * float(exact.abs().max()), "pixels round beyond 1e-4"
    assert unequal(rounded, exact, rtol=1e-3, atol=1e-4) is None
    direction = torch.randn(exact[1].shape, generator=generator)
    moved = exact.clone()
    moved[1] += 0.01 * exact[1].norm() * direction / direction.norm()
    assert "of a sample's norm" in unequal(moved, exact, rtol=1e-3, atol=1e-4)
    broken = rounded.clone()
    broken[0, 0, 3, 3] = float("nan")
    assert unequal(broken, exact, rtol=1e-3, atol=1e-4).startswith("values differ")
    # an all-zero image (e.g. a GradCAM map with no positive evidence) is held to the batch's scale
    exact[0], rounded[0] = 0.0, 1e-9
    assert unequal(rounded, exact, rtol=1e-3, atol=1e-4) is None


@pytest.mark.parametrize("attribution", ["guided_backprop", "gradcam", "saliency", "input_x_gradient"])
def test_fold_batchnorm_setting_and_the_trained_copy(trained_tiny, attribution):
    """Holds for any base model reaching the documented accuracy (conftest's HARMONY_TEST_BASE_SEED picks
    another): the setting decides, the trained base model is folded, and the RIS step's gradients are the
    unfolded model's. Gradients are compared in float64: in float32 a ReLU or max-pool input within rounding
    of its switch point routes a map's gradient differently in the two graphs (see folded.py)."""
    from harmony_cli.hydra_app import compose_config
    from lightning_modules.finetune import build_module
    from lightning_modules.data import SyntheticShapes, collate_skip_none

    images = SyntheticShapes("val", size=32)
    first = collate_skip_none([images[i] for i in range(32)])  # a first batch of finetune.batch_size
    batch = {key: value[:8] for key, value in first.items()}
    grads = {}
    for fold in (True, False):
        cfg = compose_config(["metric=ris", f"attribution={attribution}",
                              f"finetune.fold_batchnorm={str(fold).lower()}"])
        module = build_module(cfg, original=copy.deepcopy(trained_tiny))
        module.train()
        trained, _ = module.trainable(first["image"], first["label"])
        assert any(isinstance(m, FoldedConvBN) for m in trained.modules()) is fold
        module = build_module(cfg, original=copy.deepcopy(trained_tiny).double())
        module.train()
        torch.manual_seed(0)  # the same RIS perturbation both times
        module.objective({**batch, "image": batch["image"].double()})["loss"].backward()
        grads[fold] = {n: p.grad.clone() for n, p in module.finetuned.named_parameters()}
    scale = max(float(g.norm()) for g in grads[False].values())
    for name, expected in grads[False].items():
        difference, norm = float((grads[True][name] - expected).norm()), float(expected.norm())
        assert difference <= 1e-6 * norm + 1e-9 * scale, f"{name}: differs by {difference:.3g}, norm {norm:.3g}"
