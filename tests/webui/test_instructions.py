"""A study's instructions on the annotation page (webui/instructions.py, webui/practice.py) under AppTest:
instructions and a practice pair before the first example, the practice never stored, Help."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from harmony_cli.store import Label, LabelAudit, Store
from tests.webui.apptest import (LEAK, displayed, enter_cell, label_rows, log_in, markdown, new_page, press,
                                 refused, sent_text)
from tests.webui_study import make_study
from webui.instructions import DEFAULT_INSTRUCTIONS, INSTRUCTION
from webui.practice import CLASS_NAME, FILES, FOLDER, PROGRESS, Practice
from webui.presses import PressLog

STUDY_TEXT = "## Rules of this study\n\nLook for **the shape** of the predicted class."


@pytest.fixture(scope="module")
def study_template(tmp_path_factory):
    """This module's template: the study with instructions before the first example (conftest's ``study``
    copies it)."""
    folder = tmp_path_factory.mktemp("instructions-study")
    info = make_study(f"sqlite:///{folder / 'harmony.db'}", folder / "images", instructions_first=True)
    return folder, info


def stored_rows(store: Store) -> tuple[int, int]:
    """(labels, audit rows) in the whole store."""
    with store.read() as session:
        return (session.scalar(select(func.count(Label.id))), session.scalar(select(func.count(LabelAudit.id))))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def on_object_side(at) -> str:
    """Which side shows the map on the object, read from the served pixels against the bundled file."""
    _, (_, map_a, map_b) = displayed(at)
    on_object = np.asarray(Image.open(FOLDER / FILES["on_object"]).convert("RGB"))
    sides = [side for side, png in (("A", map_a), ("B", map_b)) if np.array_equal(pixels(png), on_object)]
    assert len(sides) == 1, sides
    return sides[0]


def test_instructions_then_the_practice_pair_come_first_and_the_practice_stores_nothing(study):
    store, rma = study["store"], study["cells"][0]
    store.update_study_config("webui-test", instructions=STUDY_TEXT)
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert not at.exception
    assert [s.value for s in at.subheader] == ["Before you start"] and STUDY_TEXT in markdown(at)
    assert displayed(at)[0]["token"] is None  # no example on screen: a key pressed here answers nothing

    at.button(key="intro-practice").click().run()
    header, images = displayed(at)
    assert (header["progress"], header["prediction"], header["instruction"]) == (PROGRESS, CLASS_NAME, INSTRUCTION)
    assert len(images) == 3 and len(images[1]) == len(images[2])  # served like a real pair
    assert "Practice pair" in at.info[0].value and at.button(key="intro-start").disabled
    on = on_object_side(at)
    off = "B" if on == "A" else "A"
    for button, said in ((off, f"You chose **map {off}**"), ("neither", "You chose **Neither**"),
                         (on, f"You chose **map {on}**")):
        press(at, button)
        assert not at.exception and refused(at) == []
        assert said in at.info[-1].value and f"**map {on}** highlights the {CLASS_NAME}" in at.info[-1].value
        assert displayed(at)[0]["answered"] == button
        assert stored_rows(store) == (0, 0)  # neither a label nor an audit row
    assert not at.button(key="intro-start").disabled

    clicked = time.monotonic()
    at.button(key="intro-start").click().run()
    assert at.session_state["cursor"].shown_at >= clicked  # the first answer's time starts on its example
    header, _ = displayed(at)
    assert header["prediction"] == "shape-0-0" and header["progress"].startswith("Example 1 of 3")
    press(at, "neither")
    assert [(row.example_id, row.choice) for row in label_rows(store, study["ana"])] == [(rma[0], "neither")]
    at.button(key="header-cells").click().run()
    enter_cell(at, store, study["ana"], "focus")  # another cell of the same study: straight to its examples
    assert displayed(at)[0]["prediction"] == "shape-1-0"


def test_the_default_text_and_who_sees_it_again(study):
    store, focus = study["store"], study["cells"][1]
    store.answer(study["ben"], focus[0], "neither", left_map="original")
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert DEFAULT_INSTRUCTIONS.strip() in markdown(at) and INSTRUCTION in DEFAULT_INSTRUCTIONS
    at.button(key="intro-practice").click().run()
    at.button(key="header-cells").click().run()  # leaves during the practice: it is still due on return
    enter_cell(at, store, study["ana"], "rma")
    assert displayed(at)[0]["progress"] == PROGRESS
    again = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")  # a new login session, no label yet
    assert [s.value for s in again.subheader] == ["Before you start"]
    ben = enter_cell(log_in(new_page(), "ben"), store, study["ben"], "rma")  # has labelled the study before
    # straight to an example of the cell (which one: where the page spreads its annotators, not tested here)
    assert displayed(ben)[0]["prediction"].startswith("shape-0-") and not ben.subheader
    store.update_study_config("webui-test", instructions_first=False)
    off = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert displayed(off)[0]["prediction"] == "shape-0-0"


def test_a_practice_press_arriving_late_is_refused_visibly_and_real_presses_after_it_still_count(study):
    store, rma = study["store"], study["cells"][0]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    at.button(key="intro-practice").click().run()
    practice_token = displayed(at)[0]["token"]
    press(at, "A")
    at.button(key="intro-start").click().run()
    press(at, "B", token=practice_token)  # e.g. a double press that reached the server after Start
    assert "made on the practice pair, so it was not stored" in refused(at)[-1]
    assert stored_rows(store) == (0, 0) and displayed(at)[0]["prediction"] == "shape-0-0"
    press(at, "neither")
    assert [(row.example_id, row.choice) for row in label_rows(store, study["ana"])] == [(rma[0], "neither")]


def test_practice_takes_only_its_own_presses_at_the_head_of_the_queue():
    practice, log = Practice(), PressLog()
    real = {"seq": 2, "token": "an-example", "button": "A"}
    practice.take([real, {"seq": 1, "token": practice.token, "button": "B"}], log, on_screen=True)
    assert (log.processed, practice.answer, log.refused) == (1, "B", [])  # the real press is left to the page
    practice.take([real, {"seq": 3, "token": practice.token, "button": "A"}], log, on_screen=True)
    assert (log.processed, practice.answer) == (1, "B")  # never past a real press waiting before it
    log.processed = 2
    practice.take([{"seq": 3, "token": practice.token, "button": "A"}], log, on_screen=False)
    assert log.processed == 3 and practice.answer == "B" and [seq for seq, _, _ in log.refused] == [3]


def test_help_shows_the_instructions_and_returns_to_the_same_example_as_a_new_display(study):
    store, rma = study["store"], study["cells"][0]
    store.update_study_config("webui-test", instructions_first=False, instructions=STUDY_TEXT)
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    at.button(key="nav-next").click().run()
    before = displayed(at)[0]
    assert before["prediction"] == "shape-0-1"
    at.button(key="nav-help").click().run()
    assert [s.value for s in at.subheader] == ["Instructions"] and STUDY_TEXT in markdown(at)
    assert displayed(at)[0]["token"] is None  # the help screen takes no answer
    press(at, "A", token="")  # what a key pressed on the help screen carries: no display
    assert stored_rows(store) == (0, 0) and "was not stored" in refused(at)[-1]
    clicked = time.monotonic()
    at.button(key="help-back").click().run()
    assert at.session_state["cursor"].shown_at >= clicked  # time on the help screen is not the answer's
    after = displayed(at)[0]
    assert after["prediction"] == "shape-0-1" and after["token"] != before["token"]
    press(at, "B", token=before["token"])  # made on the display shown before Help
    assert stored_rows(store) == (0, 0) and "moved on" in refused(at)[-1]
    press(at, "neither")
    assert [(row.example_id, row.choice) for row in label_rows(store, study["ana"])] == [(rma[1], "neither")]


def test_nothing_on_the_instructions_and_practice_screens_names_the_maps(study):
    store = study["store"]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    screens = [sent_text(at)]
    at.button(key="intro-practice").click().run()
    press(at, "A")
    screens.append(sent_text(at) + str(displayed(at)[0]))
    for text in screens:
        assert not LEAK.search(text), LEAK.search(text).group(0)


def test_the_bundled_practice_pngs_are_what_their_script_draws_one_map_on_the_object(tmp_path, capsys):
    from webui import practice_pngs

    practice_pngs.main(tmp_path)
    for name in FILES.values():
        committed, drawn = Image.open(FOLDER / name).convert("RGB"), Image.open(tmp_path / name).convert("RGB")
        assert np.array_equal(np.asarray(committed), np.asarray(drawn)), f"rerun python -m webui.practice_pngs: {name}"
    _, mask, _ = practice_pngs._pick_item()
    mask = np.asarray(Image.fromarray(mask).resize(committed.size, Image.Resampling.NEAREST))
    for name, inside in ((FILES["on_object"], True), (FILES["off_object"], False)):
        brightness = np.asarray(Image.open(FOLDER / name).convert("L"), dtype=float)
        peak = np.unravel_index(np.argmax(brightness), brightness.shape)
        assert bool(mask[peak]) is inside, name  # the map's brightest point is on (or off) the predicted object
        assert bool(brightness[mask].mean() > brightness[~mask].mean()) is inside, name
