"""`harmony analyze` on bad input: one line that says what to fix, exit status 2, no report
written and the store as it was (issue 14's analyze cases)."""
from __future__ import annotations

from contextlib import closing

import pytest
from sqlalchemy import func, select

from harmony_cli.store import Annotator, Example, Label, LabelAudit, Store, Study
from tests.helpers import add_labelled_pilot, run_main

TABLES = (Study, Example, Label, LabelAudit, Annotator)


@pytest.fixture
def small_study(tmp_path) -> str:
    """A study of 12 examples, 2 annotators, every label an answer (enough for a report)."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with closing(Store.open(db)) as store:
        add_labelled_pilot(store)
    return db


def row_counts(db: str) -> dict[str, int]:
    with closing(Store.open(db, create=False)) as store, store.read() as session:
        return {table.__tablename__: session.scalar(select(func.count()).select_from(table)) for table in TABLES}


CASES = {
    "alpha=abc": (["analysis.settings.alpha=abc"], "analysis.settings.alpha='abc' is not a number"),
    "min_examples=2.5": (["analysis.settings.min_examples=2.5"], "is not a whole number"),
    "alpha=2": (["analysis.settings.alpha=2"], "alpha must lie between 0 and 1"),
    "--out an existing file": (["--out", "{file}"], "is a file, not a folder"),
    # root ignores folder permissions; /sys refuses new folders even to root
    "--out where nothing can be written": (["--out", "/sys/harmony-report"], "cannot write /sys/harmony-report"),
    "unknown study": (["--study", "nope"], "nope"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_analyze_input_is_one_line_and_writes_nothing(case, small_study, tmp_path, monkeypatch, capsys):
    args, expected = CASES[case]
    existing = tmp_path / "afile"
    existing.write_text("keep me")
    args = [a.format(file=existing) for a in args]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARMONY_OUTPUTS", str(tmp_path / "outputs"))
    before = row_counts(small_study)
    code, _, err = run_main(monkeypatch, capsys, "analyze", "--db", small_study, *args)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], err
    assert "Traceback" not in err
    assert row_counts(small_study) == before
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "outputs" / "reports").exists() or not any((tmp_path / "outputs" / "reports").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") and "tmp" in p.name]  # no staging left


def test_the_small_study_itself_analyzes(small_study, tmp_path, monkeypatch, capsys):
    """The cases above fail for their bad input alone: the same study with good input writes a report."""
    monkeypatch.setenv("HARMONY_OUTPUTS", str(tmp_path / "outputs"))
    code, _, err = run_main(monkeypatch, capsys, "analyze", "--db", small_study, "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r" / "report.json").is_file()
