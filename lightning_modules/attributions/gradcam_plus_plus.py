"""Grad-CAM++ (Chattopadhay et al. 2018): Grad-CAM with pixel-wise weights on the positive gradients
(:meth:`GradCAM.combine`). Captum has no Grad-CAM++; the tests compare it with the formula written
out on the activations and gradients Captum's layer-gradient machinery gives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .gradcam import GradCAM


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++: channel weights ``w_k = sum_ij relu(g_kij) * alpha_kij`` with
    ``alpha = g^2 / (2 g^2 + sum_ij(A_k) g^3)`` (0 where the gradient is 0), g = dy_t/dA on the
    target logit (the closed form of the paper's exponential score, as pytorch-grad-cam computes
    it); map ``relu(sum_k w_k A_k)`` upsampled bilinearly. (B,C,H,W) -> (B,1,H,W); ``raw`` (B,1,h,w).
    """

    family = "CAM"
    reference = "Chattopadhay et al. 2018"
    equals = "its formula on Captum layer gradients (Captum has none)"

    def combine(self, acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        squared = grads.pow(2)
        denominator = 2 * squared + acts.sum(dim=(2, 3), keepdim=True) * squared * grads
        nonzero = grads != 0
        alpha = squared / torch.where(nonzero & (denominator != 0), denominator, torch.ones_like(denominator))
        weights = (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)
        return F.relu((weights * acts).sum(1, keepdim=True))
