"""LayerCAM (Jiang et al. 2021): each activation weighted by its own positive gradient
(:meth:`GradCAM.combine`). Captum has no LayerCAM; the tests compare it with the formula written out
on the activations and gradients Captum's layer-gradient machinery gives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .gradcam import GradCAM


class LayerCAM(GradCAM):
    """LayerCAM: each activation weighted by its own positive gradient, ``relu(sum_k relu(g_k) * A_k)``,
    upsampled bilinearly. (B,C,H,W) -> (B,1,H,W); ``raw`` (B,1,h,w)."""

    family = "CAM"
    reference = "Jiang et al. 2021"
    equals = "its formula on Captum layer gradients (Captum has none)"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return F.relu((F.relu(grads) * acts).sum(1, keepdim=True))
