"""``data=folder``: your own labelled photos, with optional object masks or boxes (ground truth for RMA).

Layouts under ``root``:

- ``root/<class>/*.jpg`` (as torchvision's ``ImageFolder``), or
- ``labels``: a CSV of ``path,label`` rows (paths relative to ``root``; a header row is allowed).

Classes: ``classes`` (a list, or a text file with one name a line) fixes their order;
without it, the sorted folder names or CSV labels. Labels that are all whole numbers
with no class list are class *indices* (``243`` is class 243 of ``num_classes``: the
output index of a pretrained 1000-class network), named by their number.

Masks (optional, for RMA and Focus): ``masks``, a folder of ``<image stem>.png`` of the
image's size (any mode; non-zero pixels are the object). Boxes instead: ``boxes``, a CSV
``image,x0,y0,x1,y1`` (one row per box; ``image`` is the file's stem) or a JSON
``{stem: [x0, y0, x1, y1] | [[x0, y0, x1, y1], ...]}`` in pixels of the image file; their
union is rasterized to a mask.

Splits: ``splits`` ({train, val, test}: lists of paths relative to ``root``, or text files
of them), else a seeded shuffle with ``val_fraction`` and ``test_fraction`` of the images
(the rest trains). Every image is converted to RGB and resized with the backbone's input
transform (``backbone.transform``: short side to ``image_size / crop_pct``, center crop
``image_size``, its mean and std); masks follow with nearest-neighbour resizing.

Bad input fails with one line naming the file: an empty class folder, an image that is
not an image or is truncated, a mask of another size, a box outside its image, a label
not in the class list.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .image_files import DECODE_ERRORS, FolderDataModule, seeded_split
from .imagenet import DataLayoutError, is_image, list_class_folders, list_images
from .transforms import IMAGENET_TRANSFORM, InputTransform

Sample = tuple[Path, int]


def _read_list(value, what: str) -> list[str]:
    """A list given inline, or the non-empty lines of a text file."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataLayoutError(f"{what} file {path} does not exist: give a text file with one entry a line, "
                                  f"or a list")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [str(v) for v in value]


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; one line if it is not an image."""
    try:
        with Image.open(path) as image:
            return image.size
    except DECODE_ERRORS as exc:
        raise DataLayoutError(f"{path} is not a readable image ({type(exc).__name__}): replace or remove it") from exc


def read_boxes(path: str | os.PathLike) -> dict[str, list[tuple[float, float, float, float]]]:
    """{image stem: [(x0, y0, x1, y1), ...]} from a CSV (``image,x0,y0,x1,y1``) or JSON file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataLayoutError(f"data.boxes file {path} does not exist: give a CSV image,x0,y0,x1,y1 or a JSON "
                              f"{{stem: [x0, y0, x1, y1]}}")
    boxes: dict[str, list] = {}
    try:
        if path.suffix.lower() == ".json":
            for stem, value in json.loads(path.read_text(encoding="utf-8")).items():
                rows = value if value and isinstance(value[0], (list, tuple)) else [value]
                boxes[Path(stem).stem] = [tuple(float(v) for v in row) for row in rows]
        else:
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.reader(f):
                    if not row or row[0].strip().lower() in ("image", "path", "stem") or row[0].startswith("#"):
                        continue
                    boxes.setdefault(Path(row[0].strip()).stem, []).append(tuple(float(v) for v in row[1:5]))
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise DataLayoutError(f"data.boxes file {path} is not a list of x0,y0,x1,y1 boxes per image ({exc})") from exc
    bad = next((stem for stem, rows in boxes.items() for row in rows if len(row) != 4), None)
    if bad is not None:
        raise DataLayoutError(f"data.boxes file {path}: a box of {bad} does not have 4 numbers x0,y0,x1,y1")
    return boxes


def boxes_mask(boxes: list[tuple[float, float, float, float]], width: int, height: int) -> Image.Image:
    """The union of ``boxes`` (pixel corners, x1/y1 exclusive) as an 'L' mask of the image's size."""
    mask = torch.zeros(height, width, dtype=torch.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[round(y0):round(y1), round(x0):round(x1)] = 255
    return Image.fromarray(mask.numpy(), mode="L")


class LabelledPhotos(Dataset):
    """Image files with labels (and masks): items ``image`` (3,S,S) in the backbone's scale, ``label``,
    ``class_name``, ``index`` and, with masks, ``mask`` (1,S,S) in {0, 1}."""

    def __init__(self, samples: list[Sample], class_names: list[str], image_size: int, transform: InputTransform,
                 masks: Path | None = None, boxes: dict | None = None):
        self.samples, self.class_names = samples, class_names
        self.image_size, self.transform = image_size, transform
        self.masks, self.boxes = masks, boxes

    def __len__(self) -> int:
        return len(self.samples)

    def _resize_crop(self, image: Image.Image, nearest: bool = False) -> torch.Tensor:
        mode = InterpolationMode.NEAREST if nearest else InterpolationMode(self.transform.interpolation)
        image = TF.resize(image, self.transform.resize_size(self.image_size), interpolation=mode, antialias=True)
        image = TF.center_crop(image, [self.image_size, self.image_size])
        return TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True)

    def mask_image(self, path: Path, size: tuple[int, int]) -> Image.Image:
        """The object mask of the image at ``path`` (of ``size``), at the image's size."""
        if self.boxes is not None:
            return boxes_mask(self.boxes[path.stem], *size)
        with Image.open(self.masks / f"{path.stem}.png") as mask:
            return mask.convert("L").point(lambda v: 255 if v else 0)

    def __getitem__(self, i: int) -> dict:
        path, label = self.samples[i]
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # decodes the whole file: a truncated one fails here
        except DECODE_ERRORS as exc:
            raise DataLayoutError(f"{path} is unreadable or truncated ({exc}): replace or remove it") from exc
        item = {"image": self.transform.normalize(self._resize_crop(rgb)), "label": label,
                "class_name": self.class_names[label], "index": i}
        if self.masks is not None or self.boxes is not None:
            item["mask"] = (self._resize_crop(self.mask_image(path, rgb.size), nearest=True) > 0.5).float()
        return item


class ImageFolderDataModule(FolderDataModule):
    """Labelled photos from a folder (see the module doc). ``transform``: the backbone's input transform
    (``backbone.transform``; None: ImageNet's); ``image_size`` None: the transform's input size.
    ``train_size``/``val_size``/``test_size``: a seeded subset of each split (None: all)."""

    trainable_auto = False

    def __init__(self, root: str | os.PathLike, name: str = "folder", num_classes: int | None = None,
                 classes=None, labels: str | os.PathLike | None = None, masks: str | os.PathLike | None = None,
                 boxes: str | os.PathLike | None = None, image_size: int | None = None,
                 transform: InputTransform | None = None, val_fraction: float = 0.2, test_fraction: float = 0.2,
                 splits: dict | None = None, seed: int = 0, batch_size: int = 32, num_workers: int = 0,
                 train_size: int | None = None, val_size: int | None = None, test_size: int | None = None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DataLayoutError(f"data.root {self.root} is not a folder: give the folder of <class>/ image "
                                  f"folders (or of the images a data.labels CSV lists)")
        if splits is None and not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
            raise DataLayoutError(f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must "
                                  f"be at least 0 and sum to less than 1 (the rest trains)")
        self.labels = Path(labels).expanduser() if labels else None
        self.masks = Path(masks).expanduser() if masks else None
        if self.masks is not None and not self.masks.is_dir():
            raise DataLayoutError(f"data.masks {self.masks} is not a folder: give the folder of <image stem>.png "
                                  f"masks, or null")
        self.boxes = read_boxes(boxes) if boxes else None
        if self.masks is not None and self.boxes is not None:
            raise DataLayoutError("give data.masks or data.boxes, not both")
        self.has_masks = self.masks is not None or self.boxes is not None
        self.transform = transform or IMAGENET_TRANSFORM
        self.image_size = int(image_size or self.transform.input_size)
        pairs = self._listed()
        self.names = self._class_names(classes, [label for _, label in pairs], num_classes)
        super().__init__(name, len(self.names), batch_size, num_workers)
        self.samples = self._labelled(pairs)
        self.seed, self.val_fraction, self.test_fraction = seed, val_fraction, test_fraction
        self.given_splits = splits
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self._parts: dict[str, list[Sample]] | None = None

    @classmethod
    def masks_configured(cls, data_cfg) -> bool:
        """Whether a ``data=folder`` config gives masks or boxes (read before anything is loaded)."""
        return bool(data_cfg.get("masks") or data_cfg.get("boxes"))

    @property
    def class_names(self) -> list[str]:
        return list(self.names)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Images of this module back to [0,1] RGB for display."""
        return self.transform.denormalize(x)

    def fingerprint(self) -> str:
        sizes = "-".join(str(n) for n in self.sizes.values())
        return (f"{self.name}-{self.root.resolve()}-{len(self.samples)}img-{len(self.names)}c-{self.image_size}px-"
                f"{self.transform}-seed{self.seed}-{self.val_fraction}-{self.test_fraction}-{sizes}")

    # -- listing ------------------------------------------------------------------------------

    def _listed(self) -> list[tuple[Path, str]]:
        """(image path, label text) of every image, from the CSV or the class folders."""
        if self.labels is not None:
            return self._from_csv()
        folders = list_class_folders(self.root)
        folders = [f for f in folders if (self.root / f).resolve() != (self.masks.resolve() if self.masks else None)]
        if not folders:
            raise DataLayoutError(f"data.root {self.root} has no <class>/ folders: lay the images out as "
                                  f"root/<class>/*.jpg or give data.labels=<CSV of path,label>")
        pairs = []
        for folder in folders:
            images = list_images(self.root / folder)
            if not images:
                raise DataLayoutError(f"class folder {self.root / folder} has no images: add some or remove it")
            pairs += [(path, folder) for path in images]
        return pairs

    def _from_csv(self) -> list[tuple[Path, str]]:
        if not self.labels.is_file():
            raise DataLayoutError(f"data.labels {self.labels} does not exist: give a CSV of path,label rows")
        pairs = []
        with open(self.labels, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), 1):
                if not row or row[0].startswith("#") or (n == 1 and row[0].strip().lower() in ("path", "image")):
                    continue
                if len(row) < 2:
                    raise DataLayoutError(f"{self.labels} line {n} has no label: each row is path,label")
                path = self.root / row[0].strip()
                if not path.is_file() or not is_image(path):
                    raise DataLayoutError(f"{self.labels} line {n}: {path} is not an image file under data.root")
                pairs.append((path, row[1].strip()))
        if not pairs:
            raise DataLayoutError(f"data.labels {self.labels} lists no images: each row is path,label")
        return pairs

    def _class_names(self, classes, labels: list[str], num_classes: int | None) -> list[str]:
        if classes is not None:
            names = _read_list(classes, "data.classes")
        elif all(label.isdigit() for label in labels):  # class indices of a pretrained network's outputs
            if num_classes is None:
                raise DataLayoutError("the labels are class indices: set data.num_classes (e.g. 1000 for an "
                                      "ImageNet-trained backbone) or give data.classes")
            names = [str(i) for i in range(num_classes)]
        else:
            names = sorted(set(labels))
        if num_classes is not None and num_classes != len(names):
            raise DataLayoutError(f"data.root {self.root} has {len(names)} classes but data.num_classes="
                                  f"{num_classes}: set data.num_classes={len(names)} or give data.classes")
        return names

    def _labelled(self, pairs: list[tuple[Path, str]]) -> list[Sample]:
        """(path, class index) of each image, checking its label, its mask or boxes against its size."""
        index = {name: i for i, name in enumerate(self.names)}
        samples = []
        for path, label in pairs:
            if label not in index:
                shown = ", ".join(self.names[:5]) + (", ..." if len(self.names) > 5 else "")
                raise DataLayoutError(f"{path} has label {label!r}, which is not in the class list ({shown}): "
                                      f"fix the label or data.classes")
            if self.has_masks:
                self._check_mask(path, _image_size(path))
            samples.append((path, index[label]))
        return samples

    def _check_mask(self, path: Path, size: tuple[int, int]) -> None:
        width, height = size
        if self.boxes is not None:
            if path.stem not in self.boxes:
                raise DataLayoutError(f"{path} has no box in data.boxes: add one (x0,y0,x1,y1) or remove the image")
            for x0, y0, x1, y1 in self.boxes[path.stem]:
                if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                    raise DataLayoutError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) of {path.name} is not inside its "
                                          f"{width}x{height} image: boxes are pixel corners 0 <= x0 < x1 <= width")
            return
        mask = self.masks / f"{path.stem}.png"
        if not mask.is_file():
            raise DataLayoutError(f"{path} has no mask {mask}: add it or remove the image")
        if _image_size(mask) != size:
            raise DataLayoutError(f"mask {mask} is {'x'.join(map(str, _image_size(mask)))} but its image "
                                  f"{path.name} is {width}x{height}: masks must have their image's size")

    # -- splits -------------------------------------------------------------------------------

    def _split_parts(self) -> dict[str, list[Sample]]:
        if self.given_splits is None:
            val, test, train = seeded_split(self.samples, [self.val_fraction, self.test_fraction], self.seed)
            return {"train": train, "val": val, "test": test}
        by_path = {path.relative_to(self.root).as_posix(): (path, label) for path, label in self.samples}
        parts = {}
        for split in self.SPLITS:
            listed = _read_list(self.given_splits.get(split) or [], f"data.splits.{split}")
            unknown = [entry for entry in listed if entry not in by_path]
            if unknown:
                raise DataLayoutError(f"data.splits.{split} lists {unknown[0]}, which is not an image of "
                                      f"data.root (give paths relative to {self.root})")
            parts[split] = [by_path[entry] for entry in listed]
        return parts

    def samples_of(self, split: str) -> list[Sample]:
        if self._parts is None:
            self._parts = self._split_parts()
        return self._parts[split]

    def make_dataset(self, samples: list[Sample]) -> LabelledPhotos:
        return LabelledPhotos(samples, self.names, self.image_size, self.transform, self.masks, self.boxes)
