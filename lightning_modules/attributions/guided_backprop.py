"""Guided Backpropagation (Springenberg et al. 2015) with a differentiable guided-ReLU rule."""
from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import torch
from torch import nn

from .base import Attribution, Explanation, input_gradient


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; while ``switch.active``, backward passes only the gradient's positive part.

    Put on a ReLU's output, the ReLU's own backward then applies its (input > 0) mask:
    ``relu(grad_out) * (x > 0)``, the guided rule. That clamp is an ordinary op, so with
    ``create_graph=True`` the map's graph contains it. The node itself stays in the
    forward graph, so it must turn into a plain identity once the map is computed:
    a later backward through the forward graph (the classification loss on the logits,
    or the second-order terms of train-mode BatchNorm) needs the true gradient.
    """

    @staticmethod
    def forward(ctx, output, switch):
        ctx.switch = switch
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_output):
        return (grad_output.clamp(min=0) if ctx.switch.active else grad_output), None


@contextmanager
def guided_relus(model: nn.Module):
    """Within the context, every ``nn.ReLU`` of ``model`` back-propagates the guided rule."""
    switch = SimpleNamespace(active=True)

    def guide(module, inputs, output):
        return _PositiveGradient.apply(output, switch)

    handles = [module.register_forward_hook(guide) for module in model.modules() if isinstance(module, nn.ReLU)]
    try:
        yield model
    finally:
        switch.active = False
        for handle in handles:
            handle.remove()


class GuidedBackprop(Attribution):
    """The target logit's gradient with each ReLU passing only positive gradients, summed over channels.

    (B,C,H,W) -> (B,1,H,W). ``raw`` (B,C,H,W) equals Captum's ``GuidedBackprop`` and
    zennit's ``GuidedBackprop`` composite; the channel sum is Quantus' default reduction.
    zennit's composite gives the same maps and gradients, but its hooks (an identity
    node, a clone and two Python hooks per ReLU) make it slower than Captum; one
    identity node per ReLU is not. Only ``nn.ReLU`` modules are guided (functional
    ``F.relu`` calls are invisible to hooks, as in Captum and zennit).
    """

    def _explain(self, x, target, create_graph) -> Explanation:
        grad, logits, _ = input_gradient(self.model, x, target, create_graph, guided_relus(self.model))
        return Explanation(grad.sum(1, keepdim=True), logits, grad)
