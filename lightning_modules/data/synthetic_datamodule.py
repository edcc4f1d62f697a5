"""LightningDataModule of the embedded synthetic data set."""
from __future__ import annotations

import os

from ..errors import UserError
from .base import HarmonyDataModule
from .synthetic import CLASS_NAMES, MIN_IMAGE_SIZE, SyntheticShapes


class SyntheticDataModule(HarmonyDataModule):
    """Train/val/test splits of :class:`SyntheticShapes`, cached under ``cache_dir``."""

    has_masks = True

    def __init__(self, name: str = "synthetic", num_classes: int = len(CLASS_NAMES), image_size: int = 64,
                 train_size: int = 6000, val_size: int = 1000, test_size: int = 1000, seed: int = 0,
                 batch_size: int = 64, num_workers: int = 0, cache_dir: str | os.PathLike | None = None):
        if num_classes != len(CLASS_NAMES):
            raise ValueError(f"the synthetic data set has {len(CLASS_NAMES)} classes, not {num_classes}: "
                             f"leave data.num_classes at {len(CLASS_NAMES)}")
        for key, value, least in (("image_size", image_size, MIN_IMAGE_SIZE), ("train_size", train_size, 1),
                                  ("val_size", val_size, 1), ("test_size", test_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UserError(f"data.{key}={value!r} must be a whole number of at least {least}")
        super().__init__(name, num_classes, batch_size, num_workers)
        self.image_size = image_size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.seed = seed
        self.cache_dir = cache_dir

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    def fingerprint(self) -> str:
        return f"synthetic-v1-seed{self.seed}-{self.image_size}px-" + "-".join(str(n) for n in self.sizes.values())

    def setup(self, stage: str | None = None) -> None:
        for split, size in self.sizes.items():
            if getattr(self, f"{split}_set") is None:
                setattr(self, f"{split}_set", SyntheticShapes(split, size, self.image_size, self.seed, self.cache_dir))
