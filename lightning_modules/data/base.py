"""Common shape of every harmony data module."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .collate import collate_skip_none
from .transforms import denormalize


class HarmonyDataModule(pl.LightningDataModule):
    """A LightningDataModule whose splits yield dict batches.

    Batches: ``image`` (B,3,H,W), ``label`` (B,), ``class_name`` list[str],
    ``index`` (B,), and ``mask`` (B,1,H,W) when :attr:`has_masks`.
    Subclasses set ``train_set``, ``val_set`` and ``test_set`` in :meth:`setup`.
    """

    has_masks: bool = False

    def __init__(self, name: str, num_classes: int, batch_size: int = 64, num_workers: int = 0):
        super().__init__()
        self.name = name
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def class_names(self) -> list[str]:
        raise NotImplementedError

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """This module's images (ImageNet-normalized unless a subclass says otherwise) as [0,1] RGB for display."""
        return denormalize(x)

    def fingerprint(self) -> str:
        """What identifies this data set's content (keys cached models and splits)."""
        return self.name

    def split(self, name: str) -> Dataset:
        """The dataset of split ``name`` (train, val or test), set up on first use."""
        if getattr(self, f"{name}_set", None) is None:
            self.setup()
        return getattr(self, f"{name}_set")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=collate_skip_none,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.split("val"), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.split("test"), shuffle=False)
