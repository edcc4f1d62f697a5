"""Bad input to `harmony simulate-annotators`: one line, exit status 2, no label written."""
from __future__ import annotations

import pytest

from tests.failing_writes import database_full
from tests.helpers import row_counts, run_main


def cli_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``harmony_cli.main:main`` in-process: (exit status, stderr)."""
    code, _, err = run_main(monkeypatch, capsys, *args)
    return code, err


SIMULATE_CASES = [
    ("a billion annotators", ["--annotators", "1000000000"], None, "--annotators 1000000000 is out of range"),
    ("no annotators", ["--annotators", "0"], None, "--annotators 0 is out of range"),
    ("database full", [], "database_full", "is full: free some space"),
    ("an unknown study", ["--study", "nope"], None, "no study named 'nope'"),
    ("a probability above 1", ["--neither", "1.5"], None, "--neither must be a probability"),
]


@pytest.mark.parametrize("args, setup, expected", [c[1:] for c in SIMULATE_CASES],
                         ids=[c[0] for c in SIMULATE_CASES])
def test_a_failing_simulation_says_one_line_and_writes_nothing(args, setup, expected, store_with_a_study,
                                                               monkeypatch, capsys):
    db = store_with_a_study
    before = row_counts(f"sqlite:///{db}")
    if setup == "database_full":
        database_full(monkeypatch)
    code, err = cli_main(monkeypatch, capsys, "simulate-annotators", *args, "--db", f"sqlite:///{db}")
    monkeypatch.undo()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and expected in err, err
    assert row_counts(f"sqlite:///{db}") == before
