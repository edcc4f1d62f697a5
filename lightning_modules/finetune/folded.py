"""A trainable BatchNorm-folded twin of the fine-tuned model, used only where it is proven equal.

The fine-tuned copy stays in eval mode (as in the study), so each BatchNorm after a
convolution is a fixed per-channel affine map. The twin computes ``conv`` and ``bn`` as
one convolution with weights ``W * s`` and bias ``(b - mu) * s + beta`` (``s = gamma /
sqrt(var + eps)``), formed from the *same* parameter tensors on every call: the gradients
reaching ``W``, ``gamma`` and ``beta`` are the unfolded network's (chain rule), the
optimizer and the checkpoints see the model itself, and a step runs fewer autograd nodes
(which pays most on small networks, and nothing where the convolutions dominate).

Everything else is the model's own modules (deep-copied, sharing parameters and buffers),
so an attribution's layer names (``layer4``) resolve in the twin as in the model. The twin
is used only when it is proven equal on the first batch: a float64 copy of the model and
that copy's twin give the same logits and maps (:func:`..fast_forward.unequal`: each
image's difference within 1e-6 of that image's L2 norm). The proof runs in float64
because float32 cannot give one: folding reorders float32 sums, which moves a ReLU or
max-pool input lying within rounding of its switch point to the other side, and a map is
a gradient, so that one unit routes a different part of it (on the trained ``tiny``, up to
0.3% of a guided-backprop map's norm, and single pixels by more than their own size).
Such a difference is rounding, as the model's own float32 maps have it too; a wrong
twin differs in float64 by far more than 1e-6. Otherwise (a map hooked on a folded
convolution's own output, a convolution output that something else also reads, a model
that cannot be copied or run in float64) the model itself trains, with one log line
saying why.
"""
from __future__ import annotations

import copy
import logging
from typing import Callable

import torch
from torch import Tensor, nn

from ..fast_forward import raised, unequal

log = logging.getLogger(__name__)


class FoldedConvBN(nn.Module):
    """``bn(conv(x))`` of an eval-mode BatchNorm2d as one convolution, differentiable in both modules'
    parameters. (B,C,H,W) -> (B,C',H',W'). Holds the model's own ``conv`` and ``bn``."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: Tensor) -> Tensor:
        conv, bn = self.conv, self.bn
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        if conv.bias is not None:
            shift = shift + conv.bias * scale
        return conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1), shift)


def conv_bn_pairs(model: nn.Module, x: Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) for every eval-mode ``nn.BatchNorm2d`` with running statistics whose input is
    exactly an ``nn.Conv2d``'s output in a forward pass of ``x``, where neither module pairs twice."""
    names = {module: name for name, module in model.named_modules()}
    # the outputs themselves are held for the pass: a freed output's id could be reused by a later tensor
    outputs: dict[int, tuple[nn.Module, Tensor]] = {}
    pairs: list[tuple[str, str]] = []

    def remember(module, inputs, output):
        outputs[id(output)] = (module, output)

    def pair(module, inputs, output):
        (inp,) = inputs
        conv, seen = outputs.get(id(inp), (None, None))
        if seen is inp and not module.training and module.running_var is not None:
            pairs.append((names[conv], names[module]))

    handles = [m.register_forward_hook(remember if type(m) is nn.Conv2d else pair) for m in model.modules()
               if type(m) in (nn.Conv2d, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    used = [name for pair_ in pairs for name in pair_]
    # a module called twice (shared) would be folded for one of its uses only
    return [(conv, bn) for conv, bn in pairs if used.count(conv) == 1 and used.count(bn) == 1]


def folded_twin(model: nn.Module, x: Tensor) -> nn.Module:
    """A copy of ``model`` sharing its parameters and buffers, each conv + BatchNorm pair found on ``x``
    replaced by a :class:`FoldedConvBN` (at the conv's name) and an ``nn.Identity`` (at the bn's)."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    twin = copy.deepcopy(model, shared)
    for conv_name, bn_name in conv_bn_pairs(model, x):
        twin.set_submodule(conv_name, FoldedConvBN(model.get_submodule(conv_name), model.get_submodule(bn_name)))
        twin.set_submodule(bn_name, nn.Identity())
    return twin


def proven_twin(model: nn.Module, explainer_factory: Callable[[nn.Module], object], x: Tensor, y: Tensor,
                rtol: float = 1e-6, atol: float = 1e-9) -> tuple[nn.Module, object]:
    """(model to train, its explainer): the folded twin where it has BatchNorms to fold and, in float64, its
    logits and maps on (x (B,C,H,W), y (B,)) equal the model's (each image's within ``rtol`` of its norm,
    plus ``atol`` x the largest image norm: :func:`unequal`); else the model itself, with one log line
    saying why."""
    explainer = explainer_factory(model)
    reason = None
    try:
        twin = folded_twin(model, x)
        if not any(isinstance(m, FoldedConvBN) for m in twin.modules()):
            return model, explainer
        twin_explainer = explainer_factory(twin)
        reason = _difference_in_float64(model, explainer_factory, x, y, rtol, atol)
    except Exception as exc:  # noqa: BLE001 - any failure of the twin means: train the model itself
        reason = raised(exc)
    if reason:
        log.info("fine-tuning %s without BatchNorm folding: the folded twin is not used because %s",
                 type(model).__name__, reason)
        return model, explainer
    return twin, twin_explainer


def _difference_in_float64(model: nn.Module, explainer_factory: Callable[[nn.Module], object], x: Tensor,
                           y: Tensor, rtol: float, atol: float) -> str | None:
    """How the folded twin of a float64 copy of ``model`` differs from that copy on (x, y) (``"its maps'
    values differ ..."``), or None. In float64 the twin's rounding is ~1e-16, and a ReLU or max-pool
    input within float32 rounding of its switch point is decided the same way in both."""
    reference = copy.deepcopy(model).double()
    x = x.double()
    twin = folded_twin(reference, x)
    for name, get in (("logits", lambda net: net(x)), ("maps", lambda net: explainer_factory(net)(x, y))):
        difference = unequal(get(twin).detach(), get(reference).detach(), rtol, atol)
        if difference:
            return f"its {name}' {difference} (in float64)"
    return None
