"""The page's answer logic (webui/session.py) called directly, without Streamlit: which displays
take an answer, what is stored, where the cursor goes next, how presses are refused.

Which map a side shows is read from the image file's pixels (the tiny study's original maps are
red, fine-tuned ones blue), never from the session's own side bookkeeping.
"""
from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
from PIL import Image

from harmony_cli.store import Store
from tests.webui_study import BLUE, RED, _png
from webui.presses import BAD_NUMBER, NO_ANSWER, PressLog, handle_presses
from harmony_cli.store import CellClosed
from webui.session import (CellCursor, button_for, choice_for, example_screen, looks_done, map_paths, open_cell,
                           other_side, submit_answer)

SECRET = "mutation-secret"


@pytest.fixture
def study(study_template, tmp_path):
    folder, info = study_template
    shutil.copy(folder / "harmony.db", tmp_path / "harmony.db")
    store = Store.open(f"sqlite:///{tmp_path / 'harmony.db'}")
    rma = store.annotator_cells(info["ana"])
    cell = next(row for row in rma if row["metric"] == "rma")
    yield {**info, "store": store, "cell": cell, "image_dir": folder / "images"}
    store.close()


def colour_map(path) -> str:
    pixel = Image.open(path).convert("RGB").getpixel((0, 0))
    return {RED: "original", BLUE: "finetuned"}[pixel]


def shown_sides(study, cursor) -> dict[str, str]:
    """{"A": model, "B": model} as drawn for the cursor's example, read from the files."""
    screen = example_screen(study["store"], SECRET, study["ana"], cursor, str(study["image_dir"]))
    return {"A": colour_map(screen.left), "B": colour_map(screen.right)}


def labels(store: Store, annotator_id: int, example_ids) -> dict[int, tuple]:
    rows = {}
    for example_id in example_ids:
        label = store.label(annotator_id, example_id)
        if label is not None:
            rows[example_id] = (label.choice, label.left_map, label.response_ms)
    return rows


def test_session_answer_stores_the_model_shown_on_the_pressed_side_with_its_response_time(study):
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=100.0)
    expected = {}
    for i, (button, delay) in enumerate((("A", 1.5), ("B", 0.25), ("neither", 2.0))):
        assert cursor.example_id == ids[i] and cursor.shown_at == 100.0 + sum((1.5, 0.25, 2.0)[:i])
        sides = shown_sides(study, cursor)
        expected[ids[i]] = (sides.get(button, "neither"), sides["A"], int(delay * 1000))
        token = cursor.token
        assert submit_answer(store, SECRET, study["ana"], cursor, button, token, now=cursor.shown_at + delay)
        assert cursor.token != token
    assert labels(store, study["ana"], ids) == expected
    assert cursor.example_id is None and cursor.index is None  # every example answered: the end screen


def test_session_refuses_a_stale_empty_or_unanswerable_token_and_the_end_screen(study):
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    first = cursor.token
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", "", now=1.0)
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", first + "x", now=1.0)
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", first[:-1], now=1.0)
    assert (cursor.example_id, cursor.token) == (ids[0], first)  # a refusal moves nothing
    cursor.unanswerable = first  # this display's images could not be shown
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", first, now=1.0)
    cursor.unanswerable = None
    assert submit_answer(store, SECRET, study["ana"], cursor, "B", first, now=1.0)
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", first, now=2.0)  # the double press
    assert set(labels(store, study["ana"], ids)) == {ids[0]}
    cursor.show(None, now=3.0)
    assert not submit_answer(store, SECRET, study["ana"], cursor, "A", cursor.token, now=4.0)
    assert set(labels(store, study["ana"], ids)) == {ids[0]}
    with pytest.raises(ValueError, match="unknown button"):
        submit_answer(store, SECRET, study["ana"], cursor, "C", cursor.token)


def test_session_answer_moves_to_the_next_unanswered_skipping_answered_ones(study):
    store, ids = study["store"], study["cells"][0]
    store.answer(study["ana"], ids[1], "neither")  # answered in another tab
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    assert cursor.example_id == ids[0]
    assert submit_answer(store, SECRET, study["ana"], cursor, "A", cursor.token, now=5.0)
    assert (cursor.example_id, cursor.index, cursor.shown_at) == (ids[2], 2, 5.0)


def test_session_examples_added_meanwhile_are_reached_after_the_shown_ones(study):
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    for example_id in ids[1:]:
        store.answer(study["ana"], example_id, "neither")
    image_dir = study["image_dir"]
    [added] = store.add_examples(study["study_id"], [dict(
        **{k: study["cell"][k] for k in ("dataset", "metric", "backbone", "attribution")},
        source_key="rma_added", position=9, class_name="added",
        image_path=_png(image_dir / "rma_added_image.png", (9, 9, 9)),
        original_map_path=_png(image_dir / "rma_added_original.png", RED),
        finetuned_map_path=_png(image_dir / "rma_added_learn.png", BLUE))])
    assert cursor.example_ids == ids  # the cursor does not know it yet
    assert submit_answer(store, SECRET, study["ana"], cursor, "A", cursor.token, now=1.0)
    assert cursor.example_ids == [*ids, added]
    assert (cursor.example_id, cursor.index, cursor.total) == (added, 3, 4)


def test_session_presses_run_in_sequence_order_once_and_every_refusal_is_said(study):
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    first = cursor.token
    log = PressLog()
    presses = [{"seq": 2, "token": first, "button": "B"}, {"seq": 1, "token": first, "button": "A"},
               "not a press", {"seq": 3, "token": first, "button": "maybe"}]
    sides = shown_sides(study, cursor)
    handle_presses(store, SECRET, study["ana"], cursor, presses, log)
    assert labels(store, study["ana"], ids)[ids[0]][0] == sides["A"]  # seq 1 first, seq 2 on a stale display
    assert log.processed == 3 and [seq for seq, _, _ in log.refused] == [None, 2, 3]  # the non-press too
    assert log.refused[0][1] == BAD_NUMBER
    assert "“Map B” (press 2)" in log.refused[1][2] and "moved on" in log.refused[1][2]
    assert "named no answer" in log.refused[2][2] and log.refused[2][1] == NO_ANSWER
    handle_presses(store, SECRET, study["ana"], cursor, presses, log)  # the same queue again: nothing new
    assert log.processed == 3 and len(log.refused) == 3 and cursor.example_id == ids[1]
    fresh = PressLog()
    handle_presses(store, SECRET, study["ana"], cursor, [{"token": cursor.token, "button": "A"}], fresh)
    # no seq: never handled, and said
    assert (fresh.processed, [r[:2] for r in fresh.refused], cursor.example_id) == (0, [(None, BAD_NUMBER)], ids[1])
    # the browser resends its whole queue: the handled presses are skipped, the new one after them handled
    handle_presses(store, SECRET, study["ana"], None, [*presses[:2], {"seq": 4, "token": "t", "button": "A"}], log)
    assert log.refused[-1][0] == 4 and "no example was open" in log.refused[-1][2]
    cursor.unanswerable = cursor.token
    handle_presses(store, SECRET, study["ana"], cursor, [{"seq": 5, "token": cursor.token, "button": "neither"}], log)
    assert log.refused[-1][0] == 5 and "could not be shown" in log.refused[-1][2]
    assert set(labels(store, study["ana"], ids)) == {ids[0]}


def test_session_presses_after_a_session_ended_are_refused_with_a_log_in_again(study):
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    version = store.annotator_by_id(study["ana"]).session_version
    store.set_active("ana", False)
    log = PressLog()
    handle_presses(store, SECRET, study["ana"], cursor, [{"seq": 1, "token": cursor.token, "button": "A"},
                                                         {"seq": 2, "token": cursor.token, "button": "B"}],
                   log, session_version=version)
    assert log.ended and [seq for seq, _, _ in log.refused] == [1, 2]
    assert all("session has ended" in message for _, _, message in log.refused)
    assert labels(store, study["ana"], ids) == {}


def test_session_refusal_log_keeps_the_latest_hundred_and_counts_them_all():
    log = PressLog()
    for seq in range(1, 161):
        log.refuse(seq, "why" if seq % 4 else "other", f"press {seq}")
    assert [seq for seq, _, _ in log.refused] == list(range(61, 161))
    assert log.report()["refusals"] == {"why": 120, "other": 40}  # the browser's notices add up to these


def test_session_cursor_back_and_next_at_the_ends():
    cursor = CellCursor(1, {}, [7, 8, 9], None)
    cursor.back(now=1.0)
    assert (cursor.index, cursor.shown_at) == (2, 1.0)  # from the end screen: the last example
    cursor.next(now=2.0)
    assert cursor.index is None  # past the last: the end screen
    cursor.show(0, now=3.0)
    cursor.back(now=4.0)
    assert (cursor.index, cursor.shown_at) == (0, 3.0)  # nothing before the first
    cursor.next(now=5.0)
    assert (cursor.example_id, cursor.shown_at) == (8, 5.0)
    empty = CellCursor(1, {}, [], None)
    empty.back()
    assert empty.index is None


def test_session_sides_and_buttons_are_inverse_and_maps_fall_back_to_the_heatmap():
    assert other_side("original") == "finetuned" and other_side("finetuned") == "original"
    assert choice_for("A", "finetuned") == "finetuned" and choice_for("B", "finetuned") == "original"
    assert button_for(None, "original") is None and button_for("neither", "original") == "neither"
    assert button_for("original", "finetuned") == "B" and button_for("finetuned", "finetuned") == "A"
    with pytest.raises(ValueError, match="unknown button"):
        choice_for("C", "original")
    rendered = SimpleNamespace(original_map_path="o.png", original_heatmap_path="oh.png",
                               finetuned_map_path="f.png", finetuned_heatmap_path="fh.png")
    plain = SimpleNamespace(original_map_path=None, original_heatmap_path="oh.png",
                            finetuned_map_path=None, finetuned_heatmap_path="fh.png")
    assert map_paths(rendered, "original") == ("o.png", "f.png")
    assert map_paths(rendered, "finetuned") == ("f.png", "o.png")
    assert map_paths(plain, "finetuned") == ("fh.png", "oh.png")


def test_session_refused_answers_do_not_stop_the_presses_after_them(study):
    """A closed study refuses each answer with its reason; every later press of the same queue is
    still handled (and said), none left waiting."""
    store, ids = study["store"], study["cells"][0]
    cursor = open_cell(store, study["ana"], study["study_id"], study["cell"], now=0.0)
    version = store.annotator_by_id(study["ana"]).session_version  # a page answer: the study's rules apply
    store.update_study_config("webui-test", open=False)
    log = PressLog()
    handle_presses(store, SECRET, study["ana"], cursor, [{"seq": 1, "token": cursor.token, "button": "A"},
                                                         {"seq": 2, "token": cursor.token, "button": "B"},
                                                         {"seq": 3, "token": cursor.token, "button": "?"}], log,
                   session_version=version)
    assert [seq for seq, _, _ in log.refused] == [1, 2, 3] and log.processed == 3
    assert all("was not stored" in message for _, _, message in log.refused)
    assert labels(store, study["ana"], ids) == {}


def test_page_answers_do_a_sequential_cells_looks_and_a_decided_cell_takes_no_more(study):
    store = study["store"]
    store.update_study_config("webui-test", design="sequential", labels_per_example=2,
                              sequential={"look_every": 2, "max_labels_per_cell": 6})
    rma = {f: study["cell"][f] for f in ("dataset", "metric", "backbone", "attribution")}
    dee = store.add_annotator("dee", None).id
    store.assign("dee", "webui-test")
    late = open_cell(store, dee, study["study_id"], rma)  # on the cell's first example before it is decided
    for person in ("ana", "ben"):  # 3 examples each: 6 labels, the last look; 3 examples are too few to decide
        cursor = open_cell(store, study[person], study["study_id"], rma)
        while cursor.example_id is not None:
            assert submit_answer(store, SECRET, study[person], cursor, "A", cursor.token, session_version=0)
        looks_done()
        [state] = [s for s in store.sequential_cells(study["study_id"]) if s["metric"] == "rma"]
        assert (state["look"], state["verdict"]) == ((1, "undecided") if person == "ana" else (3, "inconclusive"))
    assert state["labels"] == 6
    assert open_cell(store, dee, study["study_id"], rma).example_id is None  # the decided cell offers nothing
    with pytest.raises(CellClosed, match="decided"):
        submit_answer(store, SECRET, dee, late, "B", late.token, session_version=0)
    assert late.example_id is None and store.label(dee, late.example_ids[0]) is None
