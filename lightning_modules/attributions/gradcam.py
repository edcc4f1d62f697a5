"""Grad-CAM (Selvaraju et al. 2017) on a chosen layer, upsampled to the input."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import Attribution, Explanation, target_score


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """The submodule ``layer`` of ``model``, given as a module or a dotted name (``"layer4"``, ``"features.20"``)."""
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            names = [name for name, _ in model.named_children()]
            raise UserError(f"GradCAM layer {layer!r} is not a submodule of {type(model).__name__}: use a dotted "
                            f"name from model.named_modules(), e.g. one under {names}") from None
    if not any(module is layer for module in model.modules()):
        raise ValueError(f"GradCAM layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
    return layer


class GradCAM(Attribution):
    """ReLU(sum_k mean_ij(dy_t/dA_kij) A_k) on ``layer``'s output A (B,K,h,w), upsampled bilinearly.

    (B,C,H,W) -> (B,1,H,W). Equals Captum's ``LayerGradCam(relu_attributions=True)``
    followed by ``LayerAttribution.interpolate(..., interpolate_mode="bilinear")``;
    ``raw`` is the (B,1,h,w) map before upsampling.

    layer: a submodule of ``model`` or its dotted name (the YAML passes a string).
    The layer must run once per forward pass (not a module reused at several places).
    """

    family = "CAM"
    reference = "Selvaraju et al. 2017"
    equals = "captum LayerGradCam(relu_attributions=True), upsampled"

    def __init__(self, model: nn.Module, layer: nn.Module | str):
        super().__init__(model)
        self.layer = resolve_layer(model, layer)

    def _explain(self, x, target, create_graph) -> Explanation:
        activations = []

        def keep(module, inputs, output):
            if not create_graph:
                # The maps need no graph below the layer: the layers before it ran under
                # no_grad (cheaper), and the graph starts at the layer's output.
                output = output.detach().requires_grad_(True)
                torch.set_grad_enabled(True)
            activations.append(output)
            return output

        handle = self.layer.register_forward_hook(keep)
        try:
            with torch.set_grad_enabled(create_graph):  # restores grad mode when the forward ends
                logits = self.model(x)
        finally:
            handle.remove()
        if len(activations) != 1:
            raise UserError(f"GradCAM layer {type(self.layer).__name__} ran {len(activations)} times in one forward "
                            f"pass: choose a layer that runs exactly once (e.g. the last conv block)")
        (acts,) = activations
        (grads,) = torch.autograd.grad(target_score(logits, target), acts, create_graph=create_graph)
        cam = self.combine(acts, grads)
        maps = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
        return Explanation(maps, logits, cam)

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """The layer map from the activations A and the gradients dy_t/dA: (B,K,h,w) x2 -> (B,1,h,w).
        Grad-CAM: ReLU of the channels weighted by their mean gradient; the CAM variants override it."""
        weights = grads.mean(dim=tuple(range(2, grads.ndim)), keepdim=True)
        return F.relu((weights * acts).sum(1, keepdim=True))
