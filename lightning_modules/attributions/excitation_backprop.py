"""Excitation Backprop (Zhang et al. 2016): zennit's composite with rules that keep the weights in the graph."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from zennit.composites import ExcitationBackprop as ExcitationBackpropComposite
from zennit.core import BasicHook, ParamMod, zero_wrap

from .base import Attribution, Explanation, input_gradient


def _forward_with(module: nn.Module, input: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """``module.forward(input)`` with parameters replaced by ``params``, bypassing the module's hooks."""
    if not params:
        return module.forward(input)
    if isinstance(module, nn.Linear):
        return F.linear(input, params["weight"], params.get("bias"))
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return module._conv_forward(input, params["weight"], params.get("bias"))
    raise TypeError(f"ExcitationBackprop has no differentiable rule for {type(module).__name__}")


class GraphKeepingRule(BasicHook):
    """A zennit ``BasicHook`` rule (same modifiers, mapper, reducer) whose backward is differentiable.

    zennit's own backward builds the modified layer from ``param.data`` and builds a
    graph only when the incoming relevance has one, so a loss on its maps gets no (or a
    partial) gradient for the weights. This backward uses the parameters themselves and
    keeps the graph whenever the outer backward does (``create_graph=True``).
    """

    def __init__(self, rule: BasicHook):
        super().__init__(rule.input_modifiers, rule.param_modifiers, rule.output_modifiers,
                         rule.gradient_mapper, rule.reducer)

    def backward(self, module, grad_input, grad_output):
        create_graph = torch.is_grad_enabled()  # True inside a create_graph=True backward
        original = self.stored_tensors["input"][0]
        inputs, outputs = [], []
        with torch.enable_grad():
            for in_mod, param_mod, out_mod in zip(self.input_modifiers, self.param_modifiers, self.output_modifiers):
                param_mod = ParamMod.ensure(param_mod)
                keys = param_mod.param_keys
                if keys is None:
                    keys = [name for name, _ in module.named_parameters(recurse=False)]
                modify = zero_wrap(param_mod.zero_params or [])(param_mod.modifier)
                params = {key: modify(getattr(module, key), key) for key in keys
                          if getattr(module, key, None) is not None}
                input = in_mod(original)
                if not input.requires_grad:
                    input = input.detach().requires_grad_(True)
                inputs.append(input)
                outputs.append(out_mod(_forward_with(module, input, params)))
            grad_outputs = self.gradient_mapper(grad_output[0], outputs)
            gradients = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, create_graph=create_graph)
            relevance = self.reducer(inputs, gradients)
        return tuple(relevance if original.shape == relevance.shape else None for original in grad_input)


def excitation_backprop_composite(stabilizer: float = 1e-6) -> ExcitationBackpropComposite:
    """zennit's ExcitationBackprop composite (ZPlus on conv/linear, Norm on sum/avg-pool), rules made differentiable.

    No canonizer: merging BatchNorm into the convolutions rewrites weights in place, which
    breaks the graph to them and is wrong in train mode; BatchNorm passes the gradient.
    """
    composite = ExcitationBackpropComposite(stabilizer=stabilizer)
    composite.layer_map = [(types, GraphKeepingRule(rule) if isinstance(rule, BasicHook) else rule)
                           for types, rule in composite.layer_map]
    return composite


class ExcitationBackprop(Attribution):
    """Marginal winning probability of zennit's ExcitationBackprop, summed over channels.

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
