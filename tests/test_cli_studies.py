"""`harmony studies --format`: every format holds every cell in full, piped or not."""
from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from harmony_cli.main import app
from harmony_cli.store import Store

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

    expected = dict(study=LONG, dataset="synthetic", metric="rma", backbone="tiny", attribution="guided_backprop",
                    examples=2, labels=1, annotators=1)
    assert json.loads(run("--format", "json")) == json.loads(run("--json")) == [expected]
    assert list(csv.DictReader(io.StringIO(run("--format", "csv")))) == [{k: str(v) for k, v in expected.items()}]
    markdown = run("--format", "markdown").splitlines()
    assert markdown[0].startswith("| study | dataset |") and markdown[1].startswith("|---|---|")
    assert markdown[2] == f"| {LONG} | synthetic | rma | tiny | guided_backprop | 2 | 1 | 1 |"
    table = run()  # CliRunner's stdout is not a terminal: the table keeps whole names
    assert LONG in table and "guided_backprop" in table and "…" not in table
