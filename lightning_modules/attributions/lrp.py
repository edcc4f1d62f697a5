"""Layer-wise relevance propagation (Bach et al. 2015) with zennit's composites, canonized as
excitation backprop is, with rules that keep the graph to the weights.

Two composites, as zennit builds them (``zennit.composites``):

- ``epsilon_plus_flat``: Flat on the first conv/linear layer, ZPlus on the other convolutions,
  Epsilon on the dense layers;
- ``epsilon_gamma_box``: ZBox on the first convolution (the input's range [low, high]), Gamma on
  the other convolutions, Epsilon on the dense layers.

Both pass relevance through activations unchanged and split it in proportion at sums and
average pools. zennit's rules rebuild each layer from ``param.data`` (no graph to the weights);
the rules here compute the same relevance from the parameters themselves (and BatchNorms merged
into them, :func:`merged_parameters`), so a loss on the map trains the model.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.core import stabilize
from zennit.layer import Sum
from zennit.rules import Pass
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import Activation, AvgPool, BatchNorm, Convolution
from zennit.types import Linear as AnyLinear

from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .base import Attribution, Explanation, input_gradient
from .excitation_backprop import (MergeBatchNormInRule, NormRule, ZPlusRule, _affine,
                                  _GraphKeepingRule, has_batch_norm, merged_parameters)

COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box")


def _parameters(module, create_graph):
    weight, bias = merged_parameters(module)
    if not create_graph:  # as zennit: no graph to the weights unless asked for
        weight, bias = weight.detach(), None if bias is None else bias.detach()
    return weight, bias


def _forward(module, inputs, params):
    """The layer at each input with each (weight, bias): (inputs that gradients can be taken for, outputs)."""
    leaves = [t if t.requires_grad else t.detach().requires_grad_(True) for t in inputs]
    return leaves, [_affine(module, t, w, b) for t, (w, b) in zip(leaves, params)]


def _weighted(leaves, outputs, scaled, signs, create_graph):
    """sum_i sign_i * input_i * J_i^T scaled_i: the relevance of a zennit BasicHook's reducer."""
    grads = torch.autograd.grad(outputs, leaves, scaled, create_graph=create_graph)
    return sum(sign * leaf * grad for sign, leaf, grad in zip(signs, leaves, grads))


class EpsilonRule(_GraphKeepingRule):
    """zennit's ``Epsilon``: R_in = x * J^T (R_out / stabilize(Wx + b, epsilon))."""

    def relevance(self, module, x, relevance_out, create_graph):
        leaves, (z,) = _forward(module, [x], [_parameters(module, create_graph)])
        return _weighted(leaves, [z], [relevance_out / stabilize(z, self.stabilizer)], [1], create_graph)


class FlatRule(_GraphKeepingRule):
    """zennit's ``Flat``: relevance spread uniformly over each output's receptive field (weights and
    inputs set to 1, no bias): R_in = J1^T (R_out / stabilize(1 * 1)). It does not depend on the weights."""

    def relevance(self, module, x, relevance_out, create_graph):
        ones = torch.ones_like(x).requires_grad_(True)
        _, (z,) = _forward(module, [ones], [(torch.ones_like(module.weight), None)])
        (grad,) = torch.autograd.grad(z, ones, relevance_out / stabilize(z, self.stabilizer),
                                      create_graph=create_graph)
        return grad


class GammaRule(_GraphKeepingRule):
    """zennit's (generalized) ``Gamma``: positive contributions with the weights ``W + gamma W+``
    where the output is positive, negative ones with ``W + gamma W-`` where it is negative."""

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6):
        super().__init__(stabilizer)
        self.gamma = gamma

    def copy(self):
        return type(self)(self.gamma, self.stabilizer)

    def relevance(self, module, x, relevance_out, create_graph):
        weight, bias = _parameters(module, create_graph)
        g = self.gamma
        up, down = weight + g * weight.clamp(min=0), weight + g * weight.clamp(max=0)
        bias_up = None if bias is None else bias + g * bias.clamp(min=0)
        bias_down = None if bias is None else bias + g * bias.clamp(max=0)
        # four distinct tensors: a gradient w.r.t. a tensor used twice would sum both terms
        inputs = [x.clamp(min=0), x.clamp(max=0), x.clamp(min=0), x.clamp(max=0)]
        params = [(up, bias_up), (down, None), (down, bias_down), (up, None)]
        leaves, out = _forward(module, inputs, params)
        with torch.no_grad():
            z = _affine(module, x, weight, bias)
        positive = (z > 0).to(z) * relevance_out / stabilize(out[0] + out[1], self.stabilizer)
        negative = (z < 0).to(z) * relevance_out / stabilize(out[2] + out[3], self.stabilizer)
        return _weighted(leaves, out, [positive, positive, negative, negative], [1] * 4, create_graph)


class ZBoxRule(_GraphKeepingRule):
    """zennit's ``ZBox`` for inputs bounded by [low, high] (per channel):
    R_in = x J^T s - low J+^T s - high J-^T s with s = R_out / stabilize(Wx + b - (W+ low + b+) - (W- high + b-))."""

    def __init__(self, low, high, stabilizer: float = 1e-6):
        super().__init__(stabilizer)
        self.low, self.high = low, high

    def copy(self):
        return type(self)(self.low, self.high, self.stabilizer)

    def relevance(self, module, x, relevance_out, create_graph):
        weight, bias = _parameters(module, create_graph)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        low, high = (torch.as_tensor(v, dtype=x.dtype, device=x.device).view(shape).expand_as(x).contiguous()
                     for v in (self.low, self.high))
        params = [(weight, bias), (weight.clamp(min=0), None if bias is None else bias.clamp(min=0)),
                  (weight.clamp(max=0), None if bias is None else bias.clamp(max=0))]
        leaves, out = _forward(module, [x, low, high], params)
        scaled = relevance_out / stabilize(out[0] - out[1] - out[2], self.stabilizer)
        return _weighted(leaves, out, [scaled] * 3, [1, -1, -1], create_graph)


def pixel_range_bounds(pixel_range: Sequence[float] = (0.0, 1.0)) -> tuple[list[float], list[float]]:
    """Per-channel (low, high) of pixels in ``pixel_range`` after the data's ImageNet normalization."""
    lowest, highest = pixel_range
    return ([(lowest - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)],
            [(highest - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])


def lrp_composite(composite: str, epsilon: float, stabilizer: float, gamma: float, low, high,
                  canonize: bool) -> LayerMapComposite:
    """zennit's ``EpsilonPlusFlat`` / ``EpsilonGammaBox`` layer maps with the graph-keeping rules above;
    canonized (``canonize=True``) as :func:`excitation_backprop_composite` is."""
    # as zennit's layer_map_base: a BatchNorm passes relevance unchanged, merged into the layer before it or not
    base = [(Activation, Pass()), (Sum, NormRule(stabilizer)), (AvgPool, NormRule(stabilizer)), (BatchNorm, Pass())]
    if composite == "epsilon_plus_flat":
        layer_map = base + [(Convolution, ZPlusRule(stabilizer)), (nn.Linear, EpsilonRule(epsilon))]
        first_map = [(AnyLinear, FlatRule(stabilizer))]
    elif composite == "epsilon_gamma_box":
        layer_map = base + [(Convolution, GammaRule(gamma, stabilizer)), (nn.Linear, EpsilonRule(epsilon))]
        first_map = [(Convolution, ZBoxRule(low, high, stabilizer))]
    else:
        raise ValueError(f"unknown LRP composite {composite!r}: use one of {', '.join(COMPOSITES)}")
    canonizers = None
    if canonize:
        canonizers = [MergeBatchNormInRule(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
    return SpecialFirstLayerMapComposite(layer_map, first_map, canonizers=canonizers)


class LRP(Attribution):
    """LRP relevance in input space under a zennit composite, summed over channels.

    (B,C,H,W) -> (B,1,H,W). ``raw`` (B,C,H,W) equals zennit's ``Gradient`` attributor under
    ``zennit.composites.EpsilonPlusFlat`` / ``EpsilonGammaBox(low, high)`` with a one-hot output at
    the target, with zennit's ``SequentialMergeBatchNorm`` and ResNet canonizers when canonized.

    composite: "epsilon_plus_flat" or "epsilon_gamma_box". epsilon: the dense layers' epsilon.
    gamma: the Gamma rule's. pixel_range: the raw pixel range ZBox bounds, mapped through the data's
        ImageNet normalization (or give ``low`` and ``high`` per channel in normalized units).
    canonize: "auto" (on for models with BatchNorm), True or False (see excitation_backprop.py).
    """

    family = "rule-based"
    reference = "Bach et al. 2015"
    equals = "zennit EpsilonPlusFlat composite"

    def __init__(self, model: nn.Module, composite: str = "epsilon_plus_flat", epsilon: float = 1e-6,
                 gamma: float = 0.25, pixel_range: Sequence[float] = (0.0, 1.0), low=None, high=None,
                 stabilizer: float = 1e-6, canonize: bool | str = "auto"):
        super().__init__(model)
        if composite not in COMPOSITES:
            raise ValueError(f"unknown LRP composite {composite!r}: use one of {', '.join(COMPOSITES)}")
        if canonize not in (True, False, "auto"):
            raise ValueError(f"LRP canonize must be true, false or auto, got {canonize!r}")
        default_low, default_high = pixel_range_bounds(pixel_range)
        self.composite, self.epsilon, self.gamma, self.stabilizer = composite, epsilon, gamma, stabilizer
        self.low = default_low if low is None else low
        self.high = default_high if high is None else high
        self.canonize = has_batch_norm(model) if canonize == "auto" else bool(canonize)

    def _explain(self, x, target, create_graph) -> Explanation:
        composite = lrp_composite(self.composite, self.epsilon, self.stabilizer, self.gamma, self.low, self.high,
                                  self.canonize)
        relevance, logits, _ = input_gradient(self.model, x, target, create_graph, composite.context(self.model))
        return Explanation(relevance.sum(1, keepdim=True), logits, relevance)


class LRPEpsilonGammaBox(LRP):
    """:class:`LRP` under zennit's ``EpsilonGammaBox`` (conf/attribution/lrp_gamma_box.yaml): ZBox on the
    first convolution, bounded by ``pixel_range`` after the data's normalization (or ``low``/``high``)."""

    equals = "zennit EpsilonGammaBox composite"

    def __init__(self, model: nn.Module, epsilon: float = 1e-6, gamma: float = 0.25,
                 pixel_range: Sequence[float] = (0.0, 1.0), low=None, high=None, stabilizer: float = 1e-6,
                 canonize: bool | str = "auto"):
        super().__init__(model, "epsilon_gamma_box", epsilon, gamma, pixel_range, low, high, stabilizer, canonize)
