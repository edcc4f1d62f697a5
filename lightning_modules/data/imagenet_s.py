"""ImageNet-S: ImageNet images with pixel-level masks of their category (ground truth for RMA).

Layout (as the ImageNet-S preparation scripts write it, e.g. ``ImageNetS919``)::

    <root>/validation/<wnid>/<name>.JPEG                images
    <root>/validation-segmentation/<wnid>/<name>.png    their masks
    <root>/train-semi/<wnid>/<name>.JPEG                optional: a few masked training images
    <root>/train-semi-segmentation/<wnid>/<name>.png

Mask encoding (ImageNet-S): a pixel's class id is ``R + 256 * G``; 0 is
background (or another category), 1000 is "ignore"; id ``k`` is the k-th
(1-based) ImageNet-S category, whose list is the sorted category wnids of the
split (ImageNet-S's own convention).

**Which pixels form the target mask.** An image's own category is its folder's
wnid; its id is ``1 + `` the wnid's position among the sorted category folders
of ``validation/`` (or among the lines of ``categories``, e.g.
``ImageNetS_categories_im919.txt``, when given). The mask is the pixels with
that id; "ignore" pixels count as outside. If that id does not occur in a mask
(e.g. a partial copy of the data set, where the folders do not list every
category), the mask falls back to the most frequent id other than 0 and 1000,
and the dataset counts it in ``fallback_masks``.

**Labels line up with 1000-class pretrained backbones.** ImageNet-S
categories are a subset of ImageNet's 1000 wnids, so a label is the wnid's
index among ImageNet's 1000 sorted wnids, taken from ``LOC_synset_mapping.txt``
(``synset_mapping``, or found in ``root`` or a parent). Without it, labels index
the sorted wnids found (919 for ImageNetS919), which only fits a backbone with
that many outputs: set ``data.num_classes`` to match. (ImageNet-S-919 merges five
ImageNet categories into near-duplicates, e.g. n04356056 into n04355933: an
image of a merged category is labelled with the category it was merged into.)

Splits: train = ``train-semi`` when present, and val/test a seeded disjoint
split of ``validation`` (``val_fraction`` to val); without ``train-semi``,
``validation`` is split three ways (``train_fraction`` to train, then
``val_fraction`` of the rest to val). Images without a mask are left out.
Masks go through the image's resize and center crop with nearest interpolation.
"""
from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from .image_files import FolderDataModule, ImageFiles, resize_crop, seeded_split, transform_key
from .imagenet import (SYNSET_MAPPING, DataLayoutError, ancestors, check_class_count, checked_root, find_file,
                       list_class_folders, list_images, read_synset_mapping)
from .transforms import IMAGENET_TRANSFORM, InputTransform

log = logging.getLogger(__name__)

BACKGROUND_ID = 0
IGNORE_ID = 1000


def decode_segmentation_ids(mask: Image.Image) -> np.ndarray:
    """(H,W) int64 ImageNet-S class ids of a mask image: ``R + 256 * G``."""
    if mask.mode in ("L", "P", "I", "I;16"):  # single channel: the value is the id
        return np.asarray(mask, dtype=np.int64)
    rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1]


def target_mask(ids: np.ndarray, own_id: int) -> tuple[np.ndarray, bool]:
    """(bool mask of the image's own category, whether it fell back to the most frequent id).

    ``own_id`` decides; when it does not occur, the most frequent id other than
    background and ignore does (all-False when there is none).
    """
    mask = ids == own_id
    if mask.any():
        return mask, False
    counts = Counter(ids[(ids != BACKGROUND_ID) & (ids != IGNORE_ID)].tolist())
    if not counts:
        return mask, True
    return ids == counts.most_common(1)[0][0], True


class SegmentedImageFiles(ImageFiles):
    """Image files with ImageNet-S masks: items as :class:`ImageFiles` plus ``mask`` (1,S,S) float in {0,1}.

    ``samples``: (image path, label, mask path, own ImageNet-S id).
    """

    def __init__(self, samples: list[tuple[Path, int, Path, int]], class_names: Sequence[str],
                 image_size: int = 224, resize_size: int | None = None, transform=None):
        super().__init__(samples, class_names, image_size, resize_size, transform)
        self.fallback_masks = 0

    def load_mask(self, path: Path, own_id: int) -> torch.Tensor:
        with Image.open(path) as image:
            mask, fell_back = target_mask(decode_segmentation_ids(image), own_id)
        if fell_back:
            self.fallback_masks += 1
        mask = resize_crop(Image.fromarray(mask.astype(np.uint8) * 255), self.resize_size, self.image_size,
                           nearest=True)
        return torch.from_numpy(np.asarray(mask) > 127).float()[None]

    def load(self, i: int) -> dict:
        item = super().load(i)
        _, _, mask_path, own_id = self.samples[i]
        item["mask"] = self.load_mask(mask_path, own_id)
        return item


def _layout_hint(root: Path) -> str:
    return (f"expected {root}/validation/<wnid>/*.JPEG with masks {root}/validation-segmentation/<wnid>/*.png "
            f"(an ImageNet-S folder such as ImageNetS919) (set data.root=...)")


class ImageNetSDataModule(FolderDataModule):
    """ImageNet-S images with target masks (see the module doc).

    ``categories``: optional ImageNet-S category file (one wnid a line); else the
    sorted folders of ``validation/``. ``synset_mapping``: optional
    ``LOC_synset_mapping.txt`` (searched in root and its parents when not given).
    ``num_classes`` must equal the class list's length (1000 with the mapping).
    """

    has_masks = True
    trainable_auto = False

    def __init__(self, root: str | os.PathLike, name: str = "imagenet_s", num_classes: int | None = 1000,
                 image_size: int = 224, resize_size: int | None = None, val_fraction: float = 0.5,
                 train_fraction: float = 0.5, seed: int = 0, batch_size: int = 64, num_workers: int = 0,
                 synset_mapping: str | os.PathLike | None = None, categories: str | os.PathLike | None = None,
                 train_size: int | None = None, val_size: int | None = None, test_size: int | None = None,
                 transform: InputTransform | None = None):
        self.root = checked_root("ImageNet-S", root, ("validation", "validation-segmentation"), _layout_hint)
        self.transform = transform or IMAGENET_TRANSFORM
        for key, value in (("val_fraction", val_fraction), ("train_fraction", train_fraction)):
            if not 0 < value < 1:
                raise DataLayoutError(f"data.{key}={value} must lie between 0 and 1")
        self.categories = self._categories(categories)
        self.wnids, self.names = self._classes(synset_mapping)
        check_class_count("ImageNet-S", self.root, len(self.wnids), num_classes)
        super().__init__(name, len(self.wnids), batch_size, num_workers)
        self.image_size = image_size
        self.resize_size = resize_size
        self.val_fraction = val_fraction
        self.train_fraction = train_fraction
        self.seed = seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self._splits: dict[str, list] | None = None  # listed once

    def _categories(self, explicit) -> list[str]:
        """The ImageNet-S category wnids in id order (id = position + 1)."""
        if explicit:
            path = Path(explicit).expanduser()
            if not path.is_file():
                raise DataLayoutError(f"data.categories {path} does not exist: give an ImageNet-S category file "
                                      f"(one wnid a line, e.g. ImageNetS_categories_im919.txt) or null")
            wnids = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return sorted(set(wnids))  # ImageNet-S ids follow sorted wnids
        wnids = list_class_folders(self.root / "validation")
        if not wnids:
            raise DataLayoutError(f"ImageNet-S folder {self.root}/validation has no <wnid>/ class folders: "
                                  f"{_layout_hint(self.root)}")
        return wnids

    def _classes(self, synset_mapping) -> tuple[list[str], list[str]]:
        """(wnids in label order, names): ImageNet's 1000 with the synset mapping, else the categories."""
        if synset_mapping:
            path = Path(synset_mapping).expanduser()
            if not path.is_file():
                raise DataLayoutError(f"data.synset_mapping {path} does not exist: give the path of "
                                      f"{SYNSET_MAPPING} (all 1000 ImageNet wnids) or null")
        else:
            path = find_file(SYNSET_MAPPING, ancestors(self.root))
        if path is None:
            return list(self.categories), list(self.categories)
        mapping = read_synset_mapping(path)
        unknown = sorted(set(self.categories) - set(mapping))
        if unknown:
            raise DataLayoutError(f"{len(unknown)} ImageNet-S categories (e.g. {unknown[0]}) are not in {path}: "
                                  f"give data.synset_mapping= ImageNet's {SYNSET_MAPPING}")
        wnids = sorted(mapping)
        return wnids, [mapping[w] for w in wnids]

    @property
    def class_names(self) -> list[str]:
        return list(self.names)

    def fingerprint(self) -> str:
        sizes = "-".join(str(n) for n in self.sizes.values())
        return (f"{self.name}-{self.root.resolve()}-{len(self.wnids)}c-{self.image_size}px-seed{self.seed}-"
                f"val{self.val_fraction}-train{self.train_fraction}-{sizes}{transform_key(self.transform)}")

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform.denormalize(x)

    def masked_samples(self, images: str) -> list[tuple[Path, int, Path, int]]:
        """(image, label, mask, own id) of every image in ``<root>/<images>`` that has a mask."""
        label_of = {wnid: i for i, wnid in enumerate(self.wnids)}
        id_of = {wnid: i + 1 for i, wnid in enumerate(self.categories)}
        image_root, mask_root = self.root / images, self.root / f"{images}-segmentation"
        samples, unmasked = [], 0
        for wnid in list_class_folders(image_root):
            if wnid not in label_of or wnid not in id_of:
                raise DataLayoutError(f"{image_root}/{wnid} is not an ImageNet-S category of this data set: "
                                      f"check data.root, data.categories and data.synset_mapping")
            masks = {p.stem: p for p in list_images(mask_root / wnid)} if (mask_root / wnid).is_dir() else {}
            for path in list_images(image_root / wnid):
                if path.stem in masks:
                    samples.append((path, label_of[wnid], masks[path.stem], id_of[wnid]))
                else:
                    unmasked += 1
        if unmasked:
            log.warning("%d images in %s have no mask in %s and are left out", unmasked, image_root, mask_root)
        return samples

    def samples_of(self, split: str) -> list[tuple[Path, int, Path, int]]:
        """The samples of ``split`` before the size limit (all splits are listed together, once)."""
        if self._splits is None:
            self._splits = self.split_samples()
        return self._splits[split]

    def make_dataset(self, samples: list) -> SegmentedImageFiles:
        return SegmentedImageFiles(samples, self.names, self.image_size, self.resize_size, self.transform)

    def split_samples(self) -> dict[str, list]:
        """{split: samples} before the size limits."""
        validation = self.masked_samples("validation")
        semi = self.root / "train-semi"
        if semi.is_dir() and (self.root / "train-semi-segmentation").is_dir():
            train = self.masked_samples("train-semi")
            val, test = seeded_split(validation, [self.val_fraction], self.seed)
        else:
            rest = 1 - self.train_fraction
            train, val, test = seeded_split(validation, [self.train_fraction, rest * self.val_fraction], self.seed)
        splits = {"train": train, "val": val, "test": test}
        empty = [name for name, samples in splits.items() if not samples]
        if empty:
            raise DataLayoutError(f"ImageNet-S root {self.root} gives no masked images for the {empty[0]} split "
                                  f"({len(validation)} masked validation images in all): {_layout_hint(self.root)}")
        return splits
