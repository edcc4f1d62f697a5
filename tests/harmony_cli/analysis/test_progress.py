"""The admin dashboard's figures (harmony_cli/analysis/progress.py) on a small store seeded by hand.

Every expected value is worked out here from the seed (or with statsmodels / krippendorff / the Wilson
formula called directly on hand-built arrays), never taken from the code under test.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from harmony_cli.analysis.completeness import incomplete_cells
from harmony_cli.analysis.progress import (annotator_progress, cell_progress, cell_verdicts, left_choice,
                                           open_examples, position_bias_by_cell, study_overview)
from harmony_cli.store import Store

KEY = {"dataset": "synthetic", "backbone": "tiny", "attribution": "gradcam"}
RMA, FOCUS = {**KEY, "metric": "rma"}, {**KEY, "metric": "focus"}
O, N, F = "original", "neither", "finetuned"
# (annotator, example, choice, map shown left, response ms): rma r0..r2, focus f0, f1 (f1 unlabelled)
SEED = [("a", "r0", O, O, 1000), ("b", "r0", O, F, 2000), ("c", "r0", F, F, 9000),
        ("a", "r1", N, O, 3000), ("b", "r1", F, O, 4000),
        ("a", "r2", F, None, 20000), ("b", "r2", O, O, 6000),
        ("b", "f0", N, F, None)]


def seed_store(url: str, per_example: int | None = 2) -> Store:
    store = Store.open(url)
    config = {} if per_example is None else {"labels_per_example": per_example}
    study = store.get_or_create_study("progress-test", config=config)
    ids = {}
    for cell, names in ((RMA, ("r0", "r1", "r2")), (FOCUS, ("f0", "f1"))):
        rows = [dict(cell, source_key=name, position=i, class_name=name, original_score=0.2, finetuned_score=0.6)
                for i, name in enumerate(names)]
        ids.update(zip(names, store.add_examples(study.id, rows)))
    people = {name: store.add_annotator(name, None).id for name in "abc"}
    for who, example, choice, left, ms in SEED:
        store.answer(people[who], ids[example], choice, left_map=left, response_ms=ms)
    return store


@pytest.fixture
def store(db_url):
    with seed_store(db_url) as store:
        yield store


def by_metric(rows: list[dict]) -> dict[str, dict]:
    return {row["metric"]: row for row in rows}


def test_progress_counts_labels_up_to_each_examples_quota(store):
    rows = by_metric(cell_progress(store.labels_frame("progress-test"), store.cells("progress-test"), 2))
    # rma: r0 has 3 labels (one beyond its quota of 2), r1 and r2 two each: 6 of 6 needed
    assert {k: rows["rma"][k] for k in ("examples", "labels", "needed", "counted", "complete_examples", "complete",
                                        "caveat")} == dict(examples=3, labels=7, needed=6, counted=6,
                                                           complete_examples=3, complete=True, caveat=None)
    assert rows["rma"]["progress"] == 1.0
    # focus: f0 has 1 label, f1 none: 1 of 2 x 2
    assert {k: rows["focus"][k] for k in ("examples", "labels", "needed", "counted", "complete_examples",
                                          "complete")} == dict(examples=2, labels=1, needed=4, counted=1,
                                                               complete_examples=0, complete=False)
    assert rows["focus"]["progress"] == 0.25 and rows["focus"]["caveat"] == "incomplete: 1 of 4 labels"


def test_a_surplus_label_does_not_stand_in_for_a_missing_one(sqlite_url):
    with seed_store(sqlite_url, per_example=3) as store:
        rows = by_metric(cell_progress(store.labels_frame(), store.cells(), 3))
    # quota 3: r0 3, r1 2, r2 2 -> 7 of 9 (7 labels, and none beyond a quota here)
    assert (rows["rma"]["counted"], rows["rma"]["needed"], rows["rma"]["complete_examples"]) == (7, 9, 1)
    assert rows["rma"]["caveat"] == "incomplete: 7 of 9 labels"
    with seed_store(sqlite_url.replace(".db", "-1.db"), per_example=1) as store:
        rows = by_metric(cell_progress(store.labels_frame(), store.cells(), 1))
    assert (rows["rma"]["labels"], rows["rma"]["counted"], rows["rma"]["complete"]) == (7, 3, True)
    assert (rows["focus"]["counted"], rows["focus"]["caveat"]) == (1, "incomplete: 1 of 2 labels")


def test_complete_cells_are_those_the_analysis_does_not_call_incomplete(sqlite_url):
    for quota in (1, 2, 3):
        with seed_store(sqlite_url.replace(".db", f"-{quota}.db"), per_example=quota) as store:
            labels, cells = store.labels_frame(), store.cells()
        short = {c["metric"] for c in incomplete_cells(labels, pd.DataFrame(cells), quota)}
        assert {r["metric"] for r in cell_progress(labels, cells, quota) if not r["complete"]} == short


def test_annotator_progress_and_median_seconds_per_answer(store):
    rows = {r["annotator"]: r for r in annotator_progress(store.labels_frame("progress-test"), examples=5)}
    assert list(rows) == ["a", "b", "c"]
    # a answered in 1, 3 and 20 s: the median is 3 (the mean would be 8)
    assert rows["a"] == dict(annotator="a", labels=3, cells=1, examples=5, progress=3 / 5, median_seconds=3.0)
    # b's focus answer has no recorded time: it counts as a label, not as 0 s (median of 2, 4, 6)
    assert rows["b"] == dict(annotator="b", labels=4, cells=2, examples=5, progress=4 / 5, median_seconds=4.0)
    assert rows["c"] == dict(annotator="c", labels=1, cells=1, examples=5, progress=1 / 5, median_seconds=9.0)


def test_assignments_open_examples_per_annotator_and_progress_follows_them(store):
    cells = store.cells("progress-test")  # focus: 2 examples, rma: 3
    whole = dict(study="progress-test", dataset=None, metric=None, backbone=None, attribution=None)
    assignments = [{**whole, "annotator": "a", "metric": "rma"},
                   {**whole, "annotator": "b"}, {**whole, "annotator": "b", "metric": "focus"},  # focus twice: once
                   {**whole, "annotator": "d", **FOCUS}, {**whole, "annotator": "e", "study": "another"}]
    opened = open_examples(assignments, cells)
    assert opened == {"a": 3, "b": 5, "d": 2, "e": 0}
    rows = {r["annotator"]: r for r in annotator_progress(store.labels_frame("progress-test"), 5, opened)}
    assert list(rows) == ["a", "b", "c", "d", "e"]  # assigned without labels (d, e) too
    assert (rows["a"]["examples"], rows["a"]["progress"]) == (3, 1.0)
    assert (rows["b"]["examples"], rows["b"]["progress"]) == (5, 4 / 5)
    assert (rows["c"]["labels"], rows["c"]["examples"], rows["c"]["progress"]) == (1, None, None)  # not assigned
    assert rows["d"] == dict(annotator="d", labels=0, cells=0, examples=2, progress=0.0, median_seconds=None)
    assert (rows["e"]["examples"], rows["e"]["progress"]) == (0, None)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval, from its formula."""
    z = norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_position_bias_is_the_share_of_decisive_sided_labels_choosing_the_left_map(store):
    labels = store.labels_frame("progress-test")
    rows = by_metric(position_bias_by_cell(labels, store.cells("progress-test"), confidence=0.95))
    # rma, decisive with a side: r0 a O|left O (left), b O|left F (right), c F|left F (left),
    # r1 b F|left O (right), r2 b O|left O (left); r1 a is Neither, r2 a has no side recorded
    assert (rows["rma"]["decisive"], rows["rma"]["chose_left"]) == (5, 3)
    assert rows["rma"]["left_share"] == pytest.approx(0.6)
    assert rows["rma"]["left_interval"] == pytest.approx(list(wilson(3, 5)))
    assert rows["focus"] == {**FOCUS, "decisive": 0, "chose_left": 0, "left_share": None, "left_interval": None}
    overall = left_choice(labels, confidence=0.9)
    assert (overall["decisive"], overall["chose_left"]) == (5, 3)
    assert overall["left_interval"] == pytest.approx(list(wilson(3, 5, 0.9)))


def test_agreement_and_verdict_are_harmony_analyzes_with_the_caveat(store, tmp_path):
    from harmony_cli.analysis.study import study_report
    from harmony_cli.main import app

    labels, cells = store.labels_frame("progress-test"), store.cells("progress-test")
    rows = by_metric(study_overview(labels, cells, 2, study_report(store, "progress-test"), confidence=0.95))
    result = CliRunner().invoke(app, ["analyze", "--db", store.url, "--study", "progress-test", "--format", "json",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    cli = by_metric(json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])["cells"])
    assert {m: rows[m]["verdict"] for m in rows} == {m: cli[m]["verdict"] for m in cli}
    assert rows["focus"]["caveat"] == "incomplete: 1 of 4 labels" and rows["rma"]["caveat"] is None

    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    # rma per example (original, neither, finetuned): r0 (2, 0, 1), r1 (0, 1, 1), r2 (1, 0, 1). Fleiss needs
    # equal counts: the examples with the common 2 labels, r1 and r2
    assert rows["rma"]["fleiss_kappa"] == pytest.approx(fleiss_kappa(np.array([[0, 1, 1], [1, 0, 1]]), method="fleiss"))
    # Krippendorff from the annotators x examples matrix (codes 0/1/2, NaN: not labelled)
    reliability = np.array([[0, 1, 2], [0, 2, 0], [2, np.nan, np.nan]])
    assert rows["rma"]["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(reliability_data=reliability, level_of_measurement="nominal"))
    assert rows["focus"]["fleiss_kappa"] is None and rows["focus"]["krippendorff_alpha"] is None  # one label
    assert (rows["rma"]["decisive"], rows["rma"]["chose_left"]) == (5, 3)


def test_verdicts_follow_their_cells_not_the_order_of_the_report():
    progress = [{**RMA, "caveat": None}, {**FOCUS, "caveat": "incomplete: 1 of 4 labels"}]
    report = {"cells": [{**FOCUS, "verdict": "imperceptible", "neither_dominant": True, "fleiss_kappa": 0.1,
                         "krippendorff_alpha": 0.2},
                        {**RMA, "verdict": "aligned", "neither_dominant": False, "fleiss_kappa": 0.5,
                         "krippendorff_alpha": 0.6}]}
    rows = by_metric(cell_verdicts(report, progress))
    assert (rows["rma"]["verdict"], rows["rma"]["fleiss_kappa"], rows["rma"]["caveat"]) == ("aligned", 0.5, None)
    assert (rows["focus"]["verdict"], rows["focus"]["krippendorff_alpha"], rows["focus"]["caveat"]) == \
        ("imperceptible", 0.2, "incomplete: 1 of 4 labels")
    assert [r["verdict"] for r in cell_verdicts(None, progress)] == [None, None]


def test_one_annotator_is_too_few_for_a_verdict_about_people():
    progress = [{**RMA, "caveat": None}, {**FOCUS, "caveat": None}]
    cells = [{**RMA, "verdict": "inconclusive", "verdicts": {"people": "inconclusive", "these_annotators": "aligned"},
              "n_annotators": 1, "neither_dominant": False},
             {**FOCUS, "verdict": "aligned", "verdicts": {"people": "aligned", "these_annotators": "aligned"},
              "n_annotators": 6, "neither_dominant": False}]
    rows = by_metric(cell_verdicts({"settings": {"generalize": "people"}, "cells": cells}, progress))
    assert rows["rma"]["people_caveat"] == "1 annotator: too few for any verdict about people"
    assert rows["rma"]["verdict_these_annotators"] == "aligned" and rows["focus"]["people_caveat"] is None
    these = by_metric(cell_verdicts({"settings": {"generalize": "these_annotators"}, "cells": cells}, progress))
    assert these["rma"]["people_caveat"] is None


def test_a_study_without_labels_is_all_to_do():
    cells = [{**RMA, "examples": 3}]
    empty = pd.DataFrame(columns=["example_id", *RMA, "annotator", "choice", "left_map", "response_ms"])
    [row] = study_overview(empty, cells, 5, None, confidence=0.95)
    assert (row["counted"], row["needed"], row["caveat"], row["verdict"], row["decisive"]) == \
        (0, 15, "incomplete: 0 of 15 labels", None, 0)
    assert annotator_progress(empty, 3) == []
