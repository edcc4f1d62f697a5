"""Labelled image files as a data set, and a data module that lists its splits from folders on first use:
what the ImageNet, ImageNet-S and folder data modules share (seeded splits and subsets, resize and crop,
corrupt images skipped)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..errors import UserError
from .base import HarmonyDataModule
from .transforms import IMAGENET_TRANSFORM, InputTransform

log = logging.getLogger(__name__)

# What PIL raises on a truncated, corrupt or non-image file (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def seeded_split(items: list, fractions: Sequence[float], seed: int) -> list[list]:
    """Disjoint parts of ``items`` of the given fractions (the last takes the rest), by a seeded shuffle.

    Each part keeps the input order; every part gets at least one item when there are enough.
    """
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    parts, start = [], 0
    for k, fraction in enumerate(fractions):
        left_after = len(fractions) - k  # parts still to fill after this one, including the rest
        count = min(max(round(len(items) * fraction), 1), len(items) - start - left_after)
        parts.append(sorted(order[start:start + max(count, 0)]))
        start += max(count, 0)
    parts.append(sorted(order[start:]))
    return [[items[i] for i in part] for part in parts]


def seeded_subset(items: list, size: int | None, seed: int) -> list:
    """A seeded random ``size`` of ``items`` in their order (all of them when ``size`` is None)."""
    if size is None or size >= len(items):
        return items
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in sorted(order[:size])]


def transform_key(transform: InputTransform) -> str:
    """A fingerprint's part for ``transform``: empty for ImageNet's own (earlier fingerprints stay valid)."""
    return "" if transform == IMAGENET_TRANSFORM else f"-{transform}"


def resize_crop(image: Image.Image, resize_size: int, crop_size: int, nearest: bool = False,
                interpolation: str = "bilinear") -> Image.Image:
    """Short side to ``resize_size`` (``interpolation``; nearest for masks), then a center ``crop_size`` square."""
    mode = InterpolationMode.NEAREST if nearest else InterpolationMode(interpolation)
    image = TF.resize(image, resize_size, interpolation=mode, antialias=True)  # PIL: nearest never blends
    return TF.center_crop(image, [crop_size, crop_size])


class ImageFiles(Dataset):
    """Labelled image files.

    Items are dicts: ``image`` (3,S,S) normalized float, ``label`` int,
    ``class_name`` str, ``index`` int; ``None`` for an unreadable file (counted
    in :attr:`skipped`, per process: each DataLoader worker counts its own).
    """

    def __init__(self, samples: list[tuple[Path, int]], class_names: Sequence[str], image_size: int = 224,
                 resize_size: int | None = None, transform: InputTransform | None = None):
        self.samples = samples
        self.class_names = list(class_names)
        self.image_size = image_size
        self.transform = transform or IMAGENET_TRANSFORM  # the backbone's mean, std, crop share, interpolation
        self.resize_size = resize_size or self.transform.resize_size(image_size)
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, path: Path) -> torch.Tensor:
        """(3,S,S) normalized image of ``path``."""
        with Image.open(path) as image:
            image = resize_crop(image.convert("RGB"), self.resize_size, self.image_size,
                                interpolation=self.transform.interpolation)
        return self.transform.normalize(TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True))

    def load(self, i: int) -> dict:
        path, label = self.samples[i][:2]
        return {"image": self.load_image(path), "label": label, "class_name": self.class_names[label], "index": i}

    def __getitem__(self, i: int) -> dict | None:
        try:
            return self.load(i)
        except DECODE_ERRORS as exc:
            self.skipped += 1
            log.warning("skipped corrupt image %s (%d skipped so far): %s", self.samples[i][0], self.skipped, exc)
            return None


class FolderDataModule(HarmonyDataModule):
    """Splits listed from folders on first use, one at a time (listing ImageNet's train
    folder takes a while, and evaluating needs only the test split).

    Subclasses set ``sizes`` ({split: size limit or None}) and ``seed``, and define
    :meth:`samples_of` and :meth:`make_dataset`.
    """

    SPLITS = ("train", "val", "test")
    STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}

    def samples_of(self, split: str) -> list:
        raise NotImplementedError

    def make_dataset(self, samples: list) -> ImageFiles:
        raise NotImplementedError

    def split(self, name: str) -> ImageFiles:
        if name not in self.SPLITS:
            raise UserError(f"unknown split {name!r}: use one of {', '.join(self.SPLITS)}")
        if getattr(self, f"{name}_set") is None:
            samples = seeded_subset(self.samples_of(name), self.sizes[name], self.seed)
            setattr(self, f"{name}_set", self.make_dataset(samples))
        return getattr(self, f"{name}_set")

    def setup(self, stage: str | None = None) -> None:
        for name in self.STAGE_SPLITS.get(stage, self.SPLITS):
            self.split(name)
