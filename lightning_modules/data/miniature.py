"""A miniature ILSVRC-2012 + ImageNet-S folder tree: the real loaders without the real data.

``harmony data make-miniature PATH`` (and the paper tests) write, in seconds::

    PATH/LOC_synset_mapping.txt        1000 lines, as ImageNet's: the first ``classes`` real wnids (n01440764,
                                       ...), named after the shape drawn for them, then filler wnids
                                       n99000000... with no images, so labels index a 1000-class head
    PATH/LOC_val_solution.csv          ImageId,PredictionString: the wnid and the object's box
    PATH/ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<k>.JPEG
    PATH/ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<n>.JPEG
    PATH/ImageNetS/validation/<wnid>/ILSVRC2012_val_<n>.JPEG
    PATH/ImageNetS/validation-segmentation/<wnid>/ILSVRC2012_val_<n>.png
    PATH/ImageNetS/train-semi[-segmentation]/<wnid>/<wnid>_<k>.{JPEG,png}

Images are the synthetic shapes (:func:`lightning_modules.data.synthetic.render`): class k's
object is the k-th shape in its colour, large, on clutter with small objects of other
shapes, so a class is learnable and its mask is exact. ImageNet-S masks use that set's
encoding, id = R + 256 G: the image's category id (1 + its wnid's position among the sorted
category folders) on the object, 1000 ("ignore", R=232 G=3) on a one-pixel band around
it, 0 elsewhere. The ImageNet root is ``PATH/ILSVRC/Data/CLS-LOC`` (Kaggle's layout; the
mapping and the CSV are found in its ancestors), the ImageNet-S root ``PATH/ImageNetS``.
"""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from .imagenet import SYNSET_MAPPING, VAL_SOLUTION
from .imagenet_s import IGNORE_ID
from .synthetic import CLASS_NAMES, MIN_IMAGE_SIZE, render

# ImageNet's first wnids, in its sorted order: labels 0, 1, 2, ... of a 1000-class head.
IMAGENET_FIRST_WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361",
                        "n01494475", "n01496331", "n01498041", "n01514668")
IMAGENET_CLASSES = 1000
IMAGENET_DIR = Path("ILSVRC") / "Data" / "CLS-LOC"
IMAGENET_S_DIR = Path("ImageNetS")


@dataclass(frozen=True)
class MiniatureTree:
    """Where a miniature lies and what it holds."""

    root: Path
    wnids: tuple[str, ...]
    class_names: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)  # images per part (train, val, validation, train-semi)

    @property
    def imagenet_root(self) -> Path:
        return self.root / IMAGENET_DIR

    @property
    def imagenet_s_root(self) -> Path:
        return self.root / IMAGENET_S_DIR


def encode_segmentation_ids(ids: np.ndarray) -> Image.Image:
    """(H,W) int ImageNet-S ids -> an RGB PNG image with id = R + 256 G."""
    ids = ids.astype(np.int64)
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel band just outside ``mask`` (8-neighbourhood dilation minus the mask)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    grown = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            grown |= padded[dy:dy + h, dx:dx + w]
    return grown & ~mask


def segmentation_ids(mask: np.ndarray, own_id: int) -> np.ndarray:
    """(H,W) ids of an ImageNet-S mask: ``own_id`` on the object, ignore on its outline, 0 elsewhere."""
    ids = np.zeros(mask.shape, np.int64)
    ids[_outline(mask)] = IGNORE_ID
    ids[mask] = own_id
    return ids


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(xmin, ymin, xmax, ymax) of a non-empty mask, as in LOC_val_solution.csv."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


class _Writer:
    """Renders class-``k`` items into one miniature tree (scenes differ by part and index)."""

    PART_SPLITS = {"train": ("train", 0), "val": ("val", 0), "validation": ("test", 0),
                   "train-semi": ("train", 1_000_000)}

    def __init__(self, root: Path, image_size: int, seed: int):
        self.root, self.image_size, self.seed = root, image_size, seed

    def render(self, part: str, index: int, label: int) -> tuple[np.ndarray, np.ndarray]:
        split, offset = self.PART_SPLITS[part]
        image, mask, _ = render(self.seed, split, offset + index, self.image_size, label=label)
        return image, mask

    def jpeg(self, path: Path, image: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=92)

    def png(self, path: Path, ids: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_segmentation_ids(ids).save(path)


def _write_mapping(root: Path, wnids: tuple[str, ...], names: tuple[str, ...]) -> None:
    fillers = [f"n99{k:06d} unused class {k} (no images in the miniature)"
               for k in range(IMAGENET_CLASSES - len(wnids))]
    lines = [f"{wnid} {name}" for wnid, name in zip(wnids, names)] + fillers
    (root / SYNSET_MAPPING).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_imagenet(writer: _Writer, wnids, train_per_class: int, val_per_class: int) -> dict[str, int]:
    images = writer.root / IMAGENET_DIR
    for label, wnid in enumerate(wnids):
        for k in range(train_per_class):
            image, _ = writer.render("train", label * train_per_class + k, label)
            writer.jpeg(images / "train" / wnid / f"{wnid}_{k}.JPEG", image)
    rows = []
    for n in range(len(wnids) * val_per_class):  # classes interleaved, as ImageNet's val ids are
        label = n % len(wnids)
        image, mask = writer.render("val", n, label)
        image_id = f"ILSVRC2012_val_{n + 1:08d}"
        writer.jpeg(images / "val" / f"{image_id}.JPEG", image)
        rows.append((image_id, " ".join(str(v) for v in (wnids[label], *box_of(mask)))))
    with open(writer.root / VAL_SOLUTION, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("ImageId", "PredictionString"), *rows])
    return {"train": len(wnids) * train_per_class, "val": len(rows)}


def _write_imagenet_s(writer: _Writer, wnids, validation_per_class: int, semi_per_class: int) -> dict[str, int]:
    root = writer.root / IMAGENET_S_DIR
    own_ids = {wnid: i + 1 for i, wnid in enumerate(sorted(wnids))}
    counts = {}
    for part, per_class in (("validation", validation_per_class), ("train-semi", semi_per_class)):
        for label, wnid in enumerate(wnids):
            for k in range(per_class):
                index = label * per_class + k
                image, mask = writer.render(part, index, label)
                name = f"ILSVRC2012_val_{50001 + index:08d}" if part == "validation" else f"{wnid}_{k}"
                writer.jpeg(root / part / wnid / f"{name}.JPEG", image)
                writer.png(root / f"{part}-segmentation" / wnid / f"{name}.png", segmentation_ids(mask, own_ids[wnid]))
        counts[part] = len(wnids) * per_class
    return counts


def _check_target(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path} already exists and is not an empty folder: give make-miniature a new folder "
                        f"(or remove that one)")


def make_miniature(path: str | os.PathLike, classes: int = 4, train_per_class: int = 16, val_per_class: int = 16,
                   validation_per_class: int = 8, semi_per_class: int = 4, image_size: int = 80,
                   seed: int = 0) -> MiniatureTree:
    """Write a miniature ILSVRC + ImageNet-S tree at ``path`` (new or empty) and describe it.

    ``classes``: how many wnids carry images (at most 8, one per synthetic shape);
    ``*_per_class``: images per class of ImageNet train and val, ImageNet-S validation
    and train-semi; ``image_size``: the side of every (square) image. The tree is
    written into a sibling temporary folder and moved into place, so a failure leaves nothing.
    """
    path = Path(path).expanduser()
    if not 1 <= classes <= len(IMAGENET_FIRST_WNIDS):
        raise UserError(f"--classes {classes} must lie between 1 and {len(IMAGENET_FIRST_WNIDS)} "
                        f"(one synthetic shape per class)")
    if min(train_per_class, val_per_class, validation_per_class) < 1 or classes * val_per_class < 2 \
            or classes * validation_per_class < 3:
        raise UserError("every split needs images: give at least one image per class, and enough val and "
                        "validation images for val and test (2 and 3 in all)")
    if image_size < MIN_IMAGE_SIZE:
        raise UserError(f"--image-size {image_size} must be at least {MIN_IMAGE_SIZE} (smaller images can leave a "
                        f"shape no pixel)")
    _check_target(path)
    wnids, names = IMAGENET_FIRST_WNIDS[:classes], CLASS_NAMES[:classes]
    missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        _remove_empty(missing)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}): give make-miniature a new folder in a "
                        f"writable place") from exc
    try:
        writer = _Writer(staging, image_size, seed)
        _write_mapping(staging, wnids, names)
        counts = {**_write_imagenet(writer, wnids, train_per_class, val_per_class),
                  **_write_imagenet_s(writer, wnids, validation_per_class, semi_per_class)}
        if path.exists():
            path.rmdir()  # empty (checked above)
        os.replace(staging, path)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(missing)
        if isinstance(exc, OSError):
            raise UserError(f"cannot write {path} ({exc.strerror or exc}): free space there or give make-miniature "
                            f"a new folder in a writable place") from exc
        raise
    return MiniatureTree(path, wnids, names, counts)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders (innermost first) a failed call created, while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return
