"""Assignments and overlap in the store: who sees which cells, closed studies, and exactly
``labels_per_example`` labels per example, under concurrent answers (SQLite, and PostgreSQL when set)."""
from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from harmony_cli.store import CellClosed, ExampleFull, Label, Store, StoreError
from harmony_cli.study.settings import StudySettings
from tests.helpers import stores_in_threads

RMA = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
FOCUS = dict(RMA, metric="focus")


def make_store(url: str, people=("ana", "ben", "cy"), n: int = 3, source: str = "harmony") -> tuple[Store, dict]:
    """A study "s" of two cells (rma, focus) of ``n`` examples each, and accounts without passwords."""
    store = Store.open(url)
    study = store.get_or_create_study("s", source=source)
    ids = {cell["metric"]: store.add_examples(study.id, [dict(cell, source_key=str(i), position=i, class_name="c")
                                                        for i in range(n)]) for cell in (RMA, FOCUS)}
    ids.update({name: store.add_annotator(name, None).id for name in people})
    ids["study_id"] = study.id
    return store, ids


def cells_of(store: Store, annotator_id: int) -> list[str]:
    return [row["metric"] for row in store.annotator_cells(annotator_id)]


def label_count(store: Store, example_id: int) -> int:
    with store.read() as session:
        return session.scalar(select(func.count(Label.id)).where(Label.example_id == example_id))


def test_assignments_open_cells_to_annotators_and_are_listed(db_url):
    store, ids = make_store(db_url)
    assert cells_of(store, ids["ana"]) == []  # an unassigned account sees no study
    assert store.assign("ana", "s") == 1 and store.assign("ana", "s") == 0  # again: nothing new
    assert store.assign("ben", "s", cells=[{"metric": "focus", "backbone": "tiny", "attribution": "gradcam"}]) == 1
    assert sorted(cells_of(store, ids["ana"])) == ["focus", "rma"]
    assert cells_of(store, ids["ben"]) == ["focus"]
    assert store.assignments("s") == [
        {"annotator": "ana", "study": "s", "dataset": None, "metric": None, "backbone": None, "attribution": None},
        {"annotator": "ben", "study": "s", "dataset": None, "metric": "focus", "backbone": "tiny",
         "attribution": "gradcam"}]
    with pytest.raises(StoreError, match="whole study"):  # a cell cannot be cut out of a whole-study assignment
        store.unassign("ana", "s", cells=[RMA])
    assert store.unassign("ben", "s", cells=[FOCUS]) == 1 and cells_of(store, ids["ben"]) == []
    assert store.unassign("ana", "s") == 1 and cells_of(store, ids["ana"]) == [] and store.assignments() == []
    store.close()


def test_unknown_annotator_study_or_cell_is_refused_in_one_line_and_nothing_is_assigned(db_url):
    store, _ = make_store(db_url)
    for call, match in ((lambda: store.assign("nobody", "s"), "no annotator 'nobody'"),
                        (lambda: store.assign("ana", "nope"), "no study called 'nope'"),
                        (lambda: store.assign("ana", "s", cells=[RMA, dict(RMA, metric="road")]), "no cell road"),
                        (lambda: store.assign("ana", "s", cells=[{"metric": "rma"}]), "missing backbone"),
                        (lambda: store.unassign("ana", "nope"), "no study")):
        with pytest.raises(StoreError, match=match) as info:
            call()
        assert "\n" not in str(info.value)
    assert store.assignments() == []  # the good cell of a refused list was not assigned either
    store.close()


def test_imported_studies_are_closed_until_opened_and_a_closed_study_takes_no_page_answer(db_url):
    store, ids = make_store(db_url, source="legacy")
    store.assign("ana", "s")
    ana = store.annotator("ana")
    assert not store.study_open("s") and cells_of(store, ana.id) == []
    with pytest.raises(CellClosed, match="closed"):
        store.answer(ana.id, ids["rma"][0], "original", session_version=ana.session_version)
    store.update_study_config("s", open=True)
    assert store.study_open("s") and sorted(cells_of(store, ana.id)) == ["focus", "rma"]
    store.answer(ana.id, ids["rma"][0], "original", session_version=ana.session_version)
    store.update_study_config("s", open=False)  # closed while a page session is still open
    with pytest.raises(CellClosed):
        store.answer(ana.id, ids["rma"][1], "original", session_version=ana.session_version)
    store.answer(ana.id, ids["rma"][1], "neither")  # not a page answer (scripts, tests): no study rules
    assert [label_count(store, e) for e in ids["rma"]] == [1, 1, 0]
    store.close()


def test_a_page_answer_outside_the_annotators_cells_is_refused(db_url):
    store, ids = make_store(db_url)
    store.assign("ana", "s", cells=[RMA])
    ana = store.annotator("ana")
    with pytest.raises(CellClosed, match="not assigned"):
        store.answer(ana.id, ids["focus"][0], "original", session_version=ana.session_version)
    store.answer(ana.id, ids["rma"][0], "original", session_version=ana.session_version)
    assert label_count(store, ids["focus"][0]) == 0 and label_count(store, ids["rma"][0]) == 1
    store.close()


def test_labels_per_example_caps_new_labels_but_an_own_label_may_always_change(db_url):
    store, ids = make_store(db_url)
    assert store.study_rules(ids["study_id"]).labels_per_example == StudySettings.defaults().labels_per_example == 5
    store.update_study_config("s", labels_per_example=2)
    example = ids["rma"][0]
    people = {}
    for name in ("ana", "ben", "cy"):
        store.assign(name, "s")
        people[name] = store.annotator(name)
    store.answer(people["ana"].id, example, "original", session_version=0)
    store.answer(people["ben"].id, example, "neither", session_version=0)
    with pytest.raises(ExampleFull, match="its 2 labels"):
        store.answer(people["cy"].id, example, "finetuned", session_version=0)
    store.answer(people["ben"].id, example, "finetuned", session_version=0)  # a change of ben's own label
    with store.read() as session:
        assert dict(session.execute(select(Label.annotator_id, Label.choice).where(Label.example_id == example)).all()) \
            == {people["ana"].id: "original", people["ben"].id: "finetuned"}
    rows = {row["metric"]: row for row in store.annotator_cells(people["cy"].id)}
    assert (rows["rma"]["labels"], rows["rma"]["needed"], rows["rma"]["available"], rows["rma"]["complete"]) \
        == (2, 6, 2, False)
    store.close()


def test_the_page_hands_out_the_least_labelled_example_first(db_url):
    store, ids = make_store(db_url, people=("ana", "ben", "cy", "dee"), n=4)
    store.update_study_config("s", labels_per_example=2)
    rma, study_id = ids["rma"], ids["study_id"]
    for name in ("ana", "ben", "cy", "dee"):
        store.assign(name, "s")
    for annotator, example in (("ana", 0), ("ben", 0), ("ana", 2), ("cy", 1)):
        store.answer(ids[annotator], rma[example], "neither", session_version=0)
    # counts now [2, 1, 1, 0]: dee gets the unlabelled one first, then the half-labelled in shown order
    assert store.next_to_label(ids["dee"], study_id, RMA, quota=2) == rma[3]
    assert store.next_to_label(ids["dee"], study_id, RMA, quota=2, after=rma[1]) == rma[3]
    store.answer(ids["dee"], rma[3], "neither", session_version=0)
    assert store.next_to_label(ids["dee"], study_id, RMA, quota=2, after=rma[3]) == rma[1]  # wraps around
    assert store.next_to_label(ids["ana"], study_id, RMA, quota=2) == rma[1]  # never the full rma[0]
    for example in (1, 2, 3):
        store.answer(ids["ben"], rma[example], "neither", session_version=0)
    assert store.next_to_label(ids["dee"], study_id, RMA, quota=2) is None  # needs nothing more from dee
    [row] = [r for r in store.annotator_cells(ids["dee"]) if r["metric"] == "rma"]
    assert (row["labels"], row["needed"], row["complete"], row["available"], row["done"]) == (8, 8, True, 0, 1)
    store.close()


def test_concurrent_answers_never_take_an_example_past_its_labels(db_url):
    """8 threads, each its own store (like 8 page servers) and annotator, answer the same 5 examples at
    once with labels_per_example=3: every example ends with exactly 3 labels, the rest refused."""
    threads, quota = 8, 3
    store, ids = make_store(db_url, people=[f"a{t}" for t in range(threads)], n=5)
    store.update_study_config("s", labels_per_example=quota)
    for t in range(threads):
        store.assign(f"a{t}", "s", cells=[RMA])
    store.close()
    outcomes = Counter()

    def work(t: int, mine: Store) -> None:
        for example in ids["rma"][t % 5:] + ids["rma"][:t % 5]:  # different orders: real contention
            try:
                mine.answer(ids[f"a{t}"], example, "neither", session_version=0)
                outcomes["stored"] += 1
            except ExampleFull:
                outcomes["full"] += 1

    stores_in_threads(db_url, work, threads)
    with Store.open(db_url) as store:
        assert [label_count(store, e) for e in ids["rma"]] == [quota] * 5
    assert outcomes == {"stored": quota * 5, "full": (threads - quota) * 5}


def test_annotators_opening_a_cell_at_once_start_spread_over_it(db_url):
    from webui.session import open_cell

    store, ids = make_store(db_url, n=6)
    for name in ("ana", "ben", "cy"):
        store.assign(name, "s")
    rma = ids["rma"]

    def starts() -> list[int]:
        return [open_cell(store, ids[name], ids["study_id"], RMA).example_id for name in ("ana", "ben", "cy")]

    assert starts() == [rma[0]] * 3  # 5 labels per example: everyone labels everything, from the start
    store.update_study_config("s", labels_per_example=2)
    assert starts() == [rma[0], rma[2], rma[4]]  # more annotators than labels: the k-th of 3 at k/3 of the way
    store.unassign("cy", "s")
    assert starts()[:2] == [rma[0], rma[0]]  # two annotators, two labels per example
    store.close()


def test_labels_per_example_is_a_study_setting_of_build_dataset_with_the_stores_default():
    from harmony_cli.hydra_app import compose_config
    from harmony_cli.study.settings import BuildError, StudySettings

    assert StudySettings.from_config(compose_config([], task="build_dataset").study).labels_per_example == 5
    chosen = compose_config(["study.labels_per_example=2"], task="build_dataset").study
    assert StudySettings.from_config(chosen).labels_per_example == 2
    with pytest.raises(BuildError, match="labels_per_example=0 must be at least 1"):
        StudySettings.from_config(compose_config(["study.labels_per_example=0"], task="build_dataset").study)


def test_an_imported_study_is_closed_until_opened_and_keeps_its_labels_per_example(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harmony_cli.main import app
    from tests.legacy_fixtures import write_fixtures

    monkeypatch.setenv("HARMONY_OUTPUTS", str(tmp_path / "outputs"))
    db = f"sqlite:///{tmp_path / 'h.db'}"
    write_fixtures(tmp_path / "fixtures")  # 4 examples, 3 of them with one label each
    runner = CliRunner()
    assert runner.invoke(app, ["import-legacy", str(tmp_path / "fixtures"), "--db", db, "--study", "old"]).exit_code == 0
    with Store.open(db) as store:
        ana = store.add_annotator("ana", None).id
        store.assign("ana", "old")
        assert not store.study_open("old") and store.annotator_cells(ana) == []
        assert store.study_rules(store.study("old").id).labels_per_example == 1  # as the study had it
    assert runner.invoke(app, ["studies", "open", "old", "--db", db]).exit_code == 0
    with Store.open(db) as store:
        assert sorted((r["metric"], r["examples"], r["labels"]) for r in store.annotator_cells(ana)) == [
            ("MysteryLearnableMetric", 2, 1), ("rma", 2, 2)]
