"""Which test images become examples: a seeded order, read in batches, kept when both models are right."""
from __future__ import annotations

from typing import Iterator

import torch

from lightning_modules.data import collate_skip_none


def seeded_order(n: int, seed: int) -> list[int]:
    """A permutation of range(n) that depends only on ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()


@torch.no_grad()
def correctness(original: torch.nn.Module, finetuned: torch.nn.Module, images: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, list[str | None]]:
    """Which images both models classify correctly: (keep (B,) bool, skip reason or None per image)."""
    original_ok = original(images).argmax(1) == labels
    finetuned_ok = finetuned(images).argmax(1) == labels
    reasons: list[str | None] = []
    for o, f in zip(original_ok.tolist(), finetuned_ok.tolist()):
        reasons.append(None if o and f else "both models wrong" if not (o or f)
                       else "original wrong" if not o else "fine-tuned wrong")
    return original_ok & finetuned_ok, reasons


class _Indexed(torch.utils.data.Dataset):
    """Items of ``dataset`` at ``indices``, each tagged with its split index (None items stay None)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        return (index, self.dataset[index])


def _collate(pairs: list):
    """(split indices of unreadable items, batch of the readable ones or None)."""
    unreadable = [index for index, item in pairs if item is None]
    kept = [dict(item, _split_index=index) for index, item in pairs if item is not None]
    return unreadable, collate_skip_none(kept)


def iter_test_batches(datamodule, indices: list[int], batch_size: int) -> Iterator[tuple[list[int], dict | None]]:
    """Batches of the test split at ``indices``, in that order (with the data module's workers)."""
    workers = int(getattr(datamodule, "num_workers", 0) or 0)
    loader = torch.utils.data.DataLoader(_Indexed(datamodule.split("test"), indices), batch_size=batch_size,
                                         shuffle=False, num_workers=workers, collate_fn=_collate)
    yield from loader
