"""The answer upsert (Store.answer) and labels_frame at their edges: what one answer stores and
audits, what is refused and leaves nothing behind, the session check, and the frame's rows."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from harmony_cli.store import Label, LabelAudit, SessionEnded, Store, StoreError
from tests.helpers import CELL



@pytest.fixture
def store(sqlite_url):
    with Store.open(sqlite_url) as store:
        yield store


def setup(store: Store, study: str = "s", examples: int = 2) -> list[int]:
    sid = store.get_or_create_study(study).id
    return store.add_examples(sid, [dict(CELL, source_key=f"{study}{i}", class_name=f"c{i}", original_score=0.25,
                                         finetuned_score=0.5 + i) for i in range(examples)])


def audit_rows(store: Store) -> list[tuple]:
    with store.read() as session:
        return [(a.example_id, a.choice, a.previous_choice, a.left_map, a.response_ms, a.source)
                for a in session.scalars(select(LabelAudit).order_by(LabelAudit.id))]


def test_answer_stores_and_audits_each_change_with_its_previous_choice(store):
    first, second = setup(store)
    ana = store.add_annotator("ana", None).id
    store.answer(ana, first, "original", left_map="finetuned", response_ms=1200)
    store.answer(ana, first, "neither", left_map="original", response_ms=800, source="cli")
    store.answer(ana, second, "finetuned")
    label = store.label(ana, first)
    assert (label.choice, label.left_map, label.response_ms) == ("neither", "original", 800)
    assert (store.label(ana, second).left_map, store.label(ana, second).response_ms) == (None, None)
    assert audit_rows(store) == [(first, "original", None, "finetuned", 1200, "page"),
                                 (first, "neither", "original", "original", 800, "cli"),
                                 (second, "finetuned", None, None, None, "page")]
    with store.read() as session:
        assert session.scalar(select(func.count(Label.id))) == 2


def test_answer_refuses_bad_values_and_unknown_rows_storing_nothing(store):
    [example] = setup(store, examples=1)
    ana = store.add_annotator("ana", None).id
    with pytest.raises(StoreError, match="choice must be one of original, finetuned, neither, not 'left'"):
        store.answer(ana, example, "left")
    with pytest.raises(StoreError, match="left_map must be one of original, finetuned or None, not 'neither'"):
        store.answer(ana, example, "original", left_map="neither")
    with pytest.raises(StoreError, match=f"no annotator {ana + 7} or no example {example}"):
        store.answer(ana + 7, example, "original")
    with pytest.raises(StoreError, match=f"no annotator {ana} or no example {example + 7}"):
        store.answer(ana, example + 7, "original")
    assert audit_rows(store) == [] and store.label(ana, example) is None


def test_answer_with_a_session_version_checks_the_account_first(store):
    [example] = setup(store, examples=1)
    ana = store.add_annotator("ana", None)
    store.assign("ana", "s")  # a page answer (with a session version) needs the cell assigned
    store.answer(ana.id, example, "original", session_version=ana.session_version)
    with pytest.raises(SessionEnded):
        store.answer(ana.id, example, "finetuned", session_version=ana.session_version + 1)
    with pytest.raises(SessionEnded):
        store.answer(ana.id + 99, example, "finetuned", session_version=0)  # no such account
    store.set_active("ana", False)
    store.answer(ana.id, example, "neither")  # without a session version (imports, the CLI): no check
    assert store.label(ana.id, example).choice == "neither"
    with pytest.raises(SessionEnded):
        store.answer(ana.id, example, "finetuned", session_version=store.annotator("ana").session_version)
    assert [row[1] for row in audit_rows(store)] == ["original", "neither"]


def test_labels_frame_rows_and_study_filter(store):
    first, second = setup(store, "s")
    [other] = setup(store, "t", examples=1)
    ana = store.add_annotator("ana", None).id
    sim = store.add_annotator("sim", None, simulated=True).id
    store.answer(ana, second, "finetuned", left_map="original", response_ms=5)
    store.answer(sim, first, "neither")
    store.answer(ana, other, "original")
    frame = store.labels_frame("s")
    assert list(frame.columns) == ["study", "example_id", "dataset", "metric", "backbone", "attribution",
                                   "original_score", "finetuned_score", "annotator", "simulated", "admin",
                                   "choice", "left_map", "response_ms"]
    rows = frame[["example_id", "annotator", "simulated", "choice", "finetuned_score"]].values.tolist()
    assert rows == [[second, "ana", False, "finetuned", 1.5], [first, "sim", True, "neither", 0.5]]  # answer order
    assert set(frame.study) == {"s"} and frame.response_ms.tolist()[0] == 5
    every = store.labels_frame()
    assert len(every) == 3 and set(every.study) == {"s", "t"}
    assert store.labels_frame("nothing").empty
