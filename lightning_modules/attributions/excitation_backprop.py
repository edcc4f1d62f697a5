"""Excitation Backprop (Zhang et al. 2016): zennit's composite, with rules that keep the weights in the graph."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from zennit.composites import LayerMapComposite
from zennit.core import Hook, stabilize
from zennit.layer import Sum
from zennit.types import AvgPool, Linear

from .base import Attribution, Explanation, input_gradient


class _GraphKeepingRule(Hook):
    """A zennit rule whose backward is differentiable in the module's input *and* parameters.

    zennit's own rules (``BasicHook``) rebuild the layer from ``param.data`` and keep a
    graph only when the incoming relevance has one, so a loss on their maps gets no (or
    a partial) gradient for the weights. These rules use the parameters themselves and
    keep the graph whenever the outer backward does (``create_graph=True``).
    """

    def __init__(self, stabilizer: float = 1e-6):
        super().__init__()
        self.stabilizer = stabilizer

    def copy(self):
        return type(self)(self.stabilizer)

    def forward(self, module, input, output):
        self.stored_tensors["input"] = input

    def backward(self, module, grad_input, grad_output):
        create_graph = torch.is_grad_enabled()  # True inside a create_graph=True backward
        original = self.stored_tensors["input"][0]
        with torch.enable_grad():
            relevance = self.relevance(module, original, grad_output[0], create_graph)
        return tuple(relevance if grad.shape == relevance.shape else None for grad in grad_input)

    def relevance(self, module, x, relevance_out, create_graph):
        raise NotImplementedError


class NormRule(_GraphKeepingRule):
    """zennit's ``Norm`` (sum and average pooling): R_in = x * J^T (R_out / stabilize(f(x)))."""

    def relevance(self, module, x, relevance_out, create_graph):
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        output = module.forward(x)  # .forward: the module's hooks must not fire again
        (grad,) = torch.autograd.grad(output, x, relevance_out / stabilize(output, self.stabilizer),
                                      create_graph=create_graph)
        return x * grad


def _affine(module: nn.Module, x, weight, bias):
    """``module``'s linear map with ``weight`` and ``bias`` in place of its own (conv or linear)."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module._conv_forward(x, weight, bias)
    raise TypeError(f"ExcitationBackprop has no rule for {type(module).__name__}: use conv or linear layers")


class ZPlusRule(_GraphKeepingRule):
    """zennit's ``ZPlus`` (LRP alpha=1, beta=0) for conv and linear layers.

    R_in = x+ * W+^T s + x- * W-^T s with s = R_out / stabilize(W+ x+ + b+ + W- x-).
    The x- term is skipped when the input has no negative part (after a ReLU: every
    layer but the first): it is exactly zero then, and skipping it halves the work.
    """

    def relevance(self, module, x, relevance_out, create_graph):
        weight, bias = module.weight, module.bias
        if not create_graph:  # as zennit: no graph to the weights unless asked for
            weight, bias = weight.detach(), None if bias is None else bias.detach()
        branches = [(x.clamp(min=0), weight.clamp(min=0), None if bias is None else bias.clamp(min=0))]
        if (x < 0).any():
            branches.append((x.clamp(max=0), weight.clamp(max=0), None))
        inputs = [xi if xi.requires_grad else xi.detach().requires_grad_(True) for xi, _, _ in branches]
        outputs = [_affine(module, xi, w, b) for xi, (_, w, b) in zip(inputs, branches)]
        scaled = relevance_out / stabilize(sum(outputs), self.stabilizer)
        grads = torch.autograd.grad(outputs, inputs, [scaled] * len(outputs), create_graph=create_graph)
        return sum(xi * grad for xi, grad in zip(inputs, grads))


def excitation_backprop_composite(stabilizer: float = 1e-6) -> LayerMapComposite:
    """The layer map of ``zennit.composites.ExcitationBackprop`` with the differentiable rules above.

    Like zennit's, no canonizer: merging BatchNorm into the convolutions rewrites weights
    in place, which cuts the graph to them and is wrong in train mode; BatchNorm and
    ReLU pass the plain gradient, max-pooling routes it to the maximum.
    """
    return LayerMapComposite([
        (Sum, NormRule(stabilizer)),
        (AvgPool, NormRule(stabilizer)),
        (Linear, ZPlusRule(stabilizer)),
    ])


class ExcitationBackprop(Attribution):
    """Excitation Backprop's marginal winning probabilities in input space, summed over channels.

    (B,C,H,W) -> (B,1,H,W). ``raw`` (B,C,H,W) equals zennit's ``Gradient`` attributor
    under ``zennit.composites.ExcitationBackprop`` with a one-hot output at the target.
    """

    def __init__(self, model: nn.Module, stabilizer: float = 1e-6):
        super().__init__(model)
        self.stabilizer = stabilizer

    def _explain(self, x, target, create_graph) -> Explanation:
        context = excitation_backprop_composite(self.stabilizer).context(self.model)
        relevance, logits, _ = input_gradient(self.model, x, target, create_graph, context)
        return Explanation(relevance.sum(1, keepdim=True), logits, relevance)
