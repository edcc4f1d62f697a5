"""A tiny study for the annotation page's tests: two cells, PNGs written with PIL.

The files are named the way the original app named them (``..._original.png``,
``..._learn.png``), so any leak of a path into the page shows up in the blinding checks.
Original maps are red, fine-tuned maps blue: a test can tell from the pixels which one a
side shows.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image

from harmony_cli.analysis.looks import after_answer
from harmony_cli.store import Store

RED, BLUE = (220, 30, 30), (30, 30, 220)
CELLS = ({"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam", "n": 3},
         {"dataset": "synthetic", "metric": "focus", "backbone": "tiny", "attribution": "gradcam", "n": 2})
PASSWORD = "correct horse"


def _png(path: Path, color: tuple[int, int, int], size: int = 16) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path)
    return path.name


def make_study(db_url: str, image_dir: Path, instructions_first: bool = False) -> dict:
    """A study of two cells (3 and 2 examples) and three annotators: ana, ben (active), cy (inactive),
    each assigned the whole study.

    ``instructions_first``: whether the page shows the instructions and practice pair before the first
    example (webui/instructions.py); off by default, so that tests of the examples start on one.

    Returns {"study_id", "ana", "ben", "cy" (ids), "cells": [[example ids in order] per cell]}.
    """
    store = Store.open(db_url)
    study = store.get_or_create_study("webui-test", image_dir=str(image_dir))
    store.update_study_config(study.name, instructions_first=instructions_first)
    cells = []
    for cell_number, cell in enumerate(CELLS):
        key = {k: cell[k] for k in ("dataset", "metric", "backbone", "attribution")}
        ids = []
        for i in range(cell["n"]):
            stem = f"{cell['metric']}_{i}"
            shade = 40 + 60 * i
            [example_id] = store.add_examples(study.id, [dict(
                **key, source_key=stem, position=i, class_name=f"shape-{cell_number}-{i}",
                image_path=_png(image_dir / f"{stem}_image.png", (shade, 200, shade)),
                original_map_path=_png(image_dir / f"{stem}_original.png", RED),
                finetuned_map_path=_png(image_dir / f"{stem}_learn.png", BLUE),
                original_score=0.5, finetuned_score=0.7, run="runs/finetune/0")])
            ids.append(example_id)
        cells.append(ids)
    people = {name: store.add_annotator(name, PASSWORD, active=active).id
              for name, active in (("ana", True), ("ben", True), ("cy", False))}
    for name in people:
        store.assign(name, "webui-test")
    store.close()
    return {"study_id": study.id, "cells": cells, **people}


def make_load_study(db_url: str, image_dir: Path, annotators: int, examples: int) -> dict:
    """One cell of ``examples`` examples (class names ``shape-<i>``) and ``annotators`` active accounts
    ``a0``, ``a1``, ... (password PASSWORD) assigned the study, for many sessions at once.

    Returns {"study_id", "annotators": {name: id}, "examples": {class name: example id}}.
    """
    with Store.open(db_url) as store:
        study = store.get_or_create_study("webui-load", image_dir=str(image_dir))
        store.update_study_config(study.name, instructions_first=False)  # straight to the examples
        cell = {"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam"}
        rows = [dict(cell, source_key=f"e{i}", position=i, class_name=f"shape-{i}",
                     image_path=_png(image_dir / f"e{i}_image.png", (40 + i % 200, 200, 40)),
                     original_map_path=_png(image_dir / f"e{i}_original.png", RED),
                     finetuned_map_path=_png(image_dir / f"e{i}_learn.png", BLUE)) for i in range(examples)]
        ids = store.add_examples(study.id, rows)
        people = {f"a{i}": store.add_annotator(f"a{i}", PASSWORD).id for i in range(annotators)}
        for name in people:
            store.assign(name, "webui-load")
    return {"study_id": study.id, "annotators": people,
            "examples": {row["class_name"]: example_id for row, example_id in zip(rows, ids)}}



@contextmanager
def copied_study(template: tuple[Path, dict], tmp_path: Path, monkeypatch) -> Iterator[dict]:
    """A test's own copy of a template study (folder with harmony.db and images/, make_study's info):
    HARMONY_DB_URL points the page at it; yields the info with ``url``, an open ``store`` and ``image_dir``."""
    folder, info = template
    shutil.copy(folder / "harmony.db", tmp_path / "harmony.db")
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    monkeypatch.setenv("HARMONY_DB_URL", url)
    with Store.open(url) as store:
        yield {**info, "url": url, "store": store, "image_dir": folder / "images"}


O, N, F = "original", "neither", "finetuned"
# (annotator, cell, example index, choice, map shown left, response ms)
DASHBOARD_SEED = [("ana", 0, 0, O, O, 2000), ("ana", 0, 1, F, O, 4000), ("ana", 0, 2, N, F, 30000),
                  ("ben", 0, 0, F, F, 1000), ("ben", 1, 0, O, F, 3000)]


def seed_dashboard_study(url: str, image_dir: Path) -> dict:
    """make_study's store with an admin ``root``, labels_per_example 2 and the DASHBOARD_SEED labels."""
    info = make_study(url, image_dir)
    with Store.open(url) as store:
        info["root"] = store.add_annotator("root", PASSWORD, admin=True).id
        store.update_study_config("webui-test", labels_per_example=2)
        for who, cell, index, choice, left, ms in DASHBOARD_SEED:
            store.answer(info[who], info["cells"][cell][index], choice, left_map=left, response_ms=ms)
    return info


SEQUENTIAL_DESIGN = {"design": "sequential", "sequential": {"look_every": 5, "max_labels_per_cell": 40}}


def make_sequential_study(db_url: str, image_dir: Path, examples: int = 12, seeders: int = 6) -> dict:
    """A sequential study "webui-sequential" (a look every 5 labels, at most 40 per cell) of two cells (rma,
    focus) of ``examples`` examples, 8 labels per example; ana (who annotates in the test), ``seeders`` accounts
    s0, s1, ... whose labels the test writes through the store, all assigned; and an admin ``root``.

    Returns {"study_id", "ana", "root", "seeders": [ids], "cells": {metric: [example ids in order]}}.
    """
    with Store.open(db_url) as store:
        study = store.get_or_create_study("webui-sequential", image_dir=str(image_dir),
                                          config={"labels_per_example": 8, "instructions_first": False,
                                                  **SEQUENTIAL_DESIGN})
        cells = {}
        for metric in ("rma", "focus"):
            cell = {"dataset": "synthetic", "metric": metric, "backbone": "tiny", "attribution": "gradcam"}
            cells[metric] = store.add_examples(study.id, [dict(
                cell, source_key=f"{metric}{i}", position=i, class_name=f"{metric}-shape-{i}",
                image_path=_png(image_dir / f"{metric}{i}_image.png", (40 + 10 * i, 200, 40)),
                original_map_path=_png(image_dir / f"{metric}{i}_original.png", RED),
                finetuned_map_path=_png(image_dir / f"{metric}{i}_learn.png", BLUE)) for i in range(examples)])
        people = {name: store.add_annotator(name, PASSWORD).id for name in ("ana", *(f"s{i}" for i in range(seeders)))}
        for name in people:
            store.assign(name, study.name)
        root = store.add_annotator("root", PASSWORD, admin=True).id
    return {"study_id": study.id, "ana": people["ana"], "root": root, "cells": cells,
            "seeders": [people[f"s{i}"] for i in range(seeders)]}


def decide_with_seeders(store: Store, info: dict, metric: str, choice: str = "finetuned") -> int:
    """The seeders answer the cell's examples, each seeder all of them in turn, all with ``choice``, until a look
    decides the cell (the looks run as after a page answer); how many labels that took."""
    cell = {"dataset": "synthetic", "metric": metric, "backbone": "tiny", "attribution": "gradcam"}
    given = 0
    for seeder in info["seeders"]:
        for example in info["cells"][metric]:
            # as the page does: an answer of a logged-in session (version 0), then the cell's due looks
            after_answer(store, store.answer(seeder, example, choice, session_version=0))
            given += 1
            if store.cell_decided(info["study_id"], cell):
                return given
    raise AssertionError(f"{given} labels of one choice did not decide the {metric} cell")
