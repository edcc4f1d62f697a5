"""import-legacy speed: bulk import in one transaction vs. one transaction per row.

    python benchmarks/bench_import_legacy.py [--quick]

Data: a legacy database in the original app's schema, generated here (the published
study's shape: 30 cells x 200 examples, 5 annotators labelling every example; --quick: 20
per cell). ours = ``import_legacy`` into a fresh SQLite store; reference = the same
examples and labels stored row by row (one ``Store.add_examples`` call per row, ``Store.answer``: one
transaction each) for a tenth of the examples. ratio = reference seconds per row / ours
seconds per row, target >= 5 (the import is bulk work). The metric classes (and torch) are
imported before timing: a fixed cost per command, not per row. ``main()`` returns the rows as dicts.
"""
from __future__ import annotations


import argparse
import sqlite3
import tempfile
import time
from itertools import product
from pathlib import Path

from rich.table import Table

from harmony_cli.store import Store
from harmony_cli.study.import_legacy import (ATTRIBUTION_NAMES, BACKBONE_NAMES, CHOICE_NAMES, METRIC_NAMES,
                                             import_legacy, metric_directions)
from harmony_cli.study.legacy_format import read_legacy
from console import table_console  # benchmarks/console.py, beside this file


def add_example(store, study_id: int, **fields) -> int:
    """One example in its own transaction (the row-by-row reference)."""
    return store.add_examples(study_id, [fields])[0]

USERS = 5


def write_legacy_db(path: Path, per_cell: int) -> None:
    """A database of the original app: every cell of the published grid, ``per_cell`` examples, full labels."""
    conn = sqlite3.connect(path)
    for kind in ("dataset", "experiment", "cnnmodel", "relevancymethod"):
        conn.execute(f"CREATE TABLE relevavance_{kind} (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE relevavance_example (id INTEGER PRIMARY KEY, dataset_id INT, experiment_id INT, "
                 "cnn_model_id INT, relevancy_method_id INT, image TEXT, original TEXT, learn TEXT, prediction TEXT)")
    conn.execute("CREATE TABLE relevavance_label (id INTEGER PRIMARY KEY, user_id INT, example_id INT, choice TEXT)")
    conn.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username TEXT)")
    conn.execute("INSERT INTO relevavance_dataset VALUES (1, 'ImageNet')")
    for table, names in (("experiment", METRIC_NAMES), ("cnnmodel", BACKBONE_NAMES),
                         ("relevancymethod", ATTRIBUTION_NAMES)):
        conn.executemany(f"INSERT INTO relevavance_{table} VALUES (?, ?)", enumerate(names, 1))
    conn.executemany("INSERT INTO auth_user VALUES (?, ?)", [(u, f"user{u}") for u in range(1, USERS + 1)])
    examples, labels, choices = [], [], list(CHOICE_NAMES)
    cells = product(range(1, len(METRIC_NAMES) + 1), range(1, len(BACKBONE_NAMES) + 1),
                    range(1, len(ATTRIBUTION_NAMES) + 1))
    for (metric, backbone, attribution), k in product(cells, range(per_cell)):
        pk = len(examples) + 1
        base = f"data/{metric}/{backbone}/{attribution}/{k}"
        examples.append((pk, 1, metric, backbone, attribution, f"{base}_image.png", f"{base}_original.png",
                         f"{base}_learn.png", f"class {k % 10}"))
        first = len(labels)
        labels += [(first + u, u, pk, choices[(pk + u) % 3]) for u in range(1, USERS + 1)]
    conn.executemany("INSERT INTO relevavance_example VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", examples)
    conn.executemany("INSERT INTO relevavance_label VALUES (?, ?, ?, ?)", labels)
    conn.commit()
    conn.close()


def row_by_row_seconds(store: Store, legacy_path: Path, fraction: int) -> tuple[float, int]:
    """Seconds to store every ``fraction``-th example and its labels one transaction each; rows written."""
    legacy = read_legacy(legacy_path)
    study = store.get_or_create_study("row-by-row", image_dir="/nowhere", source="legacy")
    annotators = {u: store.add_annotator(name, None, active=False).id for u, name in legacy.users.items()}
    chosen = {e["pk"]: e for e in legacy.examples[::fraction]}
    start, rows = time.perf_counter(), 0
    ids = {}
    for pk, e in chosen.items():
        ids[pk] = add_example(store, study.id, dataset="imagenet", metric=str(e["experiment"]),
                                    backbone=str(e["cnnmodel"]), attribution=str(e["relevancymethod"]),
                                    source_key=str(pk), class_name=e["prediction"], image_path=e["image"],
                                    original_map_path=e["original"], finetuned_map_path=e["learn"])
        rows += 1
    for _, user, example, choice in legacy.labels:
        if example in ids:
            store.answer(annotators[user], ids[example], CHOICE_NAMES[choice], source="import")
            rows += 1
    return time.perf_counter() - start, rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 examples per cell instead of 200")
    args = parser.parse_args(argv)
    per_cell = 20 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        legacy_path = Path(tmp) / "legacy.sqlite3"
        write_legacy_db(legacy_path, per_cell)
        metric_directions(set(METRIC_NAMES.values()))  # warm-up: importing the metric classes (torch) is per command
        store = Store.open(f"sqlite:///{Path(tmp) / 'ours.db'}")
        start = time.perf_counter()
        report = import_legacy(store, legacy_path, image_dir=Path(tmp) / "images")
        ours_s = time.perf_counter() - start
        store.close()
        ours_rows = report.examples_added + report.labels_added
        store = Store.open(f"sqlite:///{Path(tmp) / 'reference.db'}")
        reference_s, reference_rows = row_by_row_seconds(store, legacy_path, fraction=10)
        store.close()
    ratio = (reference_s / reference_rows) / (ours_s / ours_rows)
    row = {"benchmark": "import-legacy", "case": f"{report.examples} examples, {report.labels_added} labels",
           "ours_s": ours_s, "reference_s": reference_s, "ratio": ratio, "target": ">= 5", "ok": ratio >= 5,
           "ours_rows_per_s": ours_rows / ours_s, "reference_rows_per_s": reference_rows / reference_s}
    table = Table(title="import-legacy: one bulk transaction vs. one transaction per row (reference on 1/10)")
    for column in ("case", "ours s", "reference s", "ours rows/s", "reference rows/s", "ratio", "target", "ok"):
        table.add_column(column, justify="left" if column in ("case", "target", "ok") else "right")
    table.add_row(row["case"], f"{ours_s:.2f}", f"{reference_s:.2f}", f"{row['ours_rows_per_s']:.0f}",
                  f"{row['reference_rows_per_s']:.0f}", f"{ratio:.1f}", row["target"], "yes" if row["ok"] else "NO")
    table_console().print(table)
    return [row]


if __name__ == "__main__":
    main()
