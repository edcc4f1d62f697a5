"""Early stopping in the store (harmony_cli/store/sequential_cells.py): a sequential study's looks are done once
each, under concurrent writers too; a decided cell takes no more labels and the page skips it; a cell that
reaches its maximum undecided is inconclusive; a fixed study is untouched; an older store opens and keeps its
labels."""
from __future__ import annotations

import sqlite3

import numpy as np

import pytest
from sqlalchemy import func, select, text, update

from harmony_cli.analysis.looks import after_answer, cell_design, run_due_looks_of_examples
from harmony_cli.store import CellClosed, Label, Meta, SCHEMA_VERSION, Store
from harmony_cli.store.models import SequentialCell

RMA = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
FOCUS = dict(RMA, metric="focus")


def make_study(url: str, design: dict | None, examples: int = 10, people: int = 4, quota: int = 4) -> tuple[Store, dict]:
    """A study "s" of two cells (rma, focus) of ``examples`` examples, ``people`` accounts a0.. assigned to it;
    ``design``: the study's design keys (None: none recorded, as a study built before designs)."""
    store = Store.open(url)
    study = store.get_or_create_study("s", config={"labels_per_example": quota, **(design or {})})
    ids = {cell["metric"]: store.add_examples(study.id, [dict(cell, source_key=str(i), position=i, class_name="c")
                                                        for i in range(examples)]) for cell in (RMA, FOCUS)}
    ids["people"] = [store.add_annotator(f"a{i}", None).id for i in range(people)]
    for i in range(people):
        store.assign(f"a{i}", "s")
    ids["study_id"] = study.id
    return store, ids


def sequential(look_every: int = 5, max_labels: int | None = 40) -> dict:
    return {"design": "sequential", "sequential": {"look_every": look_every, "max_labels_per_cell": max_labels}}


def record(store: Store, study_id: int, cell: dict, verdict: str, look: int, labels: int | None) -> None:
    """A cell's state as the store records it after a look."""
    with store.write() as session:
        session.add(SequentialCell(study_id=study_id, **cell, look=look, verdict=verdict, labels=labels))


def states(store: Store, study_id: int) -> dict[str, tuple]:
    return {row["metric"]: (row["look"], row["verdict"], row["labels"]) for row in store.sequential_cells(study_id)}


def test_a_decided_cell_takes_no_labels_is_not_offered_and_is_listed_after_the_undecided(db_url):
    store, ids = make_study(db_url, sequential())
    ana = ids["people"][0]
    record(store, ids["study_id"], RMA, "aligned", 2, 10)
    record(store, ids["study_id"], FOCUS, "undecided", 1, None)
    assert store.next_to_label(ana, ids["study_id"], RMA, 4) is None
    assert store.next_to_label(ana, ids["study_id"], FOCUS, 4) == ids["focus"][0]
    rows = store.annotator_cells(ana)
    assert [r["metric"] for r in rows] == ["focus", "rma"]  # undecided first (rma would sort first by name)
    focus, rma = rows
    assert (rma["decided"], rma["verdict"], rma["decided_labels"], rma["available"]) == (True, "aligned", 10, 0)
    assert (focus["decided"], focus["verdict"], focus["look"], focus["available"]) == (False, "undecided", 1, 10)
    with pytest.raises(CellClosed, match="decided"):  # the page's answer: refused, nothing stored
        store.answer(ana, ids["rma"][0], "finetuned", session_version=0)
    assert store.label(ana, ids["rma"][0]) is None
    after_answer(store, store.answer(ana, ids["focus"][0], "finetuned", session_version=0))  # still takes labels
    assert store.label(ana, ids["focus"][0]).choice == "finetuned"
    assert store.cell_decided(ids["study_id"], RMA) and not store.cell_decided(ids["study_id"], FOCUS)
    store.close()


def test_a_fixed_study_records_no_looks_and_offers_every_cell(db_url):
    store, ids = make_study(db_url, {"design": "fixed"}, examples=6)
    for person in ids["people"]:
        for example in ids["rma"]:
            after_answer(store, store.answer(person, example, "finetuned", session_version=0))
    assert store.sequential_cells(ids["study_id"]) == []
    rows = store.annotator_cells(ids["people"][0])
    assert [(r["metric"], r["design"], r["verdict"], r["decided"]) for r in rows] == [
        ("focus", "fixed", None, False), ("rma", "fixed", None, False)]
    fresh = store.add_annotator("fresh", None).id
    store.assign("fresh", "s")
    assert store.next_to_label(fresh, ids["study_id"], RMA, 5) == ids["rma"][0]  # quota 5 > 4 labels: still offered
    store.close()


def test_a_version_4_store_is_upgraded_in_place_and_keeps_its_labels(sqlite_url):
    store, ids = make_study(sqlite_url, None, examples=2)
    store.answer(ids["people"][0], ids["rma"][0], "finetuned")
    with store.write() as session:  # back to what schema 4 held: no sequential cells
        session.execute(text(f"DROP TABLE {SequentialCell.__tablename__}"))
        session.execute(update(Meta).where(Meta.key == "schema_version").values(value="4"))
    store.close()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:
        assert SequentialCell.__tablename__ not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    with Store.open(sqlite_url, create=False) as store:
        with store.read() as session:
            assert session.get(Meta, "schema_version").value == str(SCHEMA_VERSION) == "5"
            assert [(row.annotator_id, row.choice) for row in session.scalars(select(Label))] == [
                (ids["people"][0], "finetuned")]
            assert session.scalar(select(func.count(SequentialCell.id))) == 0
        record(store, ids["study_id"], RMA, "aligned", 1, 5)  # the new table takes rows
        assert states(store, ids["study_id"]) == {"rma": (1, "aligned", 5)}


# The looks against the rule itself: the decision a cell's stored real labels give, look by look (each on the
# first min(k x look_every, max) labels in the order they were stored), as harmony_cli.analysis.sequential
# defines it; the store must record exactly this, once.

CODES = {"original": 0, "neither": 1, "finetuned": 2}


def stored_labels(store: Store, examples: list[int]) -> list[tuple[int, int, str]]:
    with store.read() as session:
        return session.execute(select(Label.example_id, Label.annotator_id, Label.choice)
                               .where(Label.example_id.in_(examples)).order_by(Label.id)).all()


def first_decision(store: Store, study_id: int, examples: list[int]) -> tuple[int, str, int | None]:
    """(look, verdict, labels) of the first look that decides the cell, or the last look done and undecided."""
    from harmony_cli.analysis import AnalysisSettings
    from harmony_cli.analysis.sequential import UNDECIDED, cell_decision

    study = next(s for s in store.studies() if s.id == study_id)
    design = cell_design(study.config, study.source, len(examples))
    rows = stored_labels(store, examples)
    example, annotator = [r[0] for r in rows], [r[1] for r in rows]
    choice = [CODES[r[2]] for r in rows]
    verdict = UNDECIDED
    for look in range(1, design.look_at(len(rows)) + 1):
        used = min(look * design.look_every, design.max_labels)
        verdict, _ = cell_decision(*(np.asarray(a[:used]) for a in (example, annotator, choice)), design,
                                   AnalysisSettings.defaults(), 2)
        if verdict != UNDECIDED:
            return look, verdict, used
    return design.look_at(len(rows)), verdict, None


def log_looks(url: str) -> None:
    """An SQLite trigger that logs every look the store records (an independent witness of the updates)."""
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.executescript(f"""
            CREATE TABLE look_log (look INTEGER, verdict TEXT);
            CREATE TRIGGER log_first_look AFTER INSERT ON {SequentialCell.__tablename__}
            BEGIN INSERT INTO look_log VALUES (NEW.look, NEW.verdict); END;
            CREATE TRIGGER log_look AFTER UPDATE ON {SequentialCell.__tablename__}
            BEGIN INSERT INTO look_log VALUES (NEW.look, NEW.verdict); END;""")


def logged_looks(url: str) -> list[tuple[int, str]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return list(conn.execute("SELECT look, verdict FROM look_log ORDER BY rowid"))


def test_one_sided_labels_decide_the_cell_at_the_rules_look_and_it_takes_no_more(sqlite_url):
    store, ids = make_study(sqlite_url, sequential(look_every=5, max_labels=40))
    log_looks(sqlite_url)
    refused = 0
    for example in ids["rma"]:
        for person in ids["people"]:
            try:
                after_answer(store, store.answer(person, example, "finetuned", session_version=0))
            except CellClosed:
                refused += 1
    look, verdict, used = first_decision(store, ids["study_id"], ids["rma"])
    assert verdict == "aligned"  # 4 annotators, every label for the fine-tuned map
    assert states(store, ids["study_id"]) == {"rma": (look, "aligned", used)}
    assert len(stored_labels(store, ids["rma"])) == used and refused == 40 - used  # none after the decision
    assert logged_looks(sqlite_url) == [(k, "undecided") for k in range(1, look)] + [(look, "aligned")]
    assert all(store.next_to_label(p, ids["study_id"], RMA, 4) is None for p in ids["people"])
    store.close()


def test_concurrent_writers_record_each_look_once_and_the_decision_once(sqlite_url):
    from tests.helpers import stores_in_threads

    store, ids = make_study(sqlite_url, sequential(look_every=5, max_labels=40), people=8, quota=8)
    log_looks(sqlite_url)
    store.close()

    def work(t: int, own: Store) -> None:  # 8 page servers, each an annotator answering every rma example
        for example in ids["rma"][t % 2::2] + ids["rma"][(t + 1) % 2::2]:
            try:
                after_answer(own, own.answer(ids["people"][t], example, "finetuned", session_version=0))
            except CellClosed:
                pass

    stores_in_threads(sqlite_url, work, 8)
    with Store.open(sqlite_url) as store:
        look, verdict, used = first_decision(store, ids["study_id"], ids["rma"])
        assert verdict == "aligned" and states(store, ids["study_id"]) == {"rma": (look, "aligned", used)}
    logged = logged_looks(sqlite_url)
    assert [k for k, _ in logged] == list(range(1, look + 1))  # each look once, in order, none skipped
    assert [v for _, v in logged].count("aligned") == 1


def test_a_cell_that_reaches_its_maximum_undecided_is_inconclusive(sqlite_url):
    store, ids = make_study(sqlite_url, sequential(look_every=5, max_labels=10))
    choices = ["original", "finetuned"] * 10  # no preference, and too few labels to show equivalence
    answers = [(p, e) for e in ids["rma"] for p in ids["people"]]
    for (person, example), choice in zip(answers[:10], choices):
        after_answer(store, store.answer(person, example, choice, session_version=0))
    assert states(store, ids["study_id"]) == {"rma": (2, "inconclusive", 10)}
    assert first_decision(store, ids["study_id"], ids["rma"]) == (2, "inconclusive", 10)
    person, example = answers[10]
    with pytest.raises(CellClosed, match="inconclusive at 10 labels"):
        store.answer(person, example, "finetuned", session_version=0)
    store.close()


def test_simulated_labels_never_look_and_labels_stored_without_looks_are_caught_up(sqlite_url):
    store, ids = make_study(sqlite_url, sequential(look_every=5, max_labels=40))
    bots = [store.add_annotator(f"bot{i}", None, simulated=True).id for i in range(4)]
    assert all(after_answer(store, store.answer(b, e, "finetuned")) is None for b in bots for e in ids["rma"][:3])
    store.add_labels([{"annotator_id": b, "example_id": e, "choice": "finetuned"} for b in bots for e in ids["rma"]],
                     source="simulation")
    run_due_looks_of_examples(store, ids["rma"])
    assert store.sequential_cells(ids["study_id"]) == []  # 40 simulated labels: no real label, no look
    store.add_labels([{"annotator_id": p, "example_id": e, "choice": "finetuned"}
                      for e in ids["focus"][:4] for p in ids["people"][:3]])  # 12 real labels: looks 1 and 2 due
    run_due_looks_of_examples(store, ids["focus"] + ids["rma"])
    assert states(store, ids["study_id"]) == {"focus": first_decision(store, ids["study_id"], ids["focus"])}
    assert store.answer(ids["people"][0], ids["focus"][0], "neither", session_version=0) is None  # a change: no look
    store.close()


@pytest.mark.parametrize("rule, expected", [(None, "inconclusive"), ({"generalize": "these_annotators"}, "aligned")])
def test_the_looks_decide_by_the_rule_the_study_recorded(sqlite_url, rule, expected):
    """One person labels every example fine-tuned: nothing can be said about people from one person (conf's rule,
    for a study that recorded none), while for these annotators the cell is aligned (the rule it recorded)."""
    design = {**sequential(look_every=5, max_labels=10), **({"rule": rule} if rule else {})}
    store, ids = make_study(sqlite_url, design, examples=10, people=1, quota=1)
    for example in ids["rma"]:
        after_answer(store, store.answer(ids["people"][0], example, "finetuned", session_version=0))
    assert states(store, ids["study_id"]) == {"rma": (2, expected, 10)}  # decided at the last look, 10 labels
    store.close()
