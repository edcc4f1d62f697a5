"""Excitation Backprop (Zhang et al. 2016): zennit's composite, with rules that keep the weights in the graph.

Zhang et al. define the rule on a network of linear layers and ReLUs. On a model with
BatchNorm and residual additions that holds only after *canonization* (zennit's term):
each BatchNorm merged into the convolution before it (the Z+ rule then sees the merged
weights ``W * gamma / sqrt(var + eps)``, so a channel BatchNorm flips or scales changes
which weights count as excitatory), and a ResNet block's addition made a ``Sum`` layer
that splits relevance in proportion to each branch's contribution. Without it, a
BatchNorm passes the plain gradient (scaling relevance by gamma / sqrt(var)) and the
residual addition copies the whole relevance into both branches. zennit's canonizers
do this by rewriting ``param.data`` in place, which cuts the graph to the parameters;
here the merge happens inside the rule (:class:`MergeBatchNormInRule`), from the
parameters themselves, so the map stays differentiable in every weight, and the
forward pass is untouched.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import LayerMapComposite
from zennit.core import Hook, stabilize
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer
from zennit.types import AvgPool, BatchNorm, Linear

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


_MERGED_INTO = "_harmony_merged_batch_norm"  # on a conv/linear: the BatchNorm merged into its rule
_MERGED = "_harmony_merged"                   # on a BatchNorm: True while merged (its relevance passes as is)


class MergeBatchNormInRule(SequentialMergeBatchNorm):
    """zennit's ``SequentialMergeBatchNorm`` pairing (a BatchNorm right after a conv/linear layer),
    merged in the rules instead of in ``param.data``: the layer's Z+ rule uses the merged
    weights (:func:`merged_parameters`), the BatchNorm passes relevance unchanged. Only
    BatchNorms in eval mode merge (running statistics are what the forward pass uses then)."""

    def register(self, linears, batch_norm):
        self.linears, self.batch_norm = linears, batch_norm
        if batch_norm.training:
            self.linears = ()
            return
        for linear in linears:  # object.__setattr__: a module attribute would register as a submodule
            object.__setattr__(linear, _MERGED_INTO, batch_norm)
        object.__setattr__(batch_norm, _MERGED, True)

    def remove(self):
        for linear in self.linears:
            object.__delattr__(linear, _MERGED_INTO)
        if self.linears:
            object.__delattr__(self.batch_norm, _MERGED)


def merged_parameters(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's (weight, bias), with the BatchNorm merged into it by :class:`MergeBatchNormInRule`
    folded in: ``W * s``, ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)`` (differentiable)."""
    weight, bias = module.weight, module.bias
    norm = module.__dict__.get(_MERGED_INTO)
    if norm is None:
        return weight, bias
    scale = (norm.running_var + norm.eps).rsqrt()
    if norm.weight is not None:
        scale = norm.weight * scale
    shift = -norm.running_mean * scale if bias is None else (bias - norm.running_mean) * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return weight * scale.view(-1, *([1] * (weight.ndim - 1))), shift


class PassMergedRule(Hook):
    """A BatchNorm merged into the layer before it passes relevance unchanged; any other
    BatchNorm passes the plain gradient."""

    def backward(self, module, grad_input, grad_output):
        if not module.__dict__.get(_MERGED):
            return grad_input
        return tuple(grad_output[0] if grad is not None and grad.shape == grad_output[0].shape else grad
                     for grad in grad_input)


class ZPlusRule(_GraphKeepingRule):
    """zennit's ``ZPlus`` (LRP alpha=1, beta=0) for conv and linear layers.

    R_in = x+ * W+^T s + x- * W-^T s with s = R_out / stabilize(W+ x+ + b+ + W- x-).
    The x- term is skipped when the input has no negative part (after a ReLU: every
    layer but the first): it is exactly zero then, and skipping it halves the work.
    """

    def relevance(self, module, x, relevance_out, create_graph):
        weight, bias = merged_parameters(module)
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


def excitation_backprop_composite(stabilizer: float = 1e-6, canonize: bool = False) -> LayerMapComposite:
    """The layer map of ``zennit.composites.ExcitationBackprop`` with the differentiable rules above.

    ``canonize=False``: like zennit's composite, no canonizer: BatchNorm and ReLU pass the
    plain gradient, max-pooling routes it to the maximum. ``canonize=True``: BatchNorms
    merged into the layer before them (:class:`MergeBatchNormInRule`, graph-keeping) and
    torchvision ResNet blocks' additions split by zennit's ResNet canonizers (``Sum``).
    """
    layer_map = [(Sum, NormRule(stabilizer)), (AvgPool, NormRule(stabilizer)), (Linear, ZPlusRule(stabilizer))]
    if not canonize:
        return LayerMapComposite(layer_map)
    canonizers = [MergeBatchNormInRule(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
    return LayerMapComposite([(BatchNorm, PassMergedRule()), *layer_map], canonizers=canonizers)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


class ExcitationBackprop(Attribution):
    """Excitation Backprop's marginal winning probabilities in input space, summed over channels.

    (B,C,H,W) -> (B,1,H,W). ``raw`` (B,C,H,W) equals zennit's ``Gradient`` attributor
    under ``zennit.composites.ExcitationBackprop`` with a one-hot output at the target,
    with zennit's ``SequentialMergeBatchNorm`` and ResNet block canonizers when canonized.

    canonize: "auto" (default: on for a model with BatchNorm layers, such as torchvision's
        ResNets and VGG-BN, off otherwise), True or False; see the module docstring. The
        merge applies to BatchNorms in eval mode (the fine-tuning keeps both models there).
    """

    family = "rule-based"
    reference = "Zhang et al. 2016"
    equals = "zennit ExcitationBackprop composite"

    def __init__(self, model: nn.Module, stabilizer: float = 1e-6, canonize: bool | str = "auto"):
        super().__init__(model)
        self.stabilizer = stabilizer
        if canonize not in (True, False, "auto"):
            raise ValueError(f"ExcitationBackprop canonize must be true, false or auto, got {canonize!r}")
        self.canonize = has_batch_norm(model) if canonize == "auto" else bool(canonize)

    def _explain(self, x, target, create_graph) -> Explanation:
        context = excitation_backprop_composite(self.stabilizer, self.canonize).context(self.model)
        relevance, logits, _ = input_gradient(self.model, x, target, create_graph, context)
        return Explanation(relevance.sum(1, keepdim=True), logits, relevance)
