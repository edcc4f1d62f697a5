"""Small helpers for tests that build a store by hand."""
from __future__ import annotations


def add_example(store, study_id: int, **fields) -> int:
    """One example through the store's bulk insert; its id."""
    return store.add_examples(study_id, [fields])[0]
