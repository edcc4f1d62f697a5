"""The data of a fine-tuning run as a LightningDataModule: the data set's train split in shuffled
batches of ``finetune.batch_size``, and its validation subset (the same first images every time)."""
from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import collate_skip_none


class FinetuneData(pl.LightningDataModule):
    """Loaders of a fine-tuning run over a harmony data module (``split(name) -> Dataset``).

    data: the data set's module (``instantiate(cfg.data)``); its ``num_workers`` are used.
    batch_size / val_batch_size: images per training / validation batch (per process).
    val_size: the first ``val_size`` images of the val split (None: all of it).
    """

    def __init__(self, data, batch_size: int, val_batch_size: int, val_size: int | None = None):
        super().__init__()
        self.data = data
        self.batch_size, self.val_batch_size = int(batch_size), int(val_batch_size)
        self.val_size = None if val_size is None else int(val_size)

    @property
    def val_set(self) -> Dataset:
        """The validation subset: the first ``val_size`` items of the val split."""
        dataset = self.data.split("val")
        if self.val_size is None or self.val_size >= len(dataset):
            return dataset
        return Subset(dataset, range(self.val_size))

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        workers = int(getattr(self.data, "num_workers", 0))
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          collate_fn=collate_skip_none, persistent_workers=workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.data.split("train"), self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.val_batch_size, shuffle=False)
