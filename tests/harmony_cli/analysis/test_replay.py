"""harmony replay's analysis: the labels come in the order they were given (created_at, then label id), each cell
stops where the sequential rule first decides on the labels given so far, the full-data verdict is harmony
analyze's, and the design comes from the study's record or its plan."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import update

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.analysis.replay import replay_study
from harmony_cli.analysis.sequential import UNDECIDED, SequentialDesign, cell_decision
from harmony_cli.analysis.study import study_labels, study_report
from harmony_cli.errors import UserError
from harmony_cli.store import Store
from harmony_cli.store.models import Label
from tests.helpers import CELL, add_example

CODES = {"original": 0, "neither": 1, "finetuned": 2}
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=0)


def set_times(store, times: dict[int, datetime]) -> None:
    """Give labels (by id) their created_at."""
    with store.write() as session:
        for label_id, at in times.items():
            session.execute(update(Label).where(Label.id == label_id).values(created_at=at))


def label_rows(store, study: str) -> list[dict]:
    """Every label of the study with its id, time and cell (attribution), straight from the tables."""
    from sqlalchemy import select

    from harmony_cli.store.models import Example, Study

    with store.read() as session:
        rows = session.execute(select(Label.id, Label.created_at, Label.example_id, Label.annotator_id, Label.choice,
                                      Example.attribution).join(Example, Example.id == Label.example_id)
                               .join(Study, Study.id == Example.study_id).where(Study.name == study)).all()
    return [r._asdict() for r in rows]


@pytest.fixture
def two_cells(sqlite_url):
    """Study "toy" (20 examples x 5 annotators in two cells, planned as such). Cell "late": by label id, ten mixed
    examples come before ten where nearly everyone chose the fine-tuned map; created_at puts the clear ten first.
    Cell "even": choices split evenly, times in id order."""
    rng = np.random.default_rng(5)
    store = Store.open(sqlite_url)
    study = store.get_or_create_study("toy", config={"examples_per_cell": 20, "labels_per_example": 5},
                                      image_dir=None)
    annotators = [store.add_annotator(f"a{k}", None).id for k in range(5)]
    rows = []
    for attribution in ("late", "even"):
        for e in range(20):
            example = add_example(store, study.id, **{**CELL, "attribution": attribution}, source_key=str(e),
                                  position=e, class_name="c")
            clear = attribution == "late" and e >= 10
            p = (0.05, 0.05, 0.9) if clear else (0.35, 0.3, 0.35)
            rows += [{"annotator_id": a, "example_id": example,
                      "choice": ("original", "neither", "finetuned")[rng.choice(3, p=p)]} for a in annotators]
    for row in rows:  # one at a time: ids follow the list
        store.add_labels([row], source="cli")
    labels = sorted(label_rows(store, "toy"), key=lambda r: r["id"])
    late = [r["id"] for r in labels if r["attribution"] == "late"]
    times = {i: T0 + timedelta(seconds=k) for k, i in enumerate(late[50:] + late[:50])}
    times.update({r["id"]: T0 + timedelta(seconds=k) for k, r in enumerate(labels) if r["attribution"] == "even"})
    set_times(store, times)
    yield store
    store.close()


def expected_stop(rows: list[dict], design: SequentialDesign, family: int) -> tuple[int, int, str]:
    """(labels, look, verdict) of one cell: the first look at which the rule decides on the labels given so far."""
    example = np.array([r["example_id"] for r in rows])
    annotator = np.array([r["annotator_id"] for r in rows])
    choice = np.array([CODES[r["choice"]] for r in rows])
    for look in range(1, design.n_looks + 1):
        n = min(look * design.look_every, design.max_labels)
        if n > len(rows):
            break
        verdict, at = cell_decision(example[:n], annotator[:n], choice[:n], design, SETTINGS, family)
        if verdict != UNDECIDED:
            return n, at, verdict
    return len(rows), design.look_at(len(rows)), UNDECIDED


def test_labels_come_by_created_at_then_label_id(sqlite_url):
    store = Store.open(sqlite_url)
    study = store.get_or_create_study("order", image_dir=None)
    example = add_example(store, study.id, **CELL, source_key="0", class_name="c")
    annotators = [store.add_annotator(f"a{k}", None).id for k in range(4)]
    for a in annotators:
        store.add_labels([{"annotator_id": a, "example_id": example, "choice": "neither"}], source="cli")
    ids = sorted(r["id"] for r in label_rows(store, "order"))
    # the last label was given first; the first two share a time (the smaller id first)
    set_times(store, {ids[0]: T0 + timedelta(minutes=5), ids[1]: T0 + timedelta(minutes=5),
                      ids[2]: T0 + timedelta(minutes=9), ids[3]: T0})
    _, _, _, labels, _ = study_labels(store, "order", in_given_order=True)
    store.close()
    assert labels["label_id"].tolist() == [ids[3], ids[0], ids[1], ids[2]]
    assert labels["annotator"].tolist() == ["a3", "a0", "a1", "a2"]  # the rows travel with their ids


def test_each_cell_stops_where_the_rule_first_decides_on_the_labels_in_the_order_given(two_cells):
    result = replay_study(two_cells, "toy", SETTINGS, look_every=10)
    design = SequentialDesign(max_labels=100, look_every=10)  # 20 examples x 5 labels as planned
    assert result["design"]["max_labels"] == 100 and result["design"]["look_every"] == 10
    assert "20 examples x 5 labels per example" in result["design"]["origin"]
    rows = label_rows(two_cells, "toy")
    given = sorted(rows, key=lambda r: (r["created_at"], r["id"]))
    by_id = sorted(rows, key=lambda r: r["id"])
    full = {c["attribution"]: c["verdict"] for c in study_report(two_cells, "toy", SETTINGS)["cells"]}
    assert result["family"] == 2
    for cell in result["cells"]:
        own = [r for r in given if r["attribution"] == cell["attribution"]]
        labels, look, verdict = expected_stop(own, design, 2)
        assert (cell["labels"], cell["look"], cell["verdict"]) == (labels, look, verdict)
        assert cell["full"] == 100 and cell["full_verdict"] == full[cell["attribution"]]
        assert cell["saved"] == (100 - labels if verdict in ("aligned", "misaligned", "no_preference",
                                                             "imperceptible") else 0)
    late = next(c for c in result["cells"] if c["attribution"] == "late")
    # the order matters here: replayed by label id instead, the "late" cell would stop elsewhere
    assert expected_stop([r for r in by_id if r["attribution"] == "late"], design, 2)[0] != late["labels"]
    assert result["saved_labels"] == sum(c["saved"] for c in result["cells"])
    assert result["used_labels"] + result["saved_labels"] == result["full_labels"] == 200


def test_a_recorded_sequential_design_is_used_and_no_other(sqlite_url):
    store = Store.open(sqlite_url)
    config = {"design": "sequential", "sequential": {"max_labels_per_cell": 30, "look_every": 15},
              "examples_per_cell": 10, "labels_per_example": 5}
    study = store.get_or_create_study("seq", config=config, image_dir=None)
    annotators = [store.add_annotator(f"a{k}", None).id for k in range(5)]
    rows = []
    for e in range(10):
        example = add_example(store, study.id, **CELL, source_key=str(e), class_name="c")
        rows += [{"annotator_id": a, "example_id": example, "choice": "neither"} for a in annotators]
    store.add_labels(rows, source="cli")
    result = replay_study(store, "seq", SETTINGS)
    assert (result["design"]["max_labels"], result["design"]["look_every"]) == (30, 15)
    assert "recorded" in result["design"]["origin"]
    assert result["cells"][0]["labels"] <= 30  # labels beyond the design's maximum are never used
    with pytest.raises(UserError, match="records its sequential design"):
        replay_study(store, "seq", SETTINGS, look_every=5)
    store.close()


@pytest.mark.parametrize("look_every, max_labels, message", [(0, None, "--look-every 0 must be at least 1"),
                                                             (None, -3, "--max-labels -3 must be at least 1"),
                                                             (20, 10, "more than --max-labels 10"),
                                                             (500, None, "more than the 100 labels per cell")])
def test_bad_design_numbers_are_one_line_errors(two_cells, look_every, max_labels, message):
    with pytest.raises(UserError, match=message):
        replay_study(two_cells, "toy", SETTINGS, look_every=look_every, max_labels=max_labels)


def test_a_sequential_study_replays_under_the_rule_it_recorded_and_refuses_another(sqlite_url):
    """One person labels every example fine-tuned: for these annotators (the recorded rule) the cell is aligned;
    conf's rule, for people, could never say so from one person."""
    store = Store.open(sqlite_url)
    config = {"design": "sequential", "sequential": {"max_labels_per_cell": 10, "look_every": 5},
              "examples_per_cell": 10, "labels_per_example": 1, "rule": {"generalize": "these_annotators"}}
    study = store.get_or_create_study("seq", config=config, image_dir=None)
    person = store.add_annotator("a0", None).id
    store.add_labels([{"annotator_id": person, "example_id": add_example(store, study.id, **CELL, source_key=str(e),
                                                                         class_name="c"), "choice": "finetuned"}
                      for e in range(10)], source="cli")
    result = replay_study(store, "seq")
    assert result["settings"]["generalize"] == "these_annotators" and result["cells"][0]["verdict"] == "aligned"
    with pytest.raises(UserError, match="recorded its verdict rule when it was built"):
        replay_study(store, "seq", SETTINGS)
    store.close()
