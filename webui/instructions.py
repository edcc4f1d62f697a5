"""A study's instructions on the annotation page: before the first example, with a practice pair, and from Help.

When an annotator opens a cell of a study in which their account has no label yet, the page shows the
study's instructions (``Study.config["instructions"]``, Markdown, set by ``study.instructions`` or
``harmony studies set-instructions``; else :data:`DEFAULT_INSTRUCTIONS`), then the practice pair
(webui/practice.py), then the real examples. Shown once per study and login session, and never again
to an account once it has labelled the study (nor in a study whose config sets ``instructions_first:
false``). The Help button on an example shows the instructions
again and returns to the same example under a new display token, with its time on screen starting
afresh: a press made before or during Help never lands on a display it was not made on.

webui/app.py calls three things: :func:`take_practice_presses` before the page handles presses,
:func:`screen` in place of the example screen, and :func:`help_button` beside Back/Next.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import streamlit as st
from sqlalchemy import select

from harmony_cli.store import Example, Label, Store, Study
from harmony_cli.study.instructions import CONFIG_KEY
from webui import pair
from webui.practice import Practice
from webui.presses import PressLog
from webui.session import CellCursor

# The line above every pair; the default instructions below say the same in full.
INSTRUCTION = "Select the map that better explains the prediction, or Neither if they are of equal quality"
DEFAULT_INSTRUCTIONS = f"""\
Each screen shows an **image**, the class a model **predicted** for it, and two **maps** of that
prediction: map A and map B. A map is drawn over a faint grey copy of the image; its bright parts are
where the explanation says the model looked to make the prediction.

**{INSTRUCTION}.**

- Answer with the buttons **Map A**, **Neither** and **Map B**, or with the keys **1**, **2**, **3**
  (or **←**, **↓**, **→**).
- Your answer is saved at once and the next example appears. **Back** shows earlier examples; an answer
  can be changed by pressing another button.
- There is no right answer: judge each pair for yourself, at your own pace.
- **Help** shows these instructions again.
"""
# Study.config key: false shows no instructions nor practice before the first example (Help still shows them).
FIRST_KEY = "instructions_first"
STATE_KEY = "study_instructions"
Mount = Callable[[dict, object], None]  # webui/app.py's mount_pair(header, images)


@dataclass
class IntroState:
    """One login session's progress through the studies' instructions."""

    annotator_id: int
    seen: set[int] = field(default_factory=set)  # studies shown (or labelled before): straight to the examples
    study_id: int | None = None  # the study whose instructions or practice are on screen
    stage: str | None = None  # "instructions" | "practice" | None
    practice: Practice | None = None
    help_for: CellCursor | None = None  # the example screen Help was pressed on


def intro_state(annotator_id: int) -> IntroState:
    """This session's state (a new one for another account logged in on the same page)."""
    current = st.session_state.get(STATE_KEY)
    if current is None or current.annotator_id != annotator_id:
        current = st.session_state[STATE_KEY] = IntroState(annotator_id)
    return current


def study_config(store: Store, study_id: int) -> dict:
    with store.read() as session:
        study = session.get(Study, study_id)
        return dict((study.config if study is not None else None) or {})


def study_instructions(store: Store, study_id: int) -> str:
    """The study's instructions (Markdown), or the default text when it has none."""
    return str(study_config(store, study_id).get(CONFIG_KEY) or "").strip() or DEFAULT_INSTRUCTIONS


def instructions_due(store: Store, annotator_id: int, study_id: int) -> bool:
    """Whether the instructions and the practice pair come before this account's first example of the
    study: unless it has labelled the study already, or the study turned them off (``FIRST_KEY: false``)."""
    if study_config(store, study_id).get(FIRST_KEY, True) is False:
        return False
    with store.read() as session:
        return session.scalar(select(Label.id).join(Example, Label.example_id == Example.id).where(
            Label.annotator_id == annotator_id, Example.study_id == study_id).limit(1)) is None


# hooks called by webui/app.py ------------------------------------------------------------------

def take_practice_presses(annotator_id: int, log: PressLog) -> None:
    """Consume the practice pair's presses before the page stores real ones (they are never stored)."""
    intro = intro_state(annotator_id)
    if intro.practice is not None:
        intro.practice.take(pair.presses(st.session_state.get(pair.KEY)), log, on_screen=intro.stage == "practice")


def screen(store: Store, annotator_id: int, cursor: CellCursor, mount: Mount) -> bool:
    """Draw the instructions, the practice pair or Help in place of the example screen; False: none is due."""
    intro = intro_state(annotator_id)
    if intro.help_for is not None:
        if intro.help_for is cursor:
            help_screen(store, cursor, intro, mount)
            return True
        intro.help_for = None  # another cell was opened meanwhile
    if cursor.study_id in intro.seen:
        return False
    if intro.study_id != cursor.study_id:
        if not instructions_due(store, annotator_id, cursor.study_id):
            intro.seen.add(cursor.study_id)
            return False
        intro.study_id, intro.stage = cursor.study_id, "instructions"
    if intro.stage == "practice":
        practice_screen(cursor, intro, mount)
    else:
        instructions_screen(store, cursor, intro, mount)
    return True


def help_button(container, annotator_id: int, cursor: CellCursor) -> None:
    """The Help button, centred in ``container`` (the column between Back and Next)."""
    _, middle, _ = container.columns([1, 1, 1])
    middle.button("Help", key="nav-help", on_click=open_help, args=(annotator_id, cursor), width="stretch")


# callbacks ---------------------------------------------------------------------------------------

def open_help(annotator_id: int, cursor: CellCursor) -> None:
    intro_state(annotator_id).help_for = cursor


def back_to_example(intro: IntroState, cursor: CellCursor) -> None:
    """Show the example again as a new display: a new token, and its time on screen from now."""
    intro.help_for = None
    cursor.show(cursor.index)


def start_practice(intro: IntroState) -> None:
    intro.stage, intro.practice = "practice", Practice()


def start_study(intro: IntroState, cursor: CellCursor) -> None:
    intro.seen.add(cursor.study_id)
    intro.study_id = intro.stage = None
    cursor.show(cursor.index)  # the time spent on the instructions is not the first answer's


def show_instructions_again(intro: IntroState) -> None:
    intro.stage = "instructions"


# screens -------------------------------------------------------------------------------------------

def instructions_screen(store: Store, cursor: CellCursor, intro: IntroState, mount: Mount) -> None:
    st.subheader("Before you start")
    with st.container(border=True):
        st.markdown(study_instructions(store, cursor.study_id))
    st.caption("Next: one practice pair, to try the buttons and keys. It is not part of the study and its "
               "answer is not stored.")
    st.button("Try the practice pair", key="intro-practice", type="primary", on_click=start_practice,
              args=(intro,))
    mount({"token": None}, None)  # keys pressed here are not stored (and the page says so)


def practice_screen(cursor: CellCursor, intro: IntroState, mount: Mount) -> None:
    practice = intro.practice
    st.info("**Practice pair**: try the buttons, or the keys 1, 2, 3 (← ↓ →). It is not part of the study, "
            "and your answer here is not stored.")
    mount(practice.header(INSTRUCTION), practice.served_images())
    feedback = practice.feedback()
    if feedback:
        st.info(feedback)  # not "success": in the study there is no right answer
    again, _, start = st.columns([2, 1, 2])
    again.button("Read the instructions again", key="intro-again", on_click=show_instructions_again,
                 args=(intro,), width="stretch")
    start.button("Start the study", key="intro-start", type="primary", disabled=feedback is None,
                 on_click=start_study, args=(intro, cursor), width="stretch",
                 help=None if feedback else "Answer the practice pair first")


def help_screen(store: Store, cursor: CellCursor, intro: IntroState, mount: Mount) -> None:
    st.subheader("Instructions")
    with st.container(border=True):
        st.markdown(study_instructions(store, cursor.study_id))
    st.button("Back to the example", key="help-back", type="primary", on_click=back_to_example,
              args=(intro, cursor))
    mount({"token": None}, None)
