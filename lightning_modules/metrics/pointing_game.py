"""Pointing game (Zhang et al. 2018, "Top-down neural attention by excitation backprop", IJCV):
a hit when the map's maximum falls on the object, within a tolerance; higher is better.

``tolerance`` is a share of the image's shorter side: the mask is dilated by a disk of radius
``round(tolerance * min(H, W))`` pixels before the test (Zhang et al.: 15 pixels on ~224-pixel
images, the default 0.067). With ties every maximal pixel counts (a hit if any lies in the mask),
as Quantus. ``tolerance: 0`` equals ``quantus.PointingGame()`` (which has no tolerance). An empty
mask gives NaN (no object to point at).

The training loss is a smooth surrogate: minus the softmax mass of the max-normalized map (at
``loss_temperature``) inside the dilated mask, which tends to the hit as the temperature falls.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, as_maps, check_images, explain_maps


def dilate(masks: Tensor, radius: int) -> Tensor:
    """(B,1,H,W) masks -> (B,1,H,W) bool: pixels within ``radius`` (Euclidean) of a nonzero mask pixel."""
    inside = masks.bool()
    if radius <= 0:
        return inside
    steps = torch.arange(-radius, radius + 1, device=masks.device, dtype=torch.float32)
    disk = ((steps[:, None] ** 2 + steps[None, :] ** 2) <= radius ** 2).float()[None, None]
    return F.conv2d(inside.float(), disk, padding=radius) > 0


def tolerance_pixels(tolerance: float, shape) -> int:
    if not 0 <= tolerance < 1:
        raise MetricInputError(f"pointing game tolerance is a share of the image side in [0, 1), got {tolerance}")
    return round(tolerance * min(shape[-2:]))


def _checked(maps: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    maps, masks = as_maps(maps), as_maps(masks, "masks")
    if masks.shape != maps.shape:
        raise MetricInputError(f"masks {tuple(masks.shape)} do not match maps {tuple(maps.shape)}: "
                               f"give one (H,W) object mask per map")
    return maps, masks


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float = 0.067) -> Tensor:
    """(B,1,H,W) maps and masks -> (B,) 1.0 for a hit, 0.0 for a miss, NaN for an empty mask."""
    maps, masks = _checked(maps, masks)
    region = dilate(masks, tolerance_pixels(tolerance, maps.shape)).flatten(1)
    values = maps.flatten(1)
    peaks = values == values.amax(1, keepdim=True)
    hit = (peaks & region).any(1).to(maps.dtype)
    return hit.masked_fill(masks.flatten(1).sum(1) == 0, float("nan"))


def soft_pointing(maps: Tensor, masks: Tensor, tolerance: float = 0.067, temperature: float = 0.05) -> Tensor:
    """(B,) softmax mass of ``maps / (temperature * max|maps|)`` inside the dilated masks, in [0, 1];
    differentiable in ``maps``; NaN for an empty mask."""
    maps, masks = _checked(maps, masks)
    region = dilate(masks, tolerance_pixels(tolerance, maps.shape)).flatten(1).to(maps.dtype)
    values = maps.flatten(1)
    scale = values.abs().amax(1, keepdim=True).clamp_min(1e-12)
    mass = (torch.softmax(values / (temperature * scale), 1) * region).sum(1)
    return mass.masked_fill(masks.flatten(1).sum(1) == 0, float("nan"))


class PointingGame(Metric):
    """The pointing game as a fine-tuning target (conf/metric/pointing_game.yaml); needs object masks.

    score: :func:`pointing_game` of ``explain(x, y)`` (higher is better).
    loss: minus the mean :func:`soft_pointing` over the images with an object (0 when none has one).
    """

    name = "pointing_game"
    family = "localization"
    higher_is_better = True
    needs_masks = True
    reference = "Zhang et al. 2018"
    equals = "quantus.PointingGame() (tolerance: 0)"

    def __init__(self, tolerance: float = 0.067, loss_temperature: float = 0.05):
        tolerance_pixels(tolerance, (1, 1))
        self.tolerance, self.loss_temperature = tolerance, loss_temperature

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        with torch.no_grad():
            return pointing_game(maps, masks, self.tolerance)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        masks = self.given_masks(masks)
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y, create_graph=True)
        mass = soft_pointing(maps, masks, self.tolerance, self.loss_temperature)
        valid = ~mass.isnan()
        if not valid.any():
            return maps.sum() * 0.0
        return -mass[valid].mean()
