"""Reference implementations for the attribution tests, written out independently of the code under test."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tests.gradient_checks import assert_gradients_match_differences


def randomized_batch_norms(model: nn.Module, seed: int = 5) -> nn.Module:
    """Running statistics and affine parameters away from (0, 1): merging a BatchNorm then
    changes the map (in a fresh model it is nearly the identity)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for tensor, low, high in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0),
                                          (m.weight, -1.0, 1.5), (m.bias, -0.3, 0.3)):
                    tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=gen))
    return model


def zhang_reference(model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Zhang et al.'s excitation backprop on a torchvision BasicBlock ResNet, written out layer by
    layer (float64): each BatchNorm merged into its convolution, Z+ through conv/linear (the
    x- W- term on the signed input image), relevance split in proportion at each residual sum
    and at the average pool, ReLU and max-pool passing the plain gradient. -> (B,C,H,W)."""
    def stable(z, eps=1e-12):  # z away from 0 by eps, keeping its sign (0 counts as positive)
        return z + ((z == 0).to(z) + z.sign()) * eps

    def merged(conv, bn):
        scale = bn.weight / (bn.running_var + bn.eps).sqrt()
        return conv.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale

    def zplus(a, relevance, weight, bias, stride, padding):
        parts = [(a.clamp(min=0), weight.clamp(min=0), bias.clamp(min=0)), (a.clamp(max=0), weight.clamp(max=0), None)]
        inputs = [p.detach().requires_grad_(True) for p, _, _ in parts]
        outs = [F.conv2d(i, w, b, stride, padding) for i, (_, w, b) in zip(inputs, parts)]
        s = relevance / stable(sum(outs))
        grads = torch.autograd.grad(outs, inputs, [s, s])
        return sum(i * g for i, g in zip(inputs, grads)).detach()

    def conv_bn(a, relevance, conv, bn):
        return zplus(a, relevance, *merged(conv, bn), conv.stride, conv.padding)

    def through(fn, a, relevance):  # the plain gradient of fn
        a = a.detach().requires_grad_(True)
        return torch.autograd.grad(fn(a), a, relevance)[0]

    stem = model.conv1(x)
    pooled = model.maxpool(F.relu(model.bn1(stem)))
    acts, h = [], pooled
    for block in [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]:
        mid = F.relu(block.bn1(block.conv1(h)))
        out = block.bn2(block.conv2(mid))
        identity = h if block.downsample is None else block.downsample(h)
        acts.append((block, h, mid, out, identity))
        h = F.relu(out + identity)
    features = model.avgpool(h).flatten(1)
    fc_in = features.detach().requires_grad_(True)
    logits = F.linear(fc_in, model.fc.weight.clamp(min=0), model.fc.bias.clamp(min=0))
    seed = F.one_hot(target, logits.shape[1]).to(logits) / stable(logits)
    relevance = fc_in * torch.autograd.grad(logits, fc_in, seed)[0]
    relevance = h * (relevance / stable(features))[:, :, None, None] / h[0, 0].numel()  # average pool: in proportion
    for block, h_in, mid, out, identity in reversed(acts):
        total = out + identity
        relevance = relevance * (total > 0)  # the block's last ReLU
        r_out, r_identity = out * relevance / stable(total), identity * relevance / stable(total)
        r_mid = conv_bn(mid, r_out, block.conv2, block.bn2) * (mid > 0)
        relevance = conv_bn(h_in, r_mid, block.conv1, block.bn1)
        relevance = relevance + (r_identity if block.downsample is None else
                                 conv_bn(h_in, r_identity, block.downsample[0], block.downsample[1]))
    relevance = through(lambda a: model.maxpool(F.relu(a)), model.bn1(stem), relevance)
    return conv_bn(x, relevance, model.conv1, model.bn1)


def small_resnet() -> nn.Module:
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(6)
    return randomized_batch_norms(ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5).double().eval())


def batch(name: str, size: int = 64, n: int = 2, dtype=torch.float32):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, size, size, generator=gen, dtype=dtype)
    target = torch.randint(0, 8 if name == "tiny" else 1000, (n,), generator=gen)
    return x, target


def assert_same(ours: torch.Tensor, reference: torch.Tensor):
    """Max abs difference < 1e-5, and < 1e-4 of the reference's scale (random-weight maps are small)."""
    assert ours.shape == reference.shape
    scale = reference.abs().max().item()
    assert scale > 0, "reference map is all zeros: the comparison would prove nothing"
    diff = (ours - reference).abs().max().item()
    assert diff < 1e-5 and diff < 1e-4 * scale, f"max abs diff {diff:.3g} (reference scale {scale:.3g})"


def finite_difference_check(model, explain, x, params: dict[str, nn.Parameter], entries: int = 2):
    """Autograd d/dθ sum(maps * w) vs a float64 central difference, on the largest-gradient entries.

    The target is the predicted class (random-weight GradCAM maps of other classes are often
    all zero); a step of 1e-7 in float64 flips no ReLU / max-pool decision on random inputs.
    """
    with torch.no_grad():
        target = model(x).argmax(1)
    weights = torch.randn(x.shape[0], 1, *x.shape[2:], generator=torch.Generator().manual_seed(2), dtype=x.dtype)

    def loss() -> torch.Tensor:
        return (explain(x, target, create_graph=True) * weights).sum()

    assert_gradients_match_differences(loss, params, entries)


def layer_activations_and_gradients(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """The layer's output A and dy_t/dA as Captum's ``LayerGradCam`` obtains them: (B,K,h,w) each."""
    from captum._utils.gradient import compute_layer_gradients_and_eval

    grads, acts = compute_layer_gradients_and_eval(model, layer, x, target)
    return acts[0], grads[0]


def upsampled(cam: torch.Tensor, size) -> torch.Tensor:
    from captum.attr import LayerAttribution

    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")


def check_graph_contract(make, model: nn.Module, x: torch.Tensor, target: torch.Tensor):
    """maps carry no graph unless asked; with create_graph the maps reach the weights and the logits
    carry the plain model's gradient (the method's backward rules do not stay in the forward graph)."""
    explain = make(model)
    plain = explain.explain(x, target)
    assert not plain.maps.requires_grad and not plain.logits.requires_grad
    kept = explain.explain(x, target, create_graph=True)
    torch.testing.assert_close(kept.maps.detach(), plain.maps)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(kept.maps.square().sum(), params, allow_unused=True, retain_graph=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    ours = torch.autograd.grad(F.cross_entropy(kept.logits, target), params)
    reference = torch.autograd.grad(F.cross_entropy(model(x), target), params)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)


TINY_CHECKED = ("features.0.weight", "features.14.weight", "classifier.weight")


def tiny_finite_difference_check(make_method, layers=TINY_CHECKED, train: bool = False) -> None:
    """:func:`finite_difference_check` through ``make_method(model)`` on a float64 TinyCNN (seed 3, eval mode
    unless ``train``) and 32 px tiny inputs, at the weights of ``layers``."""
    from lightning_modules.backbones import TinyCNN

    torch.manual_seed(3)
    model = TinyCNN(8, width=4).double().train(train)
    x, _ = batch("tiny", size=32, dtype=torch.float64)
    finite_difference_check(model, make_method(model), x, {name: model.get_parameter(name) for name in layers})
