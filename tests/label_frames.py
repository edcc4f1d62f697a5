"""Label frames with a known answer for the analysis tests, and a store made from one."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tests.helpers import CELL, add_example


def boundary_frame() -> pd.DataFrame:
    """Two cells: 'boundary' with clustered p 0.029 and Holm p 0.058; 'null' with no preference."""
    rng = np.random.default_rng(23)
    rows = []
    for attr, p in (("boundary", (0.3, 0.3, 0.4)), ("null", (0.35, 0.3, 0.35))):
        for e in range(60):
            lean = rng.dirichlet(np.array(p) * 4)
            rows += [{**CELL, "attribution": attr, "example_id": f"{attr}{e}", "annotator": f"a{a}",
                      "choice": ("original", "neither", "finetuned")[rng.choice(3, p=lean)]} for a in range(5)]
    return pd.DataFrame(rows)


def store_from_frame(url: str, name: str, frame: pd.DataFrame, config: dict | None = None) -> None:
    """Add ``frame``'s labels to the store at ``url`` as study ``name`` (examples and annotators created)."""
    from harmony_cli.store import Store

    store = Store.open(url)
    study = store.get_or_create_study(name, config=config or {}, image_dir=None)
    examples = frame.drop_duplicates("example_id")
    ids = {row.example_id: add_example(store, study.id, dataset=row.dataset, metric=row.metric, backbone=row.backbone,
                                              attribution=row.attribution, source_key=str(row.example_id),
                                              position=i, class_name="c")
           for i, row in enumerate(examples.itertuples())}
    annotators = {a: (store.annotator(a) or store.add_annotator(a, None)).id for a in frame.annotator.unique()}
    store.add_labels([{"annotator_id": annotators[r.annotator], "example_id": ids[r.example_id], "choice": r.choice}
                      for r in frame.itertuples()], source="cli")
    store.close()
