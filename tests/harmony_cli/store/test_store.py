"""The study store: constraints, upserts, audit, concurrency, schema checks (SQLite, and PostgreSQL when set)."""
from __future__ import annotations

import sqlite3
from collections import Counter

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from harmony_cli.store import (CHOICES, SCHEMA_VERSION, Example, Label, LabelAudit, Meta, Store, StoreError,
                               resolve_db_url)
from tests.helpers import CELL, stores_in_threads



def make_examples(store: Store, n: int, study: str = "s", cell: dict = CELL) -> list[int]:
    study_id = store.get_or_create_study(study).id
    return store.add_examples(study_id, [dict(cell, source_key=str(i), position=i, class_name=f"class{i % 3}")
                                         for i in range(n)])


def audit_rows(store: Store) -> list[LabelAudit]:
    with store.read() as session:
        return list(session.scalars(select(LabelAudit).order_by(LabelAudit.id)))


def test_new_store_records_its_schema_version(db_url):
    store = Store.open(db_url)
    with store.read() as session:
        meta = dict(session.execute(select(Meta.key, Meta.value)).all())
    assert meta["app"] == "harmony" and meta["schema_version"] == str(SCHEMA_VERSION)
    store.close()
    Store.open(db_url, create=False).close()  # reopens without complaint


def test_sqlite_store_is_in_wal_mode_with_a_busy_timeout(sqlite_url):
    store = Store.open(sqlite_url)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    store.close()


def test_second_answer_updates_the_label_and_every_change_is_audited(db_url):
    store = Store.open(db_url)
    [example] = make_examples(store, 1)
    ana = store.add_annotator("ana", "secret-pw").id
    store.answer(ana, example, "original", left_map="finetuned", response_ms=900)
    store.answer(ana, example, "finetuned", left_map="finetuned", response_ms=700)
    store.answer(ana, example, "neither", left_map="original")
    with store.read() as session:
        labels = list(session.scalars(select(Label)))
    assert len(labels) == 1
    assert (labels[0].choice, labels[0].left_map, labels[0].response_ms) == ("neither", "original", None)
    trail = [(a.previous_choice, a.choice, a.source) for a in audit_rows(store)]
    assert trail == [(None, "original", "page"), ("original", "finetuned", "page"), ("finetuned", "neither", "page")]
    store.close()


def test_choices_and_sides_are_checked_by_the_store_and_the_database(db_url):
    store = Store.open(db_url)
    [example] = make_examples(store, 1)
    ana = store.add_annotator("ana", "secret-pw").id
    assert CHOICES == ("original", "finetuned", "neither")
    with pytest.raises(StoreError, match="choice must be one of"):
        store.answer(ana, example, "learn")
    with pytest.raises(StoreError, match="left_map"):
        store.answer(ana, example, "original", left_map="left")
    with pytest.raises(StoreError, match="no annotator"):
        store.answer(ana + 100, example, "original")
    # The constraints hold for writers that bypass the API too.
    with pytest.raises(IntegrityError):
        with store.write() as session:
            session.execute(insert(Label).values(annotator_id=ana, example_id=example, choice="learn"))
    store.answer(ana, example, "original")
    with pytest.raises(IntegrityError):
        with store.write() as session:
            session.execute(insert(Label).values(annotator_id=ana, example_id=example, choice="neither"))
    assert store.label(ana, example).choice == "original"
    assert len(audit_rows(store)) == 1  # failed writes left nothing behind
    store.close()


def test_concurrent_writers_lose_and_duplicate_nothing(db_url):
    """8 threads, each with its own store (like 8 page servers), answer 6 examples twice over.

    Threads 2k and 2k+1 answer as the same annotator, so every label is written by two threads at once."""
    setup = Store.open(db_url)
    examples = make_examples(setup, 6)
    annotators = [setup.add_annotator(f"a{k}", None).id for k in range(4)]
    setup.close()
    threads, rounds = 8, 2

    def work(t: int, store: Store) -> None:
        for r in range(rounds):
            for i, example in enumerate(examples):
                store.answer(annotators[t // 2], example, CHOICES[(t + r + i) % 3], source=f"t{t}")

    stores_in_threads(db_url, work, threads)
    store = Store.open(db_url)
    with store.read() as session:
        labels = list(session.scalars(select(Label)))
    audit = audit_rows(store)
    assert len(labels) == len(annotators) * len(examples)  # one per pair: nothing duplicated
    assert len(audit) == threads * rounds * len(examples)  # every answer recorded: nothing lost
    assert Counter(a.source for a in audit) == {f"t{t}": rounds * len(examples) for t in range(threads)}
    for label in labels:  # the label is the last change of its pair, and the audit chain is unbroken
        chain = [a for a in audit if (a.annotator_id, a.example_id) == (label.annotator_id, label.example_id)]
        assert label.choice == chain[-1].choice
        assert [a.previous_choice for a in chain] == [None] + [a.choice for a in chain[:-1]]
    store.close()


def test_bulk_examples_and_labels_are_idempotent_and_audited(db_url):
    store = Store.open(db_url)
    ids = make_examples(store, 5)
    assert make_examples(store, 5) == ids  # same keys: same rows
    with store.read() as session:
        assert session.scalar(select(func.count(Example.id))) == 5
    ana = store.add_annotator("ana", None).id
    store.answer(ana, ids[0], "original")
    rows = [dict(annotator_id=ana, example_id=e, choice="neither") for e in ids]
    rows.append(dict(annotator_id=ana, example_id=ids[1], choice="finetuned"))  # a pair twice: the last counts
    assert store.add_labels(rows, source="import") == {"added": 4, "kept": 1, "kept_different": 1}
    assert store.label(ana, ids[0]).choice == "original"  # an answer given before is not overwritten
    assert store.label(ana, ids[1]).choice == "finetuned"
    assert store.add_labels(rows, source="import") == {"added": 0, "kept": 5, "kept_different": 1}
    assert Counter(a.source for a in audit_rows(store)) == {"page": 1, "import": 4}
    with pytest.raises(StoreError, match="choice"):
        store.add_labels([dict(annotator_id=ana, example_id=ids[0], choice="learn")])
    with pytest.raises(StoreError, match="no field"):
        store.add_examples(1, [dict(CELL, source_key="x", class_name="c", colour="red")])
    store.close()


def test_cells_count_examples_labels_and_annotators(db_url):
    store = Store.open(db_url)
    rma = make_examples(store, 3)
    focus = make_examples(store, 2, cell=dict(CELL, metric="focus"))
    ana, ben = store.add_annotator("ana", None).id, store.add_annotator("ben", None).id
    store.answer(ana, rma[0], "original")
    store.answer(ana, rma[0], "finetuned")
    store.answer(ana, rma[1], "neither")
    store.answer(ben, rma[1], "original")
    rows = {r["metric"]: r for r in store.cells()}
    assert rows["rma"] == dict(study="s", **CELL, examples=3, labels=3, annotators=2)
    assert rows["focus"] == dict(study="s", **dict(CELL, metric="focus"), examples=2, labels=0, annotators=0)
    frame = store.labels_frame("s")
    assert sorted(frame.choice) == ["finetuned", "neither", "original"]
    assert set(frame.annotator) == {"ana", "ben"} and len(focus) == 2
    store.close()


def test_annotator_passwords_are_argon2_hashes_and_inactive_accounts_cannot_log_in(sqlite_url):
    # SQLite only: hashing does not depend on the backend, and each argon2 hash costs ~0.3 s by design.
    store = Store.open(sqlite_url)
    store.add_annotator("ana", "correct horse")
    store.add_annotator("imported", None, active=False)
    assert store.annotator("ana").password_hash.startswith("$argon2")
    assert store.authenticate("ana", "correct horse").name == "ana"
    assert store.authenticate("ana", "wrong") is None
    assert store.authenticate("nobody", "correct horse") is None
    assert store.authenticate("imported", "") is None
    with pytest.raises(StoreError, match="exists already"):
        store.add_annotator("ana", "another one")
    store.set_active("ana", False)
    assert store.login("ana", "correct horse", now=1e9).annotator is None  # `now`: past the throttle's delays
    store.set_active("ana", True)
    store.set_password("ana", "battery staple")
    assert store.login("ana", "correct horse", now=2e9).annotator is None
    assert store.login("ana", "battery staple", now=3e9).annotator.name == "ana"
    with pytest.raises(StoreError, match="no annotator"):
        store.set_password("nobody", "whatever1")
    store.close()


def test_other_or_unknown_schema_version_is_refused_in_one_line(db_url):
    from harmony_cli.store.db import make_engine

    Store.open(db_url).close()

    def set_version(value: str) -> None:  # behind the store's back, as another harmony release would
        engine = make_engine(db_url)
        with engine.begin() as conn:
            conn.execute(update(Meta.__table__).where(Meta.__table__.c.key == "schema_version").values(value=value))
        engine.dispose()

    set_version(str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}.*newer harmony") as err:
        Store.open(db_url)
    assert "\n" not in str(err.value)
    set_version("v?")
    with pytest.raises(StoreError, match="unknown harmony schema version"):
        Store.open(db_url)


def test_foreign_sqlite_file_is_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a harmony store .*customers"):
        Store.open(str(foreign))
    assert foreign.read_bytes() == before  # not switched to WAL, no tables added
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal / -shm files


def test_not_a_database_and_missing_store_are_refused(tmp_path):
    text_file = tmp_path / "notes.db"
    text_file.write_text("these are my notes, not a database\n" * 20)
    with pytest.raises(StoreError, match="is not an SQLite database, so not a harmony store"):
        Store.open(str(text_file))
    missing = tmp_path / "nothing" / "here.db"
    with pytest.raises(StoreError, match="no harmony store at"):
        Store.open(str(missing), create=False)
    assert not missing.parent.exists()  # refusing to open did not create anything


def test_database_url_comes_from_argument_then_environment_then_default(monkeypatch):
    monkeypatch.setenv("HARMONY_DB_URL", "postgresql+psycopg://u@h/db")
    assert resolve_db_url("x/y.db") == "sqlite:///x/y.db"
    assert resolve_db_url() == "postgresql+psycopg://u@h/db"
    monkeypatch.delenv("HARMONY_DB_URL")
    monkeypatch.delenv("HARMONY_OUTPUTS", raising=False)
    assert resolve_db_url() == "sqlite:///outputs/harmony.db"
    # one outputs root: HARMONY_OUTPUTS moves the default store with the runs and reports
    monkeypatch.setenv("HARMONY_OUTPUTS", "/data/harmony-out")
    assert resolve_db_url() == "sqlite:////data/harmony-out/harmony.db"


def test_study_settings_are_merged_into_its_config_and_an_unknown_study_is_refused(db_url):
    with Store.open(db_url) as store:
        store.get_or_create_study("s", config={"metric": "rma", "labels_per_example": 5})
        assert store.update_study_config("s", labels_per_example=2, instructions="Look") == {
            "metric": "rma", "labels_per_example": 2, "instructions": "Look"}
        assert store.study("s").config == {"metric": "rma", "labels_per_example": 2, "instructions": "Look"}
        with pytest.raises(StoreError, match="no study called 'other'"):
            store.update_study_config("other", open=False)
        assert store.study("s").config["labels_per_example"] == 2


def test_a_version_2_store_is_upgraded_in_place_and_keeps_its_labels(sqlite_url):
    from sqlalchemy import text

    with Store.open(sqlite_url) as store:
        [example] = make_examples(store, 1)
        ana = store.add_annotator("ana", None).id
        store.answer(ana, example, "finetuned")
        with store.write() as session:  # back to what harmony's schema 2 held: no assignments
            session.execute(text("DROP TABLE harmony_assignment"))
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value="2"))
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:  # what a version-2 file looks like
        assert "harmony_assignment" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    with Store.open(sqlite_url, create=False) as store:
        with store.read() as session:
            assert session.get(Meta, "schema_version").value == str(SCHEMA_VERSION) == "5"
            assert [(label.annotator_id, label.choice) for label in session.scalars(select(Label))] == [
                (ana, "finetuned")]
        assert store.assign("ana", "s") == 1
        assert [row["examples"] for row in store.annotator_cells(ana)] == [1]
