"""ImageNet (ILSVRC-2012 CLS-LOC) from its folder layout on disk.

Accepted layouts under ``root`` (the folder that holds ``train/`` and ``val/``):

- train: ``<root>/train/<wnid>/*.JPEG`` (as torchvision's ``ImageFolder``).
- val, sorted into class folders: ``<root>/val/<wnid>/*.JPEG``; or flat,
  ``<root>/val/*.JPEG``, labelled by ``LOC_val_solution.csv`` (Kaggle: columns
  ``ImageId,PredictionString``, whose first token is the wnid) or by the ILSVRC
  per-image XML files (``<object><name>wnid</name>``) in ``<root>/val``,
  ``<root>/Annotations/CLS-LOC/val`` or Kaggle's ``ILSVRC/Annotations/CLS-LOC/val``.
  Both are searched for in ``root`` and its ancestors up to Kaggle's depth
  (``<kaggle>/ILSVRC/Data/CLS-LOC`` is a root), or given as ``val_labels``.

Class indices follow sorted wnids, as ``ImageFolder`` and torchvision's
pretrained 1000-class weights do. The class list is the wnids of
``LOC_synset_mapping.txt`` when one is found (all 1000), else the train
folder's. Names are the first name of each mapping line (``n01440764 tench,
Tinca tinca`` -> ``tench``), else the wnid.

Splits: train is the train folder; val and test are a seeded, disjoint split of
the val images (``val_fraction`` of them to val). Every split uses the
evaluation transform of the backbone's weights (``backbone.transform``; by default
ImageNet's: resize the short side to ``image_size * 256 / 224`` bilinearly,
center crop ``image_size``, normalize with ImageNet statistics): fine-tuning keeps the original model's
predictions, and masks of segmented sets must follow the image exactly.

A corrupt or unreadable image is skipped (the item is ``None``, dropped by
:func:`collate_skip_none`) with a logged warning and a count in ``skipped``.
"""
from __future__ import annotations

import csv
import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

import torch

from ..errors import UserError
from .image_files import FolderDataModule, ImageFiles, seeded_split, transform_key
from .transforms import IMAGENET_TRANSFORM, InputTransform

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SYNSET_MAPPING = "LOC_synset_mapping.txt"
VAL_SOLUTION = "LOC_val_solution.csv"


class DataLayoutError(UserError):
    """A data root that does not have the expected folder layout; the message names it."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def ancestors(root: Path, depth: int = 3) -> list[Path]:
    """``root`` and up to ``depth`` of its parents, nearest first."""
    return [root, *list(root.parents)[:depth]]


def find_file(name: str, folders: Sequence[Path]) -> Path | None:
    """The first ``folder/name`` that is a file, or ``None``."""
    return next((folder / name for folder in folders if (folder / name).is_file()), None)


def read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` as {wnid: first name}, e.g. ``n01440764 -> tench``."""
    mapping = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            wnid, _, names = line.strip().partition(" ")
            if wnid:
                mapping[wnid] = names.split(",")[0].strip() or wnid
    if not mapping:
        raise DataLayoutError(f"synset mapping {path} is empty: expected lines like 'n01440764 tench, Tinca tinca'")
    return mapping


def list_class_folders(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of ``folder`` (the wnids of an ImageFolder layout)."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())


def list_images(folder: Path) -> list[Path]:
    """Sorted image files directly in ``folder``."""
    return sorted(Path(entry.path) for entry in os.scandir(folder) if entry.is_file() and is_image(Path(entry.name)))


def read_val_solution(path: Path) -> dict[str, str]:
    """Kaggle's ``LOC_val_solution.csv`` as {image id: wnid} (first token of PredictionString)."""
    labels = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DataLayoutError(f"{path} is not a LOC_val_solution.csv: "
                                  f"expected the columns ImageId,PredictionString")
        for row in reader:
            tokens = (row["PredictionString"] or "").split()
            if tokens:
                labels[row["ImageId"]] = tokens[0]
    return labels


def read_val_xml(folder: Path) -> dict[str, str]:
    """ILSVRC per-image XML annotations in ``folder`` as {image id: wnid of the first object}."""
    labels = {}
    for entry in os.scandir(folder):
        if not entry.name.endswith(".xml"):
            continue
        try:
            name = ET.parse(entry.path).getroot().find("object/name")
        except ET.ParseError as exc:
            raise DataLayoutError(f"cannot parse ILSVRC annotation {entry.path} ({exc}): "
                                  f"re-extract the annotations") from exc
        if name is not None and name.text:
            labels[Path(entry.name).stem] = name.text.strip()
    return labels


def checked_root(label: str, root: str | os.PathLike, folders: Sequence[str], hint) -> Path:
    """``root`` as a Path, once it is a folder holding each of ``folders``; ``hint(root)``: the expected layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataLayoutError(f"{label} root {root} does not exist: {hint(root)}")
    for folder in folders:
        if not (root / folder).is_dir():
            raise DataLayoutError(f"{label} root {root} has no {folder}/ folder: {hint(root)}")
    return root


def check_class_count(label: str, root: Path, found: int, num_classes: int | None) -> None:
    """The backbone's class count (None: take the data's) must equal the ``found`` classes of the data."""
    if num_classes is not None and num_classes != found:
        raise DataLayoutError(
            f"{label} root {root} has {found} classes but data.num_classes={num_classes}: set "
            f"data.num_classes={found}, or give data.synset_mapping=<{SYNSET_MAPPING}> (all 1000 ImageNet wnids) "
            f"so that labels match 1000-class pretrained backbones")


def _layout_hint(root: Path) -> str:
    return (f"expected {root}/train/<wnid>/*.JPEG and {root}/val/*.JPEG with {VAL_SOLUTION} "
            f"(or {root}/val/<wnid>/*.JPEG) (set data.root=...)")


class ImageNetDataModule(FolderDataModule):
    """ImageNet train / val / test from the ILSVRC folder layout (see the module doc).

    ``num_classes``: the class count the backbone is built with; it must equal the
    class list's length (1000 with a full train folder or ``LOC_synset_mapping.txt``).
    ``train_size``/``val_size``/``test_size``: a seeded subset of each split (None: all).
    ``trainable_auto`` is False: ``backbone.weights=auto`` trains on synthetic data only.
    """

    trainable_auto = False

    def __init__(self, root: str | os.PathLike, name: str = "imagenet", num_classes: int | None = 1000,
                 image_size: int = 224, resize_size: int | None = None, val_fraction: float = 0.5, seed: int = 0,
                 batch_size: int = 64, num_workers: int = 0, val_labels: str | os.PathLike | None = None,
                 synset_mapping: str | os.PathLike | None = None, train_size: int | None = None,
                 val_size: int | None = None, test_size: int | None = None, transform: InputTransform | None = None):
        self.root = checked_root("ImageNet", root, ("train", "val"), _layout_hint)
        self.transform = transform or IMAGENET_TRANSFORM
        if not 0 < val_fraction < 1:
            raise DataLayoutError(f"data.val_fraction={val_fraction} must lie between 0 and 1 (the share of "
                                  f"the val images that go to val; the rest go to test)")
        self.wnids, self.names = self._classes(synset_mapping)
        check_class_count("ImageNet", self.root, len(self.wnids), num_classes)
        super().__init__(name, len(self.wnids), batch_size, num_workers)
        self.image_size = image_size
        self.resize_size = resize_size
        self.val_fraction = val_fraction
        self.seed = seed
        self.val_labels = Path(val_labels).expanduser() if val_labels else None
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self._held_out: list[list] | None = None  # (val, test) samples, listed once

    def _classes(self, synset_mapping) -> tuple[list[str], list[str]]:
        """(sorted wnids, names): from the synset mapping when there is one, else the train folder."""
        train_wnids = list_class_folders(self.root / "train")
        if not train_wnids:
            raise DataLayoutError(f"ImageNet train folder {self.root}/train has no <wnid>/ class folders: "
                                  f"{_layout_hint(self.root)}")
        mapping = self._synset_mapping(synset_mapping)
        if mapping is None:
            return train_wnids, train_wnids
        unknown = sorted(set(train_wnids) - set(mapping))
        if unknown:
            raise DataLayoutError(f"{len(unknown)} train class folders (e.g. {unknown[0]}) are not in "
                                  f"{SYNSET_MAPPING}: give data.synset_mapping= the mapping of this data set")
        wnids = sorted(mapping)
        return wnids, [mapping[w] for w in wnids]

    def _synset_mapping(self, explicit) -> dict[str, str] | None:
        if explicit:
            path = Path(explicit).expanduser()
            if not path.is_file():
                raise DataLayoutError(f"data.synset_mapping {path} does not exist: give the path of "
                                      f"{SYNSET_MAPPING} (lines 'n01440764 tench, Tinca tinca') or null")
            return read_synset_mapping(path)
        found = find_file(SYNSET_MAPPING, ancestors(self.root))
        return read_synset_mapping(found) if found else None

    @property
    def class_names(self) -> list[str]:
        return list(self.names)

    def fingerprint(self) -> str:
        sizes = "-".join(str(n) for n in self.sizes.values())
        return (f"{self.name}-{self.root.resolve()}-{len(self.wnids)}c-{self.image_size}px-"
                f"seed{self.seed}-val{self.val_fraction}-{sizes}{transform_key(self.transform)}")

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.transform.denormalize(x)

    # -- listing ----------------------------------------------------------------------------

    def train_samples(self) -> list[tuple[Path, int]]:
        index = {wnid: i for i, wnid in enumerate(self.wnids)}
        samples = [(path, index[wnid]) for wnid in list_class_folders(self.root / "train")
                   for path in list_images(self.root / "train" / wnid)]
        if not samples:
            raise DataLayoutError(f"ImageNet train folder {self.root}/train has no images in its class folders: "
                                  f"{_layout_hint(self.root)}")
        return samples

    def val_samples(self) -> list[tuple[Path, int]]:
        """Every labelled val image, from class folders or a flat folder with its labels."""
        val = self.root / "val"
        index = {wnid: i for i, wnid in enumerate(self.wnids)}
        folders = [w for w in list_class_folders(val) if w in index]
        if folders:
            samples = [(path, index[w]) for w in folders for path in list_images(val / w)]
        else:
            labels, source = self._val_labels()
            samples, unlabelled = [], 0
            for path in list_images(val):
                wnid = labels.get(path.stem)
                if wnid is None:
                    unlabelled += 1
                    continue
                if wnid not in index:
                    raise DataLayoutError(f"{source} labels {path.name} as {wnid}, which is not one of the "
                                          f"{len(self.wnids)} classes of {self.root}/train: check data.root")
                samples.append((path, index[wnid]))
            if unlabelled:
                log.warning("%d val images in %s have no label in %s and are left out", unlabelled, val, source)
        if len(samples) < 2:
            raise DataLayoutError(f"ImageNet val folder {val} has {len(samples)} labelled images (val and test "
                                  f"need at least one each): {_layout_hint(self.root)}")
        return samples

    def _val_labels(self) -> tuple[dict[str, str], Path]:
        """({image id: wnid}, where they came from) for a flat val folder."""
        if self.val_labels is not None:
            if self.val_labels.is_file():
                return read_val_solution(self.val_labels), self.val_labels
            if self.val_labels.is_dir():
                return read_val_xml(self.val_labels), self.val_labels
            raise DataLayoutError(f"data.val_labels {self.val_labels} does not exist: give {VAL_SOLUTION} "
                                  f"or the folder of the ILSVRC val XML annotations")
        csv_path = find_file(VAL_SOLUTION, ancestors(self.root))
        if csv_path:
            return read_val_solution(csv_path), csv_path
        xml_folders = [self.root / "val", self.root / "Annotations" / "CLS-LOC" / "val",
                       self.root.parent.parent / "Annotations" / "CLS-LOC" / "val"]  # Kaggle: ILSVRC/Data/CLS-LOC
        for folder in xml_folders:
            if folder.is_dir() and any(e.name.endswith(".xml") for e in os.scandir(folder)):
                return read_val_xml(folder), folder
        raise DataLayoutError(
            f"ImageNet val images in {self.root}/val have no labels: place {VAL_SOLUTION} in {self.root} or a "
            f"parent, the ILSVRC XML files in {self.root}/Annotations/CLS-LOC/val, sort them into val/<wnid>/, "
            f"or set data.val_labels=...")

    # -- splits -----------------------------------------------------------------------------

    def make_dataset(self, samples: list) -> ImageFiles:
        return ImageFiles(samples, self.names, self.image_size, self.resize_size, self.transform)

    def samples_of(self, split: str) -> list[tuple[Path, int]]:
        """The samples of ``split`` before the size limit: val and test split the val images."""
        if split == "train":
            return self.train_samples()
        if self._held_out is None:
            self._held_out = seeded_split(self.val_samples(), [self.val_fraction], self.seed)
        return self._held_out[0 if split == "val" else 1]
