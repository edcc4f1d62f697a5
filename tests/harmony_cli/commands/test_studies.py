"""`harmony studies`: the listing (every format holds every cell in full, piped or not), a file that is not
this harmony's store, opening and closing studies, and their instructions."""
from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from harmony_cli.main import app
from harmony_cli.store import Store
from tests.helpers import CELL, assert_one_line_error, assignable_store, harmony, harmony_main

runner = CliRunner()
LONG = "a-study-name-long-enough-to-be-cut-at-eighty-columns-by-a-terminal-table"


def _store(url: str) -> None:
    store = Store.open(url)
    study = store.get_or_create_study(LONG)
    cell = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="guided_backprop")
    ids = store.add_examples(study.id, [dict(cell, source_key=str(i), class_name="c") for i in range(2)])
    store.answer(store.add_annotator("ana", None).id, ids[0], "finetuned")
    store.close()


def test_every_format_lists_the_cells_in_full(sqlite_url):
    _store(sqlite_url)
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["studies", "--db", sqlite_url, *args])
        assert result.exit_code == 0, result.output
        return result.output

    expected = dict(study=LONG, design="fixed", dataset="synthetic", metric="rma", backbone="tiny", attribution="guided_backprop",
                    examples=2, labels=1, annotators=1)
    assert json.loads(run("--format", "json")) == json.loads(run("--json")) == [expected]
    assert list(csv.DictReader(io.StringIO(run("--format", "csv")))) == [{k: str(v) for k, v in expected.items()}]
    markdown = run("--format", "markdown").splitlines()
    assert markdown[0].startswith("| study | design | dataset |") and markdown[1].startswith("|---|---|---|")
    assert markdown[2] == f"| {LONG} | fixed | synthetic | rma | tiny | guided_backprop | 2 | 1 | 1 |"
    table = run()  # CliRunner's stdout is not a terminal: the table keeps whole names
    assert LONG in table and "guided_backprop" in table and "…" not in table


INSTRUCTIONS = "# Look closely\n\nPick the map that **covers the object**."




def _study_config(url: str, name: str) -> dict:
    with Store.open(url, create=False) as store:
        return dict(store.study(name).config or {})


def test_set_instructions_from_a_file_or_the_text_replaces_the_studys_instructions(db_url, tmp_path, monkeypatch,
                                                                                   capsys):
    from tests.helpers import run_main

    with Store.open(db_url) as store:
        store.get_or_create_study("s1")
        store.update_study_config("s1", labels_per_example=3)
    path = tmp_path / "how-to.md"
    path.write_text(f"\n{INSTRUCTIONS}\n\n", encoding="utf-8")
    code, out, err = run_main(monkeypatch, capsys, "studies", "set-instructions", "s1", "--file", str(path),
                              "--db", db_url)
    assert (code, err) == (0, "") and "study s1: instructions set" in out
    assert _study_config(db_url, "s1") == {"labels_per_example": 3, "instructions": INSTRUCTIONS}
    code, out, err = run_main(monkeypatch, capsys, "studies", "set-instructions", "s1", "--text", "Just *look*.",
                              "--db", db_url)
    assert code == 0, err
    assert _study_config(db_url, "s1") == {"labels_per_example": 3, "instructions": "Just *look*."}
    code, out, _ = run_main(monkeypatch, capsys, "studies", "--json", "--db", db_url)  # the listing still works
    assert code == 0 and json.loads(out) == []


def test_set_instructions_refuses_bad_input_in_one_line_and_changes_nothing(db_url, tmp_path, monkeypatch, capsys):
    with Store.open(db_url) as store:
        store.get_or_create_study("s1")
        store.update_study_config("s1", instructions=INSTRUCTIONS)
    (tmp_path / "blank.md").write_text(" \n\n", encoding="utf-8")
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    cases = [
        (("nobody", "--text", "hi"), ("no study called 'nobody'", "harmony studies")),
        (("s1", "--file", str(tmp_path / "missing.md")), ("missing.md does not exist", "--file PATH")),
        (("s1", "--file", str(tmp_path / "blank.md")), ("blank.md is empty", "--text TEXT")),
        (("s1", "--file", str(tmp_path / "latin1.md")), ("is not UTF-8", "UTF-8 Markdown")),
        (("s1", "--text", "  \n "), ("--text is empty",)),
        (("s1", "--text", "x" * 50_001), ("50,001 characters", "50,000 at most")),
        (("s1",), ("exactly one of --file and --text",)),
        (("s1", "--text", "hi", "--file", str(tmp_path / "blank.md")), ("exactly one of --file and --text",)),
    ]
    for args, fragments in cases:
        result = harmony_main(monkeypatch, capsys, "studies", "set-instructions", *args, "--db", db_url)
        assert_one_line_error(result, *fragments)
        assert _study_config(db_url, "s1") == {"instructions": INSTRUCTIONS}, args


def test_study_instructions_are_recorded_when_the_study_is_built_and_replaced_by_a_later_build(db_url, tmp_path):
    import pytest

    from harmony_cli.errors import UserError
    from harmony_cli.hydra_app import compose_config
    from harmony_cli.study.settings import StudySettings
    from harmony_cli.study.study_row import StudyRow

    assert StudySettings.from_config(compose_config([], task="build_dataset").study).instructions is None
    path = tmp_path / "how-to.md"
    path.write_text(INSTRUCTIONS, encoding="utf-8")
    rows = [dict(CELL, source_key=str(i), class_name="c") for i in range(2)]
    with Store.open(db_url) as store:
        plain = StudyRow.open(store, "plain", StudySettings.defaults(), {"seed": 0}, tmp_path / "plain")
        plain.add(rows, {"rma": True})
        built = StudyRow.open(store, "built", StudySettings.defaults(instructions=str(path)), {"seed": 0}, tmp_path / "b")
        built.add(rows, {"rma": True})
        assert "instructions" not in _study_config(db_url, "plain")  # the page's default applies
        assert _study_config(db_url, "built")["instructions"] == INSTRUCTIONS
        StudyRow.open(store, "built", StudySettings.defaults(), {"seed": 0}, tmp_path / "b")  # null keeps them
        assert _study_config(db_url, "built")["instructions"] == INSTRUCTIONS
        again = StudyRow.open(store, "built", StudySettings.defaults(instructions="Other *text*"), {"seed": 0}, tmp_path / "b")
        assert again.config["instructions"] == _study_config(db_url, "built")["instructions"] == "Other *text*"
        assert _study_config(db_url, "built")["higher_is_better"] == {"rma": True}  # the rest is kept
        for value, fragment in ((str(tmp_path / "typo.md"), "typo.md does not exist"), (" ", "is empty")):
            with pytest.raises(UserError, match=fragment):
                StudyRow.open(store, "new", StudySettings.defaults(instructions=value), {}, tmp_path / "new")
        assert store.study("new") is None


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
        dict(study="pilot", design="fixed", **cell, examples=3, labels=3, annotators=2),
        dict(study="pilot", design="fixed", **dict(cell, attribution="guided_backprop"), examples=1, labels=0,
             annotators=0),
    ]
    assert all(list(r) == ["study", "design", "dataset", "metric", "backbone", "attribution", "examples", "labels",
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
    run = harmony("studies", "--db", str(db), warnings=True) if kind == "text" else harmony_main(monkeypatch, capsys, "studies",
                                                                                    "--db", str(db))
    assert_one_line_error(run, expected)


def test_studies_open_close_and_labels_per_example(tmp_path):
    db = tmp_path / "h.db"
    assignable_store(db)
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


def test_studies_says_each_studys_design(sqlite_url):
    with Store.open(sqlite_url) as store:
        for name, config in (("fixed-one", {"design": "fixed"}), ("older", {}),
                             ("seq", {"design": "sequential", "sequential": {"look_every": 5,
                                                                              "max_labels_per_cell": None}})):
            study = store.get_or_create_study(name, config=config)
            store.add_examples(study.id, [dict(dataset="d", metric="rma", backbone="b", attribution="a",
                                               source_key="0", class_name="c")])
    result = CliRunner().invoke(app, ["studies", "--json", "--db", sqlite_url])
    assert result.exit_code == 0, result.output
    assert {r["study"]: r["design"] for r in json.loads(result.output)} == {
        "fixed-one": "fixed", "older": "fixed", "seq": "sequential"}
