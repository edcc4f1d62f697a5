"""Fixtures of the command tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from harmony_cli.store import Store


@pytest.fixture
def store_with_a_study(tmp_path) -> Path:
    """An SQLite store holding one earlier study (two examples, no labels); its file."""
    db = tmp_path / "harmony.db"
    store = Store.open(f"sqlite:///{db}")
    study = store.get_or_create_study("earlier", config={"higher_is_better": {"rma": True}}, image_dir=str(tmp_path))
    cell = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
    store.add_examples(study.id, [dict(cell, source_key=str(k), class_name="c", image_path=f"{k}.png",
                                       original_map_path=f"{k}o.png", finetuned_map_path=f"{k}f.png",
                                       original_score=0.2, finetuned_score=0.4) for k in range(2)])
    store.close()
    return db
