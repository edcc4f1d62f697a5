"""Input transforms: how an image file becomes the tensor a backbone takes.

A backbone's weights were trained on inputs of one scale (ImageNet statistics for
torchvision's weights and the synthetic data, [-1, 1] for many TensorFlow ports) and
one resize-and-crop recipe. :class:`InputTransform` holds both; a backbone's config
builds it (``backbone.transform``) and data modules that read image files apply it.
The module-level :func:`normalize` / :func:`denormalize` use ImageNet statistics,
the scale of the synthetic and ImageNet data modules.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _stats(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, 3, 1, 1) if x.dim() == 4 else (3, 1, 1)
    mean = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    std = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return mean, std


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(3,H,W) or (B,3,H,W) in [0,1] -> normalized."""
    mean, std = _stats(x)
    return (x - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`, clamped to [0,1] for display."""
    mean, std = _stats(x)
    return (x * std + mean).clamp(0, 1)


@dataclass(frozen=True)
class InputTransform:
    """A backbone's input recipe: per-channel ``mean``/``std`` of [0,1] pixels, the square ``input_size``,
    the share ``crop_pct`` of the resized short side that the center crop keeps (0.875: resize to 256,
    crop 224) and the resize ``interpolation`` (``bilinear``, ``bicubic`` or ``nearest``)."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"

    def __post_init__(self):
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def resize_size(self, image_size: int) -> int:
        """The short side an image is resized to before its center ``image_size`` crop."""
        return round(image_size / self.crop_pct)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(3,H,W) or (B,3,H,W) in [0,1] -> the backbone's input scale."""
        mean, std = _stats(x, self.mean, self.std)
        return (x - mean) / std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`, clamped to [0,1] for display."""
        mean, std = _stats(x, self.mean, self.std)
        return (x * std + mean).clamp(0, 1)


IMAGENET_TRANSFORM = InputTransform()
