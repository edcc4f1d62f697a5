"""harmony analyze as a command: the report folder, the printed formats (complete when piped), the newest
study by default, Hydra overrides of the rule, the study's recorded metric directions, one-line errors."""
from __future__ import annotations

import io
import json
import sys
from contextlib import closing

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from harmony_cli.main import app
from harmony_cli.store import Store
from tests.helpers import add_example, add_labelled_pilot, row_counts, run_main


@pytest.fixture
def small_store(sqlite_url):
    """A store with one study of two cells (scores recorded), 3 real and 2 simulated annotators."""
    from harmony_cli.store import Store

    store = Store.open(sqlite_url)
    study = store.get_or_create_study("toy", config={"higher_is_better": {"rma": False}}, image_dir=None)
    rng = np.random.default_rng(0)
    ids = {}
    for attribution in ("gradcam", "guided_backprop"):
        for e in range(12):
            original = float(rng.uniform(0.2, 0.5))
            ids[(attribution, e)] = add_example(
                store, study.id, dataset="synthetic", metric="rma", backbone="tiny", attribution=attribution,
                source_key=str(e), position=e, class_name="c", original_score=original,
                finetuned_score=original + float(rng.normal(0.1, 0.1)))
    annotators = {name: store.add_annotator(name, None, simulated=name.startswith("sim")).id
                  for name in ("ann1", "ann2", "ann3", "sim1", "sim2")}
    rows = []
    for (attribution, e), example_id in ids.items():
        for name, annotator_id in annotators.items():
            choice = ("finetuned", "original", "neither")[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
            rows.append({"annotator_id": annotator_id, "example_id": example_id, "choice": choice,
                         "left_map": ("original", "finetuned")[int(rng.integers(2))]})
    store.add_labels(rows, source="cli")
    store.close()
    return sqlite_url


def test_analyze_command_writes_the_report(small_store, tmp_path):
    from typer.testing import CliRunner

    from harmony_cli.main import app

    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["analyze", "--db", small_store, "--out", str(out),
                                      "analysis.settings.bootstrap_resamples=200"])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert data["study"] == "toy" and data["label_source"] == "real" and data["labels_left_out"] == 48
    assert [c["n_labels"] for c in data["cells"]] == [36, 36]
    assert {a["annotator"] for a in data["annotators"]} == {"ann1", "ann2", "ann3"}
    assert data["settings"]["bootstrap_resamples"] == 200
    assert data["cells"][0]["gain_regression"]["n_labels"] > 0
    assert data["cells"][0]["gain_regression"]["higher_is_better"] is False  # as the study recorded it
    assert (out / "gain.png").is_file() and (out / "gain.pdf").is_file() and (out / "report.tex").is_file()
    assert "\\toprule" in (out / "report.tex").read_text()
    assert data["position_bias"]["n_decisive_with_side"] > 0
    assert "verdict" in result.output
    sim = CliRunner().invoke(app, ["analyze", "--db", small_store, "--out", str(tmp_path / "sim"), "--simulated"])
    assert sim.exit_code == 0, sim.output
    data = json.loads((tmp_path / "sim" / "report.json").read_text())
    assert data["label_source"] == "simulated" and {a["annotator"] for a in data["annotators"]} == {"sim1", "sim2"}


def _main_error(monkeypatch, capsys, *args) -> str:
    from harmony_cli.main import main

    monkeypatch.setattr(sys, "argv", ["harmony", "analyze", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_analyze_user_errors_are_one_line(small_store, tmp_path, monkeypatch, capsys):
    from harmony_cli.store import Store

    err = _main_error(monkeypatch, capsys, "--db", small_store, "--study", "nope", "--out", str(tmp_path / "x"))
    assert "no study named 'nope'" in err and "harmony studies" in err
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello, not a database\n" * 50)
    assert "is not an SQLite database" in _main_error(monkeypatch, capsys, "--db", str(not_db))
    assert "no harmony store" in _main_error(monkeypatch, capsys, "--db", str(tmp_path / "missing.db"))
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store.open(empty).close()
    assert "no studies" in _main_error(monkeypatch, capsys, "--db", empty)
    store = Store.open(empty)
    store.get_or_create_study("bare")
    store.close()
    assert "has no examples" in _main_error(monkeypatch, capsys, "--db", empty, "--study", "bare")
    assert "unknown config option" in _main_error(monkeypatch, capsys, "--db", small_store, "analysis.nope=1")
    assert "alpha" in _main_error(monkeypatch, capsys, "--db", small_store, "analysis.settings.alpha=2")


def store_from_frame(url: str, name: str, frame: pd.DataFrame, config: dict | None = None) -> None:
    """Add ``frame``'s labels to the store at ``url`` as study ``name`` (examples and annotators created)."""
    from harmony_cli.store import Store

    store = Store.open(url)
    study = store.get_or_create_study(name, config=config or {}, image_dir=None)
    examples = frame.drop_duplicates("example_id")
    ids = {row.example_id: add_example(store, study.id, dataset=row.dataset, metric=row.metric, backbone=row.backbone,
                                              attribution=row.attribution, source_key=str(row.example_id),
                                              position=i, class_name="c")
           for i, row in enumerate(examples.itertuples())}
    annotators = {a: (store.annotator(a) or store.add_annotator(a, None)).id for a in frame.annotator.unique()}
    store.add_labels([{"annotator_id": annotators[r.annotator], "example_id": ids[r.example_id], "choice": r.choice}
                      for r in frame.itertuples()], source="cli")
    store.close()


def test_newest_study_by_default_and_an_alpha_override_changes_a_verdict(small_store, tmp_path):
    from tests.harmony_cli.analysis.test_clustered import boundary_frame

    store_from_frame(small_store, "aaa-newest", boundary_frame())  # created after "toy"; sorts first by name
    runner = CliRunner()

    def boundary_verdict(*overrides):
        result = runner.invoke(app, ["analyze", "--db", small_store, "--out", str(tmp_path / "r"), "--force",
                                     "--format", "json", *overrides])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["study"] == "aaa-newest"
        return {c["attribution"]: c for c in report["cells"]}["boundary"]["verdict"], report

    verdict, report = boundary_verdict()
    assert verdict == "inconclusive" and report["settings"]["alpha"] == 0.05
    verdict, report = boundary_verdict("analysis.settings.alpha=0.1")
    assert verdict == "aligned" and "alpha 0.1" in report["rule"]


def test_formats_print_every_figure_when_piped(small_store, tmp_path):
    runner = CliRunner()  # stdout is not a terminal here, as in `harmony analyze | cat`
    base = ["analyze", "--db", small_store, "--study", "toy", "--out", str(tmp_path / "r"), "--force"]
    table = runner.invoke(app, base)
    assert table.exit_code == 0, table.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "…" not in table.stdout and "Rule: alpha 0.05" in table.stdout
    for cell in report["cells"]:
        line = next(line for line in table.stdout.splitlines() if f"rma/tiny/{cell['attribution']} " in line)
        for figure in (cell["direction_test"]["p_value_holm"], cell["secondary_label_level_binomial"]["p_value_holm"],
                       cell["fleiss_kappa"], cell["krippendorff_alpha"]):
            if figure is not None:
                assert (f"{figure:.3g}" in line) or (f"{figure:.3f}" in line), (figure, line)
        assert cell["verdict"] in line
    csv = runner.invoke(app, [*base, "--format", "csv"])
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert list(frame.attribution) == ["gradcam", "guided_backprop"] and "direction_test_p_value_holm" in frame
    markdown = runner.invoke(app, [*base, "--format", "markdown"]).stdout
    assert markdown.startswith("# harmony report: toy") and "rule (pre-registered" in markdown
    assert json.loads(runner.invoke(app, [*base, "--format", "json"]).stdout)["study"] == "toy"


@pytest.fixture
def small_study(tmp_path) -> str:
    """A study of 12 examples, 2 annotators, every label an answer (enough for a report)."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    with closing(Store.open(db)) as store:
        add_labelled_pilot(store)
    return db


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
