"""`harmony import-legacy`: the published study's database, a fixtures folder, and files that are neither."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from harmony_cli.study.import_legacy import import_legacy
from harmony_cli.main import app
from harmony_cli.store import Annotator, Example, Label, LabelAudit, Store
from tests.helpers import run_main
from tests.legacy_fixtures import write_fixtures
from tests.conftest import REPO

runner = CliRunner()
CHOICE = {"learn": "finetuned", "original": "original", "neither": "neither"}


@pytest.fixture(autouse=True)
def tmp_outputs(tmp_path, monkeypatch) -> Path:
    """Imported images go under the config's outputs folder: keep it in tmp."""
    monkeypatch.setenv("HARMONY_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs"


def counts(store: Store) -> dict:
    with store.read() as session:
        return {table.__name__: session.scalar(select(func.count()).select_from(table))
                for table in (Example, Label, LabelAudit, Annotator)}


def stored_labels(store: Store) -> set[tuple[str, str, str]]:
    """(annotator, legacy example id, choice) of every label."""
    query = (select(Annotator.name, Example.source_key, Label.choice)
             .join(Annotator, Annotator.id == Label.annotator_id).join(Example, Example.id == Label.example_id))
    with store.read() as session:
        return set(session.execute(query).all())


def test_published_study_imports_completely_and_only_once(db_url, legacy_db):
    digest = hashlib.sha256(legacy_db.read_bytes()).hexdigest()
    store = Store.open(db_url)
    report = import_legacy(store, legacy_db)

    assert (report.examples, report.examples_added, report.cells) == (6000, 6000, 30)
    assert (report.label_rows, report.duplicates_collapsed, report.labels_added) == (30007, 7, 30000)
    assert len(report.annotators_created) == 5 and report.unknown_names == {}
    assert report.examples_without_images == 6000  # the images were never published
    cells = store.cells()
    assert len(cells) == 30 and {(c["examples"], c["labels"], c["annotators"]) for c in cells} == {(200, 1000, 5)}
    assert {c["metric"] for c in cells} == {"road", "irof", "ris", "focus", "rma"}
    assert {c["backbone"] for c in cells} == {"vgg16", "resnet18"}
    assert {c["attribution"] for c in cells} == {"gradcam", "guided_backprop", "excitation_backprop"}
    assert {c["dataset"] for c in cells} == {"imagenet"}
    # each metric's direction, as its paper defines it: RIS (an instability) is better lower
    assert store.study(report.study).config["higher_is_better"] == {"road": True, "irof": True, "ris": False,
                                                                    "focus": True, "rma": True}

    # Every distinct legacy answer is there once, with `learn` read as `finetuned`.
    conn = sqlite3.connect(f"{legacy_db.resolve().as_uri()}?mode=ro", uri=True)
    legacy = {(user, str(example), CHOICE[choice]) for user, example, choice in conn.execute(
        "SELECT u.username, l.example_id, l.choice FROM relevavance_label l JOIN auth_user u ON u.id = l.user_id")}
    legacy_paths = dict(conn.execute("SELECT id, learn FROM relevavance_example"))
    conn.close()
    assert stored_labels(store) == legacy
    with store.read() as session:
        annotators = list(session.scalars(select(Annotator)))
        assert all(not a.active and a.password_hash is None for a in annotators)
        assert Counter(session.scalars(select(LabelAudit.source))) == {"import": 30000}
        assert session.scalar(select(func.count()).select_from(Label).where(Label.left_map.is_not(None))) == 0
        example = session.scalar(select(Example).where(Example.source_key == "17"))
        assert example.finetuned_map_path == legacy_paths[17]  # image paths are kept

    before = counts(store)
    store.close()
    result = runner.invoke(app, ["import-legacy", str(legacy_db), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "6000 examples in 30 cells, 0 new" in result.output
    assert "7 duplicates collapsed" in result.output and "0 new, 30000 already in the store" in result.output
    assert "6000 examples without images" in result.output
    store = Store.open(db_url)
    assert counts(store) == before  # the second import changed nothing
    store.close()
    assert hashlib.sha256(legacy_db.read_bytes()).hexdigest() == digest  # the source is only read
    assert not list(legacy_db.parent.glob(legacy_db.name + "-*"))  # no -wal/-journal left beside it


def test_fixtures_folder_imports_with_images_and_only_once(db_url, tmp_path, tmp_outputs):
    fixtures, images = tmp_path / "harmony_django_fixtures", tmp_path / "legacy_images"
    write_fixtures(fixtures)
    for name in ("data/e1/1_image.png", "data/e1/1_original.png", "data/e1/1_learn.png", "data/e1/2_image.png"):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(b"\x89PNG fake " + name.encode())
    args = ["import-legacy", str(fixtures), "--db", db_url, "--images", str(images), "--study", "pilot"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "study 'pilot' (fixtures): 4 examples in 2 cells, 4 new" in out
    assert "unknown experiment names kept as they are: MysteryLearnableMetric" in out
    assert "5 rows read, 1 duplicates collapsed to the latest, 3 new" in out
    assert "1 label rows skipped: unknown choice 'maybe'" in out
    assert "4 files copied" in out and "3 examples without images" in out

    store = Store.open(db_url)
    study = store.study("pilot")
    assert study.source == "legacy"
    assert study.config["higher_is_better"] == {"rma": True}  # the unknown metric has no direction
    assert {c["metric"]: c["examples"] for c in store.cells("pilot")} == {"rma": 2, "MysteryLearnableMetric": 2}
    assert stored_labels(store) == {("eve", "1", "original"), ("eve", "2", "neither"), ("mallory", "3", "finetuned")}
    assert sorted(a.name for a in store.annotators()) == ["eve", "mallory"]  # not the user without labels
    with store.read() as session:
        example = session.scalar(select(Example).where(Example.source_key == "1"))
    assert (example.class_name, example.original_map_path) == ("class 1", "data/e1/1_original.png")
    copied = Path(study.image_dir) / example.finetuned_map_path
    assert copied.read_bytes() == b"\x89PNG fake data/e1/1_learn.png"
    assert copied.is_relative_to(tmp_outputs)

    # An annotator re-answers in harmony; importing again changes nothing, that answer included.
    store.answer(store.annotator("eve").id, example.id, "neither")
    before = counts(store)
    store.close()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "4 new" not in out and "0 new, 3 already in the store" in out and "0 files copied" in out
    assert "1 labels in the store differ from the legacy file and were kept" in out
    store = Store.open(db_url)
    assert counts(store) == before
    assert store.label(store.annotator("eve").id, example.id).choice == "neither"
    store.close()


def cli_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``harmony_cli.main:main`` in-process: (exit status, stderr)."""
    code, _, err = run_main(monkeypatch, capsys, *args)
    return code, err


def test_files_that_are_not_a_harmony_study_give_one_line(tmp_path, monkeypatch, capsys):
    store_db = tmp_path / "store.db"
    text_file = tmp_path / "notes.sqlite3"
    text_file.write_text("hello\n" * 100)
    # The installed console script once: a real one-line error and exit status 2.
    harmony = REPO / ".venv" / "bin" / "harmony"
    command = [str(harmony)] if harmony.exists() else [sys.executable, "-m", "harmony_cli.main"]
    result = subprocess.run([*command, "import-legacy", str(text_file), "--db", str(store_db)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "is not a study of the original HARMONY app (not an SQLite database)" in result.stderr

    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    harmony_store = tmp_path / "harmony.db"
    Store.open(str(harmony_store)).close()
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    bad_json = tmp_path / "bad_fixtures"
    bad_json.mkdir()
    (bad_json / "example.json").write_text("{not json")
    cases = [
        (other, "no relevavance_example table"),
        (harmony_store, "already a harmony store"),
        (empty, "no relevavance.example objects"),
        (bad_json, "example.json is not JSON"),
        (tmp_path / "missing.sqlite3", "does not exist"),
    ]
    for path, expected in cases:
        code, err = cli_main(monkeypatch, capsys, "import-legacy", str(path), "--db", str(store_db))
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, (path, err)
    assert not store_db.exists()  # refused before the store was opened


def test_the_original_database_is_not_opened_as_a_store(tmp_path, monkeypatch, capsys, legacy_db):
    code, err = cli_main(monkeypatch, capsys, "studies", "--db", str(legacy_db))
    assert code == 2 and "database of the original HARMONY app" in err and "import-legacy" in err
    fixtures = tmp_path / "fx"
    write_fixtures(fixtures)
    code, err = cli_main(monkeypatch, capsys, "import-legacy", str(fixtures), "--db", str(tmp_path / "h.db"),
                         "--images", str(tmp_path / "nowhere"))
    assert code == 2 and "--images" in err and "is not a folder" in err


def test_import_writes_nothing_outside_its_folders(tmp_path, monkeypatch, capsys, tmp_outputs):
    """A study name with a path, a legacy path with `..`, a link out of --images: one line each, nothing written."""
    fixtures, images, outside = tmp_path / "fx", tmp_path / "images", tmp_path / "outside"
    write_fixtures(fixtures)
    outside.mkdir()
    (outside / "secret.txt").write_text("not an image of the study")
    (outside / "3_image.png").write_bytes(b"\x89PNG of another study")
    (images / "data" / "e1").mkdir(parents=True)
    (images / "data" / "e1" / "1_image.png").symlink_to(outside / "secret.txt")
    (images / "data" / "e2").symlink_to(outside, target_is_directory=True)   # a folder link out
    db = tmp_path / "h.db"

    def refused(*args: str, expected: str) -> None:
        code, err = cli_main(monkeypatch, capsys, "import-legacy", *args, "--db", str(db))
        assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
        assert not db.exists() or counts_of(db) == {"Example": 0, "Label": 0, "LabelAudit": 0, "Annotator": 0}

    for name in ("../../../escape/x", "a/b", "..", ".hidden", "x\\y"):
        refused(str(fixtures), "--study", name, expected="is not a study name")
    refused(str(fixtures), "--images", str(images), "--study", "pilot", expected="outside the folder")
    (images / "data" / "e1" / "1_image.png").unlink()
    refused(str(fixtures), "--images", str(images), "--study", "pilot", expected="outside the folder")  # e2/
    example = json.loads((fixtures / "example.json").read_text())
    example[0]["fields"]["original"] = "../../outside/secret.txt"
    (fixtures / "example.json").write_text(json.dumps(example))
    refused(str(fixtures), "--study", "pilot", expected="is not a relative path inside the image folder")
    assert not (tmp_path / "escape").exists() and not (tmp_outputs / "study_images").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["3_image.png", "secret.txt"]


def counts_of(db: Path) -> dict:
    store = Store.open(str(db))
    try:
        return counts(store)
    finally:
        store.close()
