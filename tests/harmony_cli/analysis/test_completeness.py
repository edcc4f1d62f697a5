"""The analysis says which cells are incomplete (fewer than labels_per_example labels on some example)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from harmony_cli.analysis.study import study_report
from harmony_cli.main import app
from harmony_cli.store import Store

RMA = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
FOCUS = dict(RMA, metric="focus")


def seeded(url: str, quota: int | None) -> None:
    """rma: 4 examples x 2 labels (complete at 2 per example); focus: 3 examples, labels 2, 2, 1."""
    with Store.open(url) as store:
        study = store.get_or_create_study("s", config={"higher_is_better": {"rma": True, "focus": True},
                                                       **({"labels_per_example": quota} if quota else {})})
        rma = store.add_examples(study.id, [dict(RMA, source_key=str(i), class_name="c") for i in range(4)])
        focus = store.add_examples(study.id, [dict(FOCUS, source_key=str(i), class_name="c") for i in range(3)])
        people = [store.add_annotator(name, None).id for name in ("ana", "ben")]
        for i, example in enumerate(rma + focus[:2]):
            for a, person in enumerate(people):
                store.answer(person, example, ("finetuned", "original", "neither")[(i + a) % 3])
        store.answer(people[0], focus[2], "finetuned")


def test_a_report_names_the_incomplete_cells_and_the_verdict_line_carries_the_caveat(sqlite_url, tmp_path):
    seeded(sqlite_url, quota=2)
    with Store.open(sqlite_url) as store:
        report = study_report(store, "s")
    assert report["labels_per_example"] == 2
    assert report["incomplete_cells"] == [dict(FOCUS, examples=3, labels=5, needed=6, short_examples=1)]
    [focus] = [c for c in report["cells"] if c["metric"] == "focus"]
    [rma] = [c for c in report["cells"] if c["metric"] == "rma"]
    assert any(n.startswith("incomplete: 5 of 6 labels (1 examples short)") for n in focus["notes"])
    assert not any("incomplete" in n for n in rma["notes"])
    assert any(n.startswith("1 of 2 cells are incomplete (fewer than 2 labels per example): focus/tiny/gradcam")
               for n in report["notes"])
    result = CliRunner().invoke(app, ["analyze", "--db", sqlite_url, "--study", "s", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "; 1 cells incomplete: their verdicts are provisional)" in result.output
    written = json.loads((tmp_path / "r" / "report.json").read_text())
    assert written["incomplete_cells"] == report["incomplete_cells"]


def test_the_default_of_five_labels_per_example_applies_when_the_study_sets_none(sqlite_url):
    seeded(sqlite_url, quota=None)
    with Store.open(sqlite_url) as store:
        report = study_report(store, "s")
    assert report["labels_per_example"] == 5
    assert [(c["metric"], c["labels"], c["needed"], c["short_examples"]) for c in report["incomplete_cells"]] == [
        ("focus", 5, 15, 3), ("rma", 8, 20, 4)]


def test_labels_beyond_an_examples_quota_do_not_count_toward_another_examples(sqlite_url):
    """focus at a quota of 2 has labels 2, 2, 1; a third label on its first example makes 6 labels, the
    number needed, yet one example is still short: the cell counts min(n, 2) = 5 of 6."""
    seeded(sqlite_url, quota=2)
    with Store.open(sqlite_url) as store:
        carol = store.add_annotator("carol", None).id
        focus_ids = store.cell_example_ids(store.study("s").id, FOCUS)
        store.answer(carol, focus_ids[0], "neither")  # a third label on a full example: 6 labels, one example short
        report = study_report(store, "s")
    assert [(c["metric"], c["labels"], c["needed"], c["short_examples"]) for c in report["incomplete_cells"]] == [
        ("focus", 5, 6, 1)]
