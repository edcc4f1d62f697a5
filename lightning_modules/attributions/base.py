"""Shared machinery: target handling, grad mode, and the gradient of the target logit."""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import torch
from torch import Tensor, nn


class Explanation(NamedTuple):
    """What :meth:`Attribution.explain` returns.

    maps: (B,1,H,W) attribution maps at input resolution (what ``__call__`` returns).
    logits: (B,K) the model's output from the same forward pass, so that a training
        step can put its classification loss on it instead of running the model twice.
    raw: the method's own output before reduction: (B,C,H,W) input-space relevance for
        GuidedBackprop / InputXGradient / ExcitationBackprop (``maps`` is its sum over
        channels), the (B,1,h,w) layer map for GradCAM (``maps`` is it upsampled).
    """

    maps: Tensor
    logits: Tensor
    raw: Tensor


class Attribution:
    """Base class: batched attribution maps that are differentiable in the model's weights.

    ``explain = Method(model); maps = explain(x, target, create_graph=False)`` with
    x (B,C,H,W) and target (B,) long, an int, or None (the predicted class) gives
    (B,1,H,W) maps. With ``create_graph=True`` the maps keep their graph to the
    model's parameters (a loss on them trains the model); otherwise they are detached.
    The model's train/eval mode is left as it is, and no hook outlives the call.
    """

    family: str = ""     # gradient | CAM | rule-based (relevance propagation)
    reference: str = ""  # the paper that defines it
    equals: str = ""     # the reference implementation it equals

    def __init__(self, model: nn.Module):
        self.model = model

    def __call__(self, x: Tensor, target: Tensor | int | None = None, create_graph: bool = False) -> Tensor:
        """(B,C,H,W), (B,) -> (B,1,H,W) maps."""
        return self.explain(x, target, create_graph).maps

    def explain(self, x: Tensor, target: Tensor | int | None = None, create_graph: bool = False) -> Explanation:
        """Maps, logits and the raw attribution of one forward and one backward pass."""
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects images of shape (B,C,H,W), got {tuple(x.shape)}")
        # Gradients are needed even where the caller runs under no_grad / inference_mode
        # (Lightning's validation loop); inference tensors cannot enter a graph, so clone them.
        with torch.inference_mode(False), torch.enable_grad():
            if x.is_inference():
                x = x.clone()
            out = self._explain(x, target, create_graph)
        if create_graph:
            return out
        return Explanation(*(t.detach() for t in out))

    def _explain(self, x: Tensor, target, create_graph: bool) -> Explanation:
        raise NotImplementedError


def target_score(logits: Tensor, target: Tensor | int | None) -> Tensor:
    """Sum over the batch of each image's target logit: (B,K), (B,) -> scalar.

    Its gradient w.r.t. anything per-image is that image's target-logit gradient, so one
    backward pass serves the whole batch (images do not interact in eval mode; in train
    mode BatchNorm couples them, exactly as in Captum's batched attributions).
    """
    return logits.gather(1, resolve_target(logits, target)[:, None]).sum()


def resolve_target(logits: Tensor, target: Tensor | int | None) -> Tensor:
    """(B,K) logits and a target (an int, (B,) class indices, or None: the predicted class) -> (B,) long,
    checked: a one-line ValueError for a wrong shape or a class outside [0, K)."""
    batch, classes = logits.shape
    if target is None:
        target = logits.argmax(1)
    target = torch.as_tensor(target, device=logits.device).long()
    if target.ndim == 0:
        target = target.expand(batch)
    if target.shape != (batch,):
        raise ValueError(f"target must be an int or a ({batch},) tensor of class indices, "
                         f"got shape {tuple(target.shape)}")
    if not bool(((target >= 0) & (target < classes)).all()):  # else gather fails late (a CUDA assert)
        raise ValueError(f"target classes must lie in [0, {classes}), got {target.tolist()}")
    return target


def input_gradient(model: nn.Module, x: Tensor, target, create_graph: bool,
                   context=None) -> tuple[Tensor, Tensor, Tensor]:
    """d(target logit)/dx for a batch, under ``context`` (e.g. hooks that modify backward rules).

    Returns (gradient (B,C,H,W), logits (B,K), the input tensor the gradient is w.r.t.).
    x need not require grad; if it does (it is part of a graph) the gradient keeps that graph.
    The context's hooks are removed when it exits, *before* the caller can backpropagate
    through the returned gradient: a second-order backward then sees the modified rules
    only as the ordinary ops they recorded in the graph, never as live hooks.
    """
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    with context if context is not None else nullcontext():
        logits = model(x)
        (grad,) = torch.autograd.grad(target_score(logits, target), x, create_graph=create_graph)
    return grad, logits, x
