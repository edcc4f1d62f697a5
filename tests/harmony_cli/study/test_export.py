"""``harmony export``: every label of a study, as the store holds it, in CSV, JSON lines, Parquet and
Label Studio's JSON export; pseudonymous, never a password hash; bad input is one line, exit 2."""
from __future__ import annotations


import json
import sqlite3
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from harmony_cli.store import Annotator, Example, Store
from tests.helpers import add_example, run_main

IMAGE_DIR = "/data/pilot"
CELL_RMA = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
CELL_FOCUS = dict(dataset="synthetic", metric="focus", backbone="tiny", attribution="gradcam")
# key -> (cell, class name, original score, finetuned score); e3 has no scores
EXAMPLES = {
    "e1": (CELL_RMA, "cat", 0.25, 0.75),
    "e2": (CELL_RMA, "dog", 0.5, 0.625),
    "e3": (CELL_RMA, "fox", None, None),
    "e4": (CELL_FOCUS, "owl", 0.125, 0.375),
}
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "root": "root-secret-3"}
# The labels the store must end with: (annotator, example, choice, left map shown, response ms, side picked).
# bob answered e1 twice: the second answer is the label.
ANSWERS = [
    ("alice", "e1", "original", "original", 1200, "left"),
    ("alice", "e2", "finetuned", "original", 800, "right"),
    ("alice", "e3", "neither", "finetuned", 3000, "neither"),
    ("alice", "e4", "finetuned", "finetuned", 950, "left"),
    ("bob", "e1", "finetuned", "original", 700, "right"),
    ("bob", "e2", "original", "finetuned", None, "right"),
    ("bob", "e4", "original", None, 400, None),          # side not recorded
    ("sim-1", "e1", "finetuned", "finetuned", 10, "left"),
    ("sim-1", "e2", "neither", "original", 10, "neither"),
]
SIMULATED = {"sim-1"}


def build_store(url: str) -> dict[str, int]:
    """The hand-made study ``pilot`` (plus a study ``other`` that must never leak); example ids."""
    store = Store.open(url)
    try:
        for name, password in PASSWORDS.items():
            store.add_annotator(name, password, admin=name == "root")
        store.add_annotator("sim-1", None, simulated=True)
        pilot = store.get_or_create_study("pilot", config={"examples_per_cell": 3}, image_dir=IMAGE_DIR)
        ids = {}
        for key, (cell, class_name, original, finetuned) in EXAMPLES.items():
            ids[key] = add_example(store, pilot.id, **cell, source_key=key, class_name=class_name,
                                         image_path=f"{key}-img.png", original_map_path=f"{key}-o.png",
                                         finetuned_map_path=f"{key}-f.png", original_score=original,
                                         finetuned_score=finetuned)
        other = store.get_or_create_study("other")
        ids["x1"] = add_example(store, other.id, **CELL_RMA, source_key="x1", class_name="eel")
        people = {a.name: a.id for a in store.annotators()}
        store.answer(people["bob"], ids["e1"], "original", left_map="original", response_ms=5000)  # changed below
        for name, key, choice, left, ms, _ in ANSWERS:
            store.answer(people[name], ids[key], choice, left_map=left, response_ms=ms,
                         source="simulation" if name in SIMULATED else "page")
        store.answer(people["alice"], ids["x1"], "original", left_map="original", response_ms=1)
        return ids
    finally:
        store.close()


@contextmanager
def opened(url: str):
    store = Store.open(url, create=False)
    try:
        yield store
    finally:
        store.close()


def cli_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``harmony_cli.main:main`` in-process: (exit status, stdout, stderr)."""
    return run_main(monkeypatch, capsys, *args)


def read_rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "csv":
        frame = pd.read_csv(path, keep_default_na=True)
    elif fmt == "parquet":
        frame = pd.read_parquet(path)
    else:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


def as_int(value):
    return None if value is None else int(value)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_gives_the_same_labels_as_the_store(db_url, tmp_path, monkeypatch, capsys, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="--format parquet needs pyarrow, which is not installed")
    ids = build_store(db_url)
    key_of = {v: k for k, v in ids.items()}
    out = tmp_path / f"pilot.{fmt}"
    code, stdout, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", fmt,
                                 "--out", str(out), "--names", "--db", db_url)
    assert (code, err) == (0, "")
    assert f"wrote {len(ANSWERS)} labels" in stdout
    rows = read_rows(out, fmt)
    assert len(rows) == len(ANSWERS)
    got = {(r["annotator_name"], key_of[int(r["example_id"])], r["choice"], r["left_map"], as_int(r["response_ms"]),
            r["chosen_side"]) for r in rows}
    assert got == set(ANSWERS)
    assert {r["study"] for r in rows} == {"pilot"}
    for r in rows:
        cell, class_name, original, finetuned = EXAMPLES[key_of[int(r["example_id"])]]
        assert {f: r[f] for f in cell} == cell and r["class_name"] == class_name
        assert (r["original_score"], r["finetuned_score"]) == (original, finetuned)
        assert bool(r["simulated"]) == (r["annotator_name"] in SIMULATED)
        assert datetime.fromisoformat(r["updated_at"]) >= datetime.fromisoformat(r["created_at"])
        assert datetime.fromisoformat(r["created_at"]).utcoffset() is not None  # timestamps say they are UTC
    # one pseudonym per annotator, none of them a login name
    by_name = {}
    for r in rows:
        by_name.setdefault(r["annotator_name"], set()).add(r["annotator"])
    assert all(len(p) == 1 for p in by_name.values())
    pseudonyms = {next(iter(p)) for p in by_name.values()}
    assert len(pseudonyms) == len(by_name) == 3 and not pseudonyms & (set(PASSWORDS) | {"sim-1"})


def test_without_names_no_login_name_appears_and_pseudonyms_are_stable(sqlite_url, tmp_path, monkeypatch, capsys):
    build_store(sqlite_url)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for out in (first, second):
        code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "jsonl",
                                "--out", str(out), "--db", sqlite_url)
        assert (code, err) == (0, "")
    assert first.read_bytes() == second.read_bytes()  # same store, same pseudonyms
    text = first.read_text(encoding="utf-8")
    assert all(name not in text for name in ("alice", "bob", "sim-1"))
    rows = read_rows(first, "jsonl")
    assert "annotator_name" not in rows[0]
    assert Counter(r["annotator"] for r in rows).most_common()[0][1] == 4  # alice's four labels under one name


def ls_schema(choices: list[str]) -> dict:
    """Label Studio's documented export shape (labelstud.io/guide/task_format), Choices results only."""
    result = {"type": "object", "required": ["from_name", "to_name", "type", "value"],
              "properties": {"from_name": {"type": "string"}, "to_name": {"type": "string"},
                             "type": {"const": "choices"},
                             "value": {"type": "object", "required": ["choices"],
                                       "properties": {"choices": {"type": "array", "minItems": 1,
                                                                  "items": {"enum": choices}}}}}}
    annotation = {"type": "object", "required": ["id", "result", "completed_by", "created_at", "updated_at"],
                  "properties": {"id": {"type": "integer"}, "result": {"type": "array", "items": result},
                                 "completed_by": {"type": "integer"}, "created_at": {"type": "string"},
                                 "updated_at": {"type": "string"}}}
    task = {"type": "object", "required": ["id", "data", "annotations"],
            "properties": {"id": {"type": "integer"}, "data": {"type": "object"},
                           "annotations": {"type": "array", "items": annotation}}}
    return {"type": "array", "items": task}


def test_label_studio_export_has_the_documented_shape_and_what_each_annotator_saw(sqlite_url, tmp_path,
                                                                                  monkeypatch, capsys):
    jsonschema = pytest.importorskip("jsonschema", reason="the shape check needs jsonschema")
    ids = build_store(sqlite_url)
    key_of = {v: k for k, v in ids.items()}
    out = tmp_path / "pilot.json"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "label-studio",
                            "--out", str(out), "--db", sqlite_url)
    assert (code, err) == (0, "")
    config = ET.fromstring(out.with_suffix(".xml").read_text(encoding="utf-8"))
    controls = config.findall(".//Choices")
    assert len(controls) == 1
    choices = [c.get("value") for c in controls[0].findall("Choice")]
    object_names = {e.get("name") for e in config if e.get("name")}
    tasks = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(tasks, ls_schema(choices))

    with opened(sqlite_url) as store, store.read() as session:
        people = {a.id: a.name for a in session.scalars(select(Annotator))}
    seen = set()
    for task in tasks:
        data = task["data"]
        key = key_of[data["example_id"]]
        assert data["image"] == f"{IMAGE_DIR}/{key}-img.png"
        assert {data["map_a"], data["map_b"]} == {f"{IMAGE_DIR}/{key}-o.png", f"{IMAGE_DIR}/{key}-f.png"}
        blob = json.dumps(data)
        assert "original" not in blob and "finetuned" not in blob  # blinded: data never names the maps
        assert data["maps_withheld"] is False
        left = "original" if data["map_a"].endswith("-o.png") else "finetuned"
        for annotation in task["annotations"]:
            result, = annotation["result"]
            assert result["from_name"] == controls[0].get("name") and result["to_name"] in object_names
            picked, = result["value"]["choices"]
            chosen = {"Map A": left, "Map B": "finetuned" if left == "original" else "original",
                      "Neither": "neither"}[picked]
            seen.add((people[annotation["completed_by"]], key, chosen, left if data["side_recorded"] else None))
    assert seen == {(name, key, choice, left) for name, key, choice, left, _, _ in ANSWERS}
    assert sum(len(t["annotations"]) for t in tasks) == len(ANSWERS)


def stored_hashes(url: str) -> list[str]:
    with opened(url) as store, store.read() as session:
        return [h for h in session.scalars(select(Annotator.password_hash)) if h]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet", "label-studio"])
def test_export_never_contains_a_password_hash(sqlite_url, tmp_path, monkeypatch, capsys, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="--format parquet needs pyarrow, which is not installed")
    build_store(sqlite_url)
    hashes = stored_hashes(sqlite_url)
    assert len(hashes) == len(PASSWORDS)
    folder = tmp_path / "export"
    folder.mkdir()
    out = folder / "pilot.out"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", fmt, "--names",
                            "--out", str(out), "--db", sqlite_url)
    assert (code, err) == (0, "")
    written = b"".join(p.read_bytes() for p in folder.iterdir())
    assert written
    for secret in [*hashes, *PASSWORDS.values(), "$argon2"]:
        assert secret.encode() not in written


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_study_format_or_path_is_one_line_and_writes_nothing(sqlite_url, tmp_path, monkeypatch, capsys):
    build_store(sqlite_url)
    out = tmp_path / "x.csv"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pliot", "--out", str(out), "--db", sqlite_url)
    assert_one_line_error(code, err, "pliot", "pilot")  # names what exists
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "xlsx", "--out",
                            str(out), "--db", sqlite_url)
    assert_one_line_error(code, err, "xlsx", "label-studio")
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--out",
                            str(tmp_path / "missing" / "x.csv"), "--db", sqlite_url)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--out", str(tmp_path),
                            "--db", sqlite_url)
    assert_one_line_error(code, err, "folder")
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--db", str(tmp_path / "none.db"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["harmony.db"]


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path):
    from harmony_cli.errors import UserError
    from harmony_cli.outputs import write_file

    target = tmp_path / "labels.csv"
    target.write_text("previous export\n")

    def write_half_then_fail(temp: Path) -> None:
        temp.write_text("half of a new")
        raise OSError(28, "No space left on device")

    with pytest.raises(UserError, match="No space left on device"):
        write_file(target, write_half_then_fail)
    assert target.read_text() == "previous export\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # no temporary file left behind


def test_published_study_exports_all_30000_labels(legacy_db, tmp_path, monkeypatch, capsys):
    store_db = tmp_path / "h.db"
    code, _, err = cli_main(monkeypatch, capsys, "import-legacy", str(legacy_db), "--study", "harmony-2024",
                            "--db", str(store_db))
    assert code == 0, err
    out = tmp_path / "published.csv"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "harmony-2024", "--names", "--out", str(out),
                            "--db", str(store_db))
    assert (code, err) == (0, "")
    frame = pd.read_csv(out)
    conn = sqlite3.connect(f"{legacy_db.resolve().as_uri()}?mode=ro", uri=True)
    legacy = set(conn.execute("SELECT u.username, l.example_id, l.choice FROM relevavance_label l "
                              "JOIN auth_user u ON u.id = l.user_id"))
    conn.close()
    learn_is_finetuned = {"original": "original", "learn": "finetuned", "neither": "neither"}
    expected = Counter((user, learn_is_finetuned.get(choice, choice)) for user, _, choice in legacy)
    assert len(frame) == 30000 == len(legacy)
    assert Counter(zip(frame["annotator_name"], frame["choice"])) == expected
    assert frame["example_id"].nunique() == 6000 and frame["annotator"].nunique() == 5
    assert not frame["simulated"].any() and frame["left_map"].isna().all()
    with opened(f"sqlite:///{store_db}") as store, store.read() as session:
        assert frame["example_id"].isin(list(session.scalars(select(Example.id)))).all()


def test_default_output_lives_under_harmony_outputs(sqlite_url, tmp_path, monkeypatch, capsys):
    build_store(sqlite_url)
    monkeypatch.setenv("HARMONY_OUTPUTS", str(tmp_path / "outs"))
    code, stdout, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "label-studio",
                                 "--db", sqlite_url)
    assert (code, err) == (0, "")
    written = tmp_path / "outs" / "exports" / "pilot.json"
    assert str(written) in stdout
    assert sorted(p.name for p in written.parent.iterdir()) == ["pilot.json", "pilot.xml"]


def test_parquet_without_pyarrow_names_what_to_install(sqlite_url, tmp_path, monkeypatch, capsys):
    build_store(sqlite_url)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    out = tmp_path / "pilot.parquet"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "parquet",
                            "--out", str(out), "--db", sqlite_url)
    assert_one_line_error(code, err, "pip install 'harmony[parquet]'")
    assert not out.exists()


def test_map_paths_that_name_the_map_are_withheld_from_label_studio_data(sqlite_url, tmp_path, monkeypatch, capsys):
    """Imported studies keep the original app's file names (``7_original.png``, ``7_learn.png``)."""
    store = Store.open(sqlite_url)
    try:
        study = store.get_or_create_study("legacy-like", image_dir="/data/old", source="legacy")
        example = add_example(store, study.id, **CELL_RMA, source_key="7", class_name="cat",
                                    image_path="cells/7_image.png", original_map_path="cells/7_original.png",
                                    finetuned_map_path="cells/7_learn.png")
        annotator = store.add_annotator("ann", None)
        store.answer(annotator.id, example, "finetuned", left_map=None)
    finally:
        store.close()
    out = tmp_path / "legacy.json"
    code, _, err = cli_main(monkeypatch, capsys, "export", "--study", "legacy-like", "--format", "label-studio",
                            "--out", str(out), "--db", sqlite_url)
    assert (code, err) == (0, "")
    task, = json.loads(out.read_text(encoding="utf-8"))
    data = task["data"]
    assert (data["map_a"], data["map_b"], data["maps_withheld"]) == (None, None, True)
    assert data["image"] == "/data/old/cells/7_image.png"
    assert "original" not in json.dumps(data) and "learn" not in json.dumps(data)
    picked, = task["annotations"][0]["result"][0]["value"]["choices"]
    # the key in meta still says which of map A / map B the chosen (fine-tuned) map is
    assert task["meta"]["harmony"]["map_a" if picked == "Map A" else "map_b"] == "finetuned"
