"""A sequential study's recorded decisions in `harmony analyze` (harmony_cli/analysis/decisions.py): report.json's
cells, cells.csv, report.md and the console table show each cell's decision and the labels it was made at; a
fixed study's report has none of it."""
from __future__ import annotations

import pytest
from rich.console import Console

from harmony_cli.analysis import AnalysisSettings, cells_frame
from harmony_cli.analysis.markdown import markdown
from harmony_cli.analysis.study import study_report
from harmony_cli.commands.analyze import report_table
from harmony_cli.store import Store
from harmony_cli.store.models import SequentialCell

FAST = AnalysisSettings.defaults(bootstrap_resamples=200)
RMA = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
FOCUS = dict(RMA, metric="focus")
SEQUENTIAL = {"design": "sequential", "sequential": {"look_every": 5, "max_labels_per_cell": 40}}


def labelled_study(url: str, design: dict) -> Store:
    """Study "s": two cells of 6 examples, 3 annotators' labels on each (rma one-sided, focus mixed), and for a
    sequential study the decisions its looks recorded: rma aligned at 10 labels, focus undecided after look 3."""
    store = Store.open(url)
    study = store.get_or_create_study("s", config={"labels_per_example": 3, **design})
    people = [store.add_annotator(f"a{i}", None).id for i in range(3)]
    rows = []
    for cell, choices in ((RMA, ["finetuned"] * 3), (FOCUS, ["original", "neither", "finetuned"])):
        ids = store.add_examples(study.id, [dict(cell, source_key=str(i), position=i, class_name="c")
                                           for i in range(6)])
        rows += [{"annotator_id": p, "example_id": e, "choice": c} for e in ids for p, c in zip(people, choices)]
    with store.write() as session:  # labels without looks (the looks' outcome is written below)
        store.add_labels(rows, session=session)
        if design.get("design") == "sequential":
            session.add_all([SequentialCell(study_id=study.id, **RMA, look=2, verdict="aligned", labels=10),
                             SequentialCell(study_id=study.id, **FOCUS, look=3, verdict="undecided", labels=None)])
    return store


def console_text(report: dict) -> str:
    console = Console(width=400, record=True)
    console.print(report_table(report))
    return console.export_text()


def test_a_sequential_studys_report_shows_each_cells_decision_and_its_labels(sqlite_url):
    with labelled_study(sqlite_url, SEQUENTIAL) as store:
        report = study_report(store, "s", FAST)
    assert report["design"] == SEQUENTIAL
    by_metric = {c["metric"]: c["sequential"] for c in report["cells"]}
    assert by_metric == {"rma": {"verdict": "aligned", "labels": 10, "look": 2, "looks": 8},
                         "focus": {"verdict": "undecided", "labels": None, "look": 3, "looks": 8}}
    frame = cells_frame(report).set_index("metric")
    assert frame.loc["rma", "sequential_verdict"] == "aligned" and frame.loc["rma", "sequential_labels"] == 10
    text = markdown(report)
    assert "## Sequential decisions" in text
    assert "| rma · tiny · gradcam | 18 | **aligned at 10 labels (look 2 of 8)** |" in text.replace(" / ", " · ")
    assert "**undecided, look 3 of 8**" in text
    table = console_text(report)
    assert "sequential decision" in table and "aligned at 10 labels (look 2 of 8)" in table


@pytest.mark.parametrize("design", [{"design": "fixed"}, {}], ids=["fixed", "recorded before designs"])
def test_a_fixed_studys_report_has_no_sequential_part(sqlite_url, design):
    with labelled_study(sqlite_url, design) as store:
        report = study_report(store, "s", FAST)
    assert "design" not in report and not any("sequential" in c for c in report["cells"])
    assert not any(column.startswith("sequential") for column in cells_frame(report).columns)
    assert "Sequential" not in markdown(report) and "sequential" not in console_text(report)
