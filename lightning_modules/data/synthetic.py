"""Embedded synthetic data: procedural shapes on cluttered backgrounds, with masks.

Each image holds one large *target* object of its class (a unique shape and
colour) placed at a random position, scale and rotation, on a textured
background with small distractor objects of other classes. The class is the
large object's, so a model must find it; the ground-truth mask is exactly the
target object's pixels, which gives localization metrics (RMA, Focus) a real
ground truth with no download.

Generation is deterministic: item ``i`` of a split depends only on
``(seed, split, i, image_size)``, never on generation order.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import UserError
from ..logs import ProgressLines
from .transforms import normalize

log = logging.getLogger(__name__)

# (name, shape, RGB colour in [0,1]): shape and colour both identify the class.
CLASSES: tuple[tuple[str, str, tuple[float, float, float]], ...] = (
    ("red circle", "circle", (0.90, 0.15, 0.15)),
    ("green square", "square", (0.15, 0.80, 0.20)),
    ("blue triangle", "triangle", (0.15, 0.30, 0.95)),
    ("yellow cross", "cross", (0.95, 0.90, 0.10)),
    ("magenta diamond", "diamond", (0.90, 0.20, 0.85)),
    ("cyan ring", "ring", (0.10, 0.85, 0.90)),
    ("orange bar", "bar", (1.00, 0.55, 0.05)),
    ("white hexagon", "hexagon", (0.97, 0.97, 0.97)),
)
CLASS_NAMES: tuple[str, ...] = tuple(c[0] for c in CLASSES)
SPLITS = {"train": 0, "val": 1, "test": 2}


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of a unit-radius shape in object coordinates (u, v)."""
    au, av = np.abs(u), np.abs(v)
    r = np.sqrt(u * u + v * v)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.8
    if shape == "triangle":
        return (v <= 0.75) & (v >= -0.95 + 1.9 * au)
    if shape == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "diamond":
        return au + av <= 1.0
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "bar":
        return (au <= 1.0) & (av <= 0.38)
    if shape == "hexagon":
        return np.maximum(au * 0.866 + av * 0.5, av) <= 0.87
    raise ValueError(f"unknown shape {shape!r}")


def _place(rng: np.random.Generator, size: int, radius: float, yy: np.ndarray, xx: np.ndarray,
           shape: str) -> np.ndarray:
    """Mask of ``shape`` of pixel radius ``radius`` at a random position and rotation."""
    cy, cx = rng.uniform(radius, size - radius, 2)
    angle = rng.uniform(0, 2 * np.pi)
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = (yy - cy) / radius, (xx - cx) / radius
    return _shape_mask(shape, c * dx + s * dy, -s * dx + c * dy)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H,W,3) textured clutter: smooth colour noise, grain and random strokes."""
    coarse = rng.uniform(0.2, 0.6, (3, 6, 6)).astype(np.float32)
    smooth = torch.nn.functional.interpolate(
        torch.from_numpy(coarse)[None], size=(size, size), mode="bicubic", align_corners=False
    )[0].permute(1, 2, 0).numpy()
    img = smooth + rng.normal(0, 0.05, (size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(rng.integers(3, 7)):  # thin strokes in muted colours
        y0, x0, y1, x1 = rng.uniform(0, size, 4)
        d = np.abs((y1 - y0) * (xx - x0) - (x1 - x0) * (yy - y0)) / (np.hypot(y1 - y0, x1 - x0) + 1e-6)
        img[d <= 0.7] = rng.uniform(0.15, 0.65, 3)
    return img


# Below this side a drawn target shape can cover no pixel at all (an empty mask).
MIN_IMAGE_SIZE = 8


def render(seed: int, split: str, index: int, image_size: int = 64,
           label: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Render one item: (H,W,3) uint8 image, (H,W) bool target mask, class index.

    ``label``: draw this class instead of a random one (the rest of the scene is the same draw).
    """
    rng = np.random.default_rng([seed, SPLITS[split], index, image_size])
    size = image_size
    drawn = int(rng.integers(len(CLASSES)))
    label = drawn if label is None else int(label)
    img = _background(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    others = [k for k in range(len(CLASSES)) if k != label]
    for k in rng.choice(others, size=int(rng.integers(2, 5)), replace=True):
        m = _place(rng, size, rng.uniform(0.07, 0.12) * size, yy, xx, CLASSES[k][1])
        img[m] = np.asarray(CLASSES[k][2]) * rng.uniform(0.85, 1.0)
    mask = _place(rng, size, rng.uniform(0.2, 0.33) * size, yy, xx, CLASSES[label][1])
    img[mask] = np.asarray(CLASSES[label][2]) * rng.uniform(0.85, 1.0) + rng.normal(0, 0.03, (int(mask.sum()), 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), mask, label


def normalized_batch(n: int, image_size: int, seed: int = 0, split: str = "test") -> tuple[Tensor, Tensor, Tensor]:
    """The first ``n`` items of a split, rendered afresh, as a model sees them: normalized images
    (n,3,S,S), labels (n,), object masks (n,1,S,S) float (the tests' and benchmarks' batch)."""
    images, masks, labels = zip(*[render(seed, split, i, image_size) for i in range(n)])
    x = normalize(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255).contiguous()
    return x, torch.tensor(labels), torch.from_numpy(np.stack(masks))[:, None].float()


def generate_split(seed: int, split: str, size: int, image_size: int) -> dict[str, torch.Tensor]:
    """All items of a split as uint8 images (N,3,H,W), bool masks (N,1,H,W), labels (N,)."""
    images = np.empty((size, image_size, image_size, 3), np.uint8)
    masks = np.empty((size, image_size, image_size), bool)
    labels = np.empty(size, np.int64)
    lines = ProgressLines(log)
    for i in range(size):
        images[i], masks[i], labels[i] = render(seed, split, i, image_size)
        if lines.due():
            lines.log("generating the synthetic %s split: %d/%d images", split, i + 1, size)
    return {
        "images": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        "masks": torch.from_numpy(masks)[:, None],
        "labels": torch.from_numpy(labels),
    }


def load_split(seed: int, split: str, size: int, image_size: int, cache_dir: str | os.PathLike | None) -> dict:
    """Generate a split, or load it from ``cache_dir`` when it was generated before."""
    if cache_dir is None:
        return generate_split(seed, split, size, image_size)
    key = hashlib.sha1(f"v1-{seed}-{split}-{size}-{image_size}".encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"synthetic-{split}-{key}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a torn or foreign file: regenerate it
            pass
    log.info("generating the synthetic %s split (%d images of %d px), once: cached as %s", split, size, image_size, path)
    data = generate_split(seed, split, size, image_size)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(data, tmp)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write the synthetic data cache {path.parent} ({exc.strerror or exc}): set "
                        f"paths.cache (or data.cache_dir) to a writable folder") from exc
    return data


class SyntheticShapes(Dataset):
    """One split of the synthetic data set.

    Items are dicts: ``image`` (3,H,W) normalized float, ``label`` int,
    ``mask`` (1,H,W) float in {0,1}, ``class_name`` str, ``index`` int.
    """

    classes = CLASS_NAMES

    def __init__(self, split: str = "train", size: int = 6000, image_size: int = 64, seed: int = 0,
                 cache_dir: str | os.PathLike | None = None):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
        self.split = split
        data = load_split(seed, split, size, image_size, cache_dir)
        self.images, self.masks, self.labels = data["images"], data["masks"], data["labels"]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        label = int(self.labels[i])
        return {
            "image": normalize(self.images[i].float() / 255.0),
            "label": label,
            "mask": self.masks[i].float(),
            "class_name": CLASS_NAMES[label],
            "index": i,
        }
