"""Reference implementations for the attribution tests, written out independently of the code under test."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
