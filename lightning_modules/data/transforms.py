"""Normalization shared by every data module (ImageNet statistics, so that
torchvision's pretrained weights and the synthetic data use the same input scale)."""
from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, 3, 1, 1) if x.dim() == 4 else (3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(shape)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(3,H,W) or (B,3,H,W) in [0,1] -> normalized."""
    mean, std = _stats(x)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, clamped to [0,1] for display."""
    mean, std = _stats(x)
    return (x * std + mean).clamp(0, 1)
