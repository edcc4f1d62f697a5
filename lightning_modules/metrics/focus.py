"""Focus (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos 2022, "Focus! Rating XAI
methods and finding biases", FUZZ-IEEE), and the 2x2 mosaics it is measured on.

A mosaic is a 2x2 grid of images of which the target quadrant(s) hold the class being
explained and the others hold images of other classes. Focus = positive relevance in
the target quadrants / total positive relevance; higher = the map finds the class.

Equal to Quantus 0.6 (``quantus.Focus``: ``clip(a, 0)``, quadrant masks from
``custom_batch`` in the order top-left, top-right, bottom-left, bottom-right, halves
``H // 2``, ``W // 2``) except at a map with no positive relevance: Quantus divides by
``total + 1e-9`` and this returns exactly 0 (the same value, without the epsilon bias).

The paper builds mosaics with two images of the target class; harmony's score builds,
for each image, one mosaic with that image in one quadrant and three images of other
classes from the same batch (:func:`make_mosaics`), so each image gets its own score.

The ``mosaic`` setting says how large a mosaic is: ``half`` (default) shrinks the four
images to half resolution (2x2 area mean) so the mosaic has the input's size H x W, as
the original study's code built them: the model sees its usual input size and a
mosaic costs one image's forward and backward pass. ``full`` tiles the images as they
are into 2H x 2W mosaics (4x the pixels; the model must accept that size).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, as_maps, check_images, explain_maps, share

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")
MOSAICS = ("half", "full")


def quadrant_sums(maps: Tensor) -> Tensor:
    """(B,1,H,W) -> (B,4) sums of each quadrant (top-left, top-right, bottom-left, bottom-right),
    split at H//2 and W//2 as Quantus does."""
    b, _, h, w = maps.shape
    if h % 2 == 0 and w % 2 == 0:  # one reduction over a (B,2,H/2,2,W/2) view
        return maps.reshape(b, 2, h // 2, 2, w // 2).sum((2, 4)).reshape(b, 4)
    h2, w2 = h // 2, w // 2
    m = maps[:, 0]
    return torch.stack([m[:, :h2, :w2].sum((1, 2)), m[:, :h2, w2:].sum((1, 2)),
                        m[:, h2:, :w2].sum((1, 2)), m[:, h2:, w2:].sum((1, 2))], 1)


def focus(mosaic_maps: Tensor, target_quadrants: Tensor) -> Tensor:
    """Positive relevance in the target quadrants over total positive relevance.

    mosaic_maps (B,1,H,W) or (B,H,W) maps of 2x2 mosaics; target_quadrants (B,4) bool
    (top-left, top-right, bottom-left, bottom-right). Returns (B,) in [0,1]; 0 for a map
    with no positive relevance. Differentiable in the maps.
    """
    maps = as_maps(mosaic_maps, "mosaic_maps")
    if not isinstance(target_quadrants, Tensor) or target_quadrants.shape != (maps.shape[0], 4):
        got = tuple(target_quadrants.shape) if isinstance(target_quadrants, Tensor) else type(target_quadrants).__name__
        raise MetricInputError(f"target_quadrants must be a ({maps.shape[0]},4) bool tensor (top-left, top-right, "
                               f"bottom-left, bottom-right), got {got}")
    if min(maps.shape[2:]) < 2:
        raise MetricInputError(f"mosaic maps must be at least 2x2 to have quadrants, got {tuple(maps.shape)}")
    quadrants = quadrant_sums(maps.clamp_min(0))
    inside = (quadrants * target_quadrants.to(device=maps.device, dtype=quadrants.dtype)).sum(1)
    return share(inside, quadrants.sum(1))


def mosaic_plan(y: Tensor, seed: int = 0) -> tuple[Tensor, Tensor]:
    """For each image, which images fill its mosaic and where it sits.

    y (B,) -> tiles (B,4) long (image index per quadrant) and position (B,) long (the
    quadrant holding the image itself). The other three quadrants hold images of other
    classes from the batch, drawn without replacement when there are three or more
    (with replacement otherwise) by a ``torch.Generator`` seeded with ``seed``: the
    same labels and seed give the same mosaics on every device. Raises a
    MetricInputError when the batch has a single class.
    """
    labels = y.detach().cpu().long()
    if labels.numel() == 0 or bool((labels == labels[0]).all()):
        raise MetricInputError(f"Focus mosaics need images of at least two classes in a batch, got labels "
                               f"{labels.unique().tolist()}: use a larger or shuffled batch")
    generator = torch.Generator().manual_seed(int(seed))
    batch = labels.numel()
    position = torch.randint(0, 4, (batch,), generator=generator)
    tiles = torch.empty(batch, 4, dtype=torch.long)
    for i in range(batch):
        others = (labels != labels[i]).nonzero().flatten()
        if others.numel() >= 3:
            pick = others[torch.randperm(others.numel(), generator=generator)[:3]]
        else:
            pick = others[torch.randint(0, others.numel(), (3,), generator=generator)]
        slots = [q for q in range(4) if q != int(position[i])]
        tiles[i, slots] = pick
        tiles[i, position[i]] = i
    return tiles.to(y.device), position.to(y.device)


def _mosaic(mosaic: str) -> str:
    if mosaic not in MOSAICS:
        raise MetricInputError(f"unknown Focus mosaic {mosaic!r}: use half (H x W mosaics of half-resolution "
                               f"images) or full (2H x 2W)")
    return mosaic


def make_mosaics(x: Tensor, y: Tensor, seed: int = 0, mosaic: str = "full") -> tuple[Tensor, Tensor, Tensor]:
    """One 2x2 mosaic per image: the image in one quadrant, three images of other classes around it.

    x (B,C,H,W), y (B,) -> (mosaics (B,C,2H,2W), or (B,C,2(H//2),2(W//2)) with ``mosaic="half"``
    (each image shrunk by a 2x2 area mean first), labels (B,) = y, target_quadrants (B,4)
    bool with exactly one True, in the order top-left, top-right, bottom-left,
    bottom-right). Mosaic i is built for image i; partners and positions are drawn as in
    :func:`mosaic_plan` (deterministic for a given ``seed``). Needs at least two classes
    in the batch (MetricInputError otherwise).
    """
    y, _ = check_images(x, y)
    if _mosaic(mosaic) == "half":
        x = torch.nn.functional.interpolate(x, size=(x.shape[2] // 2, x.shape[3] // 2), mode="area")
    tiles, position = mosaic_plan(y, seed)
    parts = x[tiles]  # (B,4,C,h,w)
    top = torch.cat([parts[:, 0], parts[:, 1]], dim=-1)
    bottom = torch.cat([parts[:, 2], parts[:, 3]], dim=-1)
    mosaics = torch.cat([top, bottom], dim=-2)
    target_quadrants = torch.nn.functional.one_hot(position, 4).bool()
    return mosaics, y, target_quadrants


class Focus(Metric):
    """Focus as a fine-tuning target (conf/metric/focus.yaml).

    score: for each image, :func:`focus` of ``explain`` on its :func:`make_mosaics`
    mosaic (higher is better), averaged over ``arrangements`` plans; NaN for every image
    of a batch with a single class (no mosaic can be built). loss: minus the mean Focus
    of the first plan's mosaics (differentiable; 0 for a single-class batch).

    seed: seeds the choice of partner images and positions (deterministic scores).
    arrangements: how many mosaic plans the score averages per image (seeds ``seed``,
        ``seed + 1``, ...). One image's Focus moves with its partners and position, so on
        a few validation images one plan says more about them than about the map; the
        loss draws one plan per batch either way.
    mosaic: "half" (H x W mosaics of half-resolution images, the original study's) or
        "full" (2H x 2W), see the module docstring.
    loss_fraction: the share of the batch's mosaics the loss explains; default 1.0 for
        half mosaics and 0.25 for full ones (a full mosaic has four images' pixels), so a
        training step costs as much as one on the plain batch either way.
    """

    name = "focus"
    family = "localization"
    higher_is_better = True
    needs_masks = False
    reference = "Arias-Duart et al. 2022"
    equals = "quantus.Focus() on the same mosaics"

    def __init__(self, seed: int = 0, mosaic: str = "half", loss_fraction: float | None = None,
                 arrangements: int = 1):
        self.mosaic = _mosaic(mosaic)
        if loss_fraction is None:
            loss_fraction = 1.0 if self.mosaic == "half" else 0.25
        if not 0.0 < loss_fraction <= 1.0:
            raise MetricInputError(f"Focus loss_fraction must lie in (0, 1], not {loss_fraction}")
        if isinstance(arrangements, bool) or not isinstance(arrangements, int) or arrangements < 1:
            raise MetricInputError(f"Focus arrangements must be a whole number >= 1, not {arrangements!r}: "
                                   f"set metric.metric.arrangements")
        self.seed = seed
        self.loss_fraction = float(loss_fraction)
        self.arrangements = arrangements

    @staticmethod
    def _single_class(y: Tensor) -> bool:
        return y.numel() == 0 or bool((y == y[0]).all())

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        if self._single_class(y):
            return torch.full((x.shape[0],), float("nan"), device=x.device)
        scores = []
        for seed in range(self.seed, self.seed + self.arrangements):
            mosaics, labels, quadrants = make_mosaics(x, y, seed, self.mosaic)
            maps = explain_maps(explain, mosaics, labels)
            with torch.no_grad():
                scores.append(focus(maps, quadrants))
        return torch.stack(scores).mean(0)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        if self._single_class(y):
            return x.new_zeros(())  # no mosaic, no signal: adds nothing to the fine-tuning loss
        mosaics, labels, quadrants = make_mosaics(x, y, self.seed, self.mosaic)
        keep = max(1, math.ceil(len(y) * self.loss_fraction))
        maps = explain_maps(explain, mosaics[:keep], labels[:keep], create_graph=True)
        return -focus(maps, quadrants[:keep]).mean()
