"""`harmony annotators ...` and `harmony studies`: through Typer's runner, and the real console entry for errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harmony_cli.main import app
from harmony_cli.store import Store
from tests.helpers import run_main
from tests.conftest import REPO

HARMONY = REPO / ".venv" / "bin" / "harmony"
runner = CliRunner()


def harmony(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The installed console entry, as a user runs it (one-line errors, exit status 2)."""
    command = [str(HARMONY)] if HARMONY.exists() else [sys.executable, "-m", "harmony_cli.main"]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, text=True, timeout=120)


def harmony_main(monkeypatch, capsys, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The console entry ``harmony_cli.main:main`` in this process (same error path, no interpreter start)."""
    code, out, err = run_main(monkeypatch, capsys, *args, stdin=stdin)
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def store_files(db: Path) -> bytes:
    """Everything SQLite keeps for ``db`` on disk (the file, its WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_add_prompts_twice_and_stores_only_an_argon2_hash(tmp_path):
    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "ana", "--db", str(db)],
                           input="Tr0ub4dor&3xyz\nTr0ub4dor&3xyz\n")
    assert result.exit_code == 0, result.output
    assert "added annotator ana" in result.output
    result = runner.invoke(app, ["annotators", "add", "root", "--admin", "--password-stdin", "--db", str(db)],
                           input="admin-password-42\n")
    assert result.exit_code == 0, result.output
    store = Store.open(str(db))
    ana, root = store.annotator("ana"), store.annotator("root")
    assert ana.password_hash.startswith("$argon2id$") and not ana.is_admin and ana.active
    assert root.is_admin
    assert store.authenticate("ana", "Tr0ub4dor&3xyz") is not None
    assert store.authenticate("root", "admin-password-42") is not None
    store.close()
    on_disk = store_files(db)
    assert b"Tr0ub4dor&3xyz" not in on_disk and b"admin-password-42" not in on_disk
    assert ana.password_hash.encode() in on_disk  # the check above looked at the real data


def test_prompt_mismatch_and_short_password_add_nobody(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "ana", "--db", str(db)],
                           input="first-password\nsecond-password\nfirst-password\nfirst-password\n")
    assert result.exit_code == 0 and "do not match" in result.output  # asked again after the mismatch
    result = harmony_main(monkeypatch, capsys, "annotators", "add", "ben", "--password-stdin", "--db", str(db),
                          stdin="short\n")
    assert_one_line_error(result, "at least 8")
    store = Store.open(str(db))
    assert store.authenticate("ana", "first-password") is not None and store.annotator("ben") is None
    store.close()


def test_list_deactivate_activate_and_set_password(tmp_path):
    db = tmp_path / "h.db"
    runner.invoke(app, ["annotators", "add", "ana", "--password-stdin", "--db", str(db)], input="first-pass\n")
    result = runner.invoke(app, ["annotators", "list", "--json", "--db", str(db)])
    [row] = json.loads(result.output)
    assert (row["name"], row["active"], row["can_log_in"], row["labels"]) == ("ana", True, True, 0)

    assert runner.invoke(app, ["annotators", "deactivate", "ana", "--db", str(db)]).exit_code == 0
    store = Store.open(str(db))
    assert store.authenticate("ana", "first-pass") is None
    result = runner.invoke(app, ["annotators", "set-password", "ana", "--password-stdin", "--db", str(db)],
                           input="second-pass\n")
    assert result.exit_code == 0 and "inactive" in result.output
    assert runner.invoke(app, ["annotators", "activate", "ana", "--db", str(db)]).exit_code == 0
    assert store.authenticate("ana", "first-pass") is None
    assert store.authenticate("ana", "second-pass") is not None
    store.close()
    result = runner.invoke(app, ["annotators", "list", "--db", str(db)])
    assert result.exit_code == 0 and "ana" in result.output


def test_annotator_errors_are_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    runner.invoke(app, ["annotators", "add", "ana", "--password-stdin", "--db", str(db)], input="long-enough\n")
    # The installed console script once (interpreter start is slow on a busy machine), then main() in-process.
    assert_one_line_error(harmony("annotators", "add", "ana", "--password-stdin", "--db", str(db),
                                  stdin="long-enough\n"), "exists already", "set-password ana")
    cli = lambda *args, stdin="": harmony_main(monkeypatch, capsys, *args, stdin=stdin)  # noqa: E731
    assert_one_line_error(cli("annotators", "set-password", "bob", "--password-stdin", "--db", str(db),
                              stdin="long-enough\n"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "deactivate", "bob", "--db", str(db)), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "list", "--db", str(tmp_path / "absent.db")), "no harmony store at")


def test_studies_lists_each_cell_with_exactly_the_documented_keys(db_url):
    store = Store.open(db_url)
    study = store.get_or_create_study("pilot")
    cell = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
    ids = store.add_examples(study.id, [dict(cell, source_key=str(i), class_name="c") for i in range(3)])
    store.add_examples(study.id, [dict(cell, attribution="guided_backprop", source_key="0", class_name="c")])
    ana, ben = store.add_annotator("ana", None).id, store.add_annotator("ben", None).id
    store.answer(ana, ids[0], "original")
    store.answer(ana, ids[1], "finetuned")
    store.answer(ben, ids[1], "neither")
    store.close()
    result = runner.invoke(app, ["studies", "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows == [
        dict(study="pilot", **cell, examples=3, labels=3, annotators=2),
        dict(study="pilot", **dict(cell, attribution="guided_backprop"), examples=1, labels=0, annotators=0),
    ]
    assert all(list(r) == ["study", "dataset", "metric", "backbone", "attribution", "examples", "labels",
                           "annotators"] for r in rows)
    table = runner.invoke(app, ["studies", "--db", db_url]).output
    assert "pilot" in table and "guided_backprop" in table


@pytest.mark.parametrize("kind", ["text", "foreign", "newer"])
def test_studies_refuses_files_that_are_not_this_harmony_store(tmp_path, monkeypatch, capsys, kind):
    import sqlite3

    db = tmp_path / "x.db"
    if kind == "text":
        db.write_text("not a database at all\n" * 50)
        expected = "is not an SQLite database"
    elif kind == "foreign":
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.commit()
        conn.close()
        expected = "not a harmony store"
    else:
        Store.open(str(db)).close()
        conn = sqlite3.connect(db)
        conn.execute("UPDATE harmony_meta SET value = '99' WHERE key = 'schema_version'")
        conn.commit()
        conn.close()
        expected = "schema version 99"
    run = harmony("studies", "--db", str(db)) if kind == "text" else harmony_main(monkeypatch, capsys, "studies",
                                                                                    "--db", str(db))
    assert_one_line_error(run, expected)


def test_unlock_lifts_a_lockout_and_add_stores_the_name_as_the_page_reads_it(tmp_path):
    from harmony_cli.store.accounts import LOCK_AFTER

    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "  bob ", "--password-stdin", "--db", str(db)],
                           input="long-enough\n")
    assert result.exit_code == 0 and "added annotator bob" in result.output
    with Store.open(str(db)) as store:
        for attempt in range(LOCK_AFTER):
            store.login("bob", "wrong", client="203.0.113.9", now=1000.0 * (attempt + 1))
        assert "locked" in store.login("bob", "long-enough", client="203.0.113.9", now=5e4).message
    result = runner.invoke(app, ["annotators", "unlock", "bob", "--db", str(db)])
    assert result.exit_code == 0 and result.output.strip() == "unlocked bob"
    with Store.open(str(db)) as store:
        assert store.login("bob", "long-enough", client="203.0.113.9", now=6e4).annotator.name == "bob"


def _assign_store(db: Path) -> None:
    with Store.open(str(db)) as store:
        study = store.get_or_create_study("pilot")
        cell = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
        store.add_examples(study.id, [dict(c, source_key="0", class_name="c")
                                      for c in (cell, dict(cell, metric="focus"))])
        store.get_or_create_study("old", source="legacy")
        store.add_annotator("ana", None)


def test_assign_unassign_and_list_assignments(tmp_path):
    db = tmp_path / "h.db"
    _assign_store(db)
    result = runner.invoke(app, ["annotators", "assign", "ana", "--study", "pilot", "--cell", "rma/tiny/gradcam",
                                 "--cell", "synthetic/focus/tiny/gradcam", "--db", str(db)])
    assert result.exit_code == 0 and "assigned rma/tiny/gradcam, synthetic/focus/tiny/gradcam of study pilot to ana" \
        in result.output, result.output
    rows = json.loads(runner.invoke(app, ["annotators", "assignments", "--json", "--db", str(db)]).output)
    assert [(r["annotator"], r["study"], r["dataset"], r["metric"]) for r in rows] == [
        ("ana", "pilot", "synthetic", "focus"), ("ana", "pilot", None, "rma")]  # by cell
    listed = runner.invoke(app, ["annotators", "assignments", "--study", "pilot", "--db", str(db)]).output
    assert "ana\tpilot\tfocus/tiny/gradcam (synthetic)" in listed and "ana\tpilot\trma/tiny/gradcam" in listed
    result = runner.invoke(app, ["annotators", "unassign", "ana", "--study", "pilot", "--cell", "focus/tiny/gradcam",
                                 "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert [r["metric"] for r in json.loads(runner.invoke(app, ["annotators", "assignments", "--json", "--db",
                                                                str(db)]).output)] == ["rma"]
    runner.invoke(app, ["annotators", "unassign", "ana", "--study", "pilot", "--db", str(db)])
    assert "no assignments yet" in runner.invoke(app, ["annotators", "assignments", "--db", str(db)]).output


def test_assignment_errors_are_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    _assign_store(db)
    cli = lambda *args: harmony_main(monkeypatch, capsys, *args, "--db", str(db))  # noqa: E731
    assert_one_line_error(cli("annotators", "assign", "bob", "--study", "pilot"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "pilot", "--cell", "road/tiny/gradcam"),
                          "no cell road/tiny/gradcam", "rma/tiny/gradcam")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "pilot", "--cell", "rma-tiny"),
                          "metric/backbone/attribution")
    assert_one_line_error(cli("annotators", "unassign", "bob", "--study", "pilot"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "assignments", "--study", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("studies", "open", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("studies", "set-labels-per-example", "pilot", "0"), "at least 1")
    with Store.open(str(db)) as store:
        assert store.assignments() == []


def test_studies_open_close_and_labels_per_example(tmp_path):
    db = tmp_path / "h.db"
    _assign_store(db)
    with Store.open(str(db)) as store:
        assert store.study_open("pilot") and not store.study_open("old")  # imported: closed until opened
    result = runner.invoke(app, ["annotators", "assign", "ana", "--study", "old", "--db", str(db)])
    assert "closed to new labels: `harmony studies open old`" in result.output
    assert runner.invoke(app, ["studies", "open", "old", "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["studies", "close", "pilot", "--db", str(db)]).exit_code == 0
    assert runner.invoke(app, ["studies", "set-labels-per-example", "pilot", "2", "--db", str(db)]).exit_code == 0
    with Store.open(str(db)) as store:
        assert store.study_open("old") and not store.study_open("pilot")
        assert store.study_rules(store.study("pilot").id).labels_per_example == 2
