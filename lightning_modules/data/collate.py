"""Batch collation that drops unreadable items (returned as ``None``)."""
from __future__ import annotations

from torch.utils.data import default_collate


def collate_skip_none(items: list):
    """``default_collate`` over the items that are not ``None``; ``None`` if none are left."""
    kept = [item for item in items if item is not None]
    return default_collate(kept) if kept else None
