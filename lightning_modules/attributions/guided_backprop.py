"""Guided Backpropagation (Springenberg et al. 2015) with a differentiable guided-ReLU rule."""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .base import Attribution, Explanation, input_gradient


# The activations guided backprop guides. ReLU6 (MobileNets, EfficientNet-Lite) is a ReLU capped at 6.
GUIDED = (nn.ReLU, nn.ReLU6)


def _positive_part(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


@contextmanager
def guided_relus(model: nn.Module):
    """Within the context, every ``nn.ReLU`` of ``model`` back-propagates ``relu(grad_out) * (x > 0)``
    and every ``nn.ReLU6`` ``relu(grad_out) * (0 < x < 6)``.

    Each ReLU/ReLU6 output gets a gradient hook that keeps the positive part; the module's own
    backward then applies its mask ((x > 0) for ReLU, (0 < x < 6) for ReLU6: the guided rule is
    "the activation's own gradient, passing only positive signals", and above 6 ReLU6 is flat). The clamp runs as an ordinary op, so with
    ``create_graph=True`` the map's graph contains it. The hooks are removed on exit,
    before anything backpropagates through the map or the logits: that later backward
    also walks the forward graph (the loss on the logits, train-mode BatchNorm's
    second-order terms), where it needs the true gradient, not the guided one.
    """
    tensor_hooks = []

    def guide(module, inputs, output):
        if output.requires_grad:
            tensor_hooks.append(output.register_hook(_positive_part))

    module_hooks = [module.register_forward_hook(guide) for module in model.modules() if isinstance(module, GUIDED)]
    try:
        yield model
    finally:
        for handle in module_hooks + tensor_hooks:
            handle.remove()


class GuidedBackprop(Attribution):
    """The target logit's gradient with each ReLU passing only positive gradients, summed over channels.

    (B,C,H,W) -> (B,1,H,W). ``raw`` (B,C,H,W) equals Captum's ``GuidedBackprop`` and
    zennit's ``GuidedBackprop`` composite; the channel sum is Quantus' default reduction.
    zennit's composite gives the same maps and gradients, but its hooks (an identity
    node, a clone and two Python hooks per ReLU) make it slower than Captum; one
    gradient hook per ReLU output is not. Only ``nn.ReLU`` and ``nn.ReLU6`` modules are guided
    (functional ``F.relu`` calls are invisible to hooks, as in Captum and zennit; Captum guides
    ``nn.ReLU`` only, so on ReLU6 networks its maps differ from these).
    """

    family = "gradient"
    reference = "Springenberg et al. 2015"
    equals = "captum GuidedBackprop (nn.ReLU networks), summed over channels"

    def _explain(self, x, target, create_graph) -> Explanation:
        grad, logits, _ = input_gradient(self.model, x, target, create_graph, guided_relus(self.model))
        return Explanation(grad.sum(1, keepdim=True), logits, grad)
