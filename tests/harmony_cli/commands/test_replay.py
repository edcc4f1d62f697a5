"""harmony replay as a command: the table (whole lines in a log), the total saved, the folder (CSV, JSON, figure),
one-line errors, and the published study: labels used and verdicts, never a stop that contradicts the full data."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from harmony_cli.analysis.replay import DECIDED, REPLAY_FILES
from harmony_cli.analysis.sequential import UNDECIDED
from tests.helpers import assert_one_line_error, harmony_main, run_main
from tests.label_frames import boundary_frame, store_from_frame

VERDICTS = {*DECIDED, "inconclusive", UNDECIDED}


@pytest.fixture
def boundary_store(sqlite_url) -> str:
    """Study "boundary": two cells of 60 examples x 5 annotators, planned as such."""
    store_from_frame(sqlite_url, "boundary", boundary_frame(), config={"examples_per_cell": 60,
                                                                       "labels_per_example": 5})
    return sqlite_url


def test_replay_prints_each_cell_on_one_line_and_writes_its_folder(monkeypatch, capsys, tmp_path, boundary_store):
    code, out, err = run_main(monkeypatch, capsys, "replay", "--db", boundary_store, "--out", str(tmp_path / "r"),
                              "--look-every", "25")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == sorted(REPLAY_FILES)
    cells = pd.read_csv(tmp_path / "r" / "replay.csv", keep_default_na=False)
    assert sorted(cells["attribution"]) == ["boundary", "null"]
    assert (cells["full"] == 300).all() and (cells["labels"] <= 300).all()
    assert set(cells["verdict"]) <= VERDICTS and set(cells["full_verdict"]) <= VERDICTS
    for row in cells.itertuples():  # a whole table row per line, as a log file shows it
        line = next(line for line in out.splitlines() if f"rma/tiny/{row.attribution} " in line)
        assert f" {row.labels} " in line and row.verdict in line and row.full_verdict in line
    saved = int(cells["saved"].sum())
    assert f"saved {saved} of 600 labels" in out
    assert "a look every 25" in out and "60 examples x 5 labels per example as planned" in out
    result = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert result["saved_labels"] == saved and result["design"] == {**result["design"], "look_every": 25,
                                                                    "max_labels": 300}


def test_analysis_overrides_reach_the_rule(monkeypatch, capsys, tmp_path, boundary_store):
    code, out, err = run_main(monkeypatch, capsys, "replay", "--db", boundary_store, "--out", str(tmp_path / "r"),
                              "--look-every", "25", "analysis.settings.generalize=these_annotators",
                              "analysis.settings.alpha=0.01")
    assert code == 0, err
    result = json.loads((tmp_path / "r" / "replay.json").read_text())
    assert result["settings"]["generalize"] == "these_annotators" and result["settings"]["alpha"] == 0.01


@pytest.mark.parametrize("args, fragments", [
    (("--study", "nope"), ("no study named 'nope'",)),
    (("--study", "earlier"), ("study 'earlier' has no labels yet",)),
    (("--look-every", "0"), ("--look-every 0 must be at least 1",)),
    (("--max-labels", "-1"), ("--max-labels -1 must be at least 1",)),
])
def test_bad_input_is_one_line(monkeypatch, capsys, tmp_path, store_with_a_study, args, fragments):
    result = harmony_main(monkeypatch, capsys, "replay", "--db", str(store_with_a_study), "--out",
                          str(tmp_path / "r"), *args)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def published_store(legacy_db, tmp_path_factory) -> str:
    """The published study imported into a new SQLite store (its labels keep the original app's order)."""
    from harmony_cli.store import Store
    from harmony_cli.study.import_legacy import import_legacy

    url = f"sqlite:///{tmp_path_factory.mktemp('published') / 'harmony.db'}"
    with Store.open(url) as store:
        import_legacy(store, legacy_db, images=None)
    return url


@pytest.mark.parametrize("generalize", ["people", "these_annotators"])
def test_the_published_study_replays_without_contradicting_its_full_data(monkeypatch, capsys, tmp_path,
                                                                          published_store, generalize):
    from harmony_cli.analysis import AnalysisSettings
    from harmony_cli.analysis.study import study_report
    from harmony_cli.store import Store

    code, out, err = run_main(monkeypatch, capsys, "replay", "--db", published_store, "--out", str(tmp_path / "r"),
                              f"analysis.settings.generalize={generalize}")
    assert code == 0, err
    cells = pd.read_csv(tmp_path / "r" / "replay.csv", keep_default_na=False)
    assert len(cells) == 30 and (cells["full"] == 1000).all()
    assert ((cells["labels"] >= 1) & (cells["labels"] <= cells["full"])).all()
    assert set(cells["verdict"]) <= VERDICTS
    with Store.open(published_store, create=False) as store:  # the full-data verdicts are harmony analyze's
        report = study_report(store, None, AnalysisSettings.defaults(bootstrap_resamples=0, generalize=generalize))
    analyze = {(c["metric"], c["backbone"], c["attribution"]): c["verdict"] for c in report["cells"]}
    assert {(r.metric, r.backbone, r.attribution): r.full_verdict for r in cells.itertuples()} == analyze
    sign = {"aligned": 1, "misaligned": -1}
    for row in cells.itertuples():  # no stop points the other way from the full data
        assert sign.get(row.verdict, 0) * sign.get(row.full_verdict, 0) >= 0, row
    decided = cells["verdict"].isin(DECIDED)
    assert (decided & (cells["labels"] < cells["full"])).any()  # some cells stop early: the check above has teeth
    assert (cells.loc[~decided, "saved"] == 0).all()
    assert (cells.loc[decided, "saved"] == 1000 - cells.loc[decided, "labels"]).all()
    assert f"saved {int(cells['saved'].sum())} of 30000 labels" in out
    assert "the largest cell's label count" in out
    print(out)  # the table the README shows (pytest -s)
