"""The annotation page: ``streamlit run webui/app.py``.

Annotators log in with the account an admin made (``harmony annotators add``), pick a
study cell, and for each example choose the map that better explains the prediction.
The database is ``HARMONY_DB_URL`` (default ``sqlite:///outputs/harmony.db``).

Blinding: the browser only ever sees "map A" / "map B", image bytes re-encoded without
names or metadata, and neutral widget keys; the original/fine-tuned side is decided and
translated on the server (webui/session.py).
"""
from __future__ import annotations

import logging
import time

import streamlit as st

from harmony_cli.store import Store, StoreError, resolve_db_url
from webui.session import (SECRET_NAME, CellCursor, LoginThrottle, display_png, example_screen, open_cell,
                           submit_answer)

log = logging.getLogger("harmony.webui")

INSTRUCTION = "Select the map that better explains the prediction, or Neither if they are of equal quality"
# (button, label, number key, arrow key)
ANSWER_BUTTONS = (("A", "Map A", "1", "Left"), ("neither", "Neither", "2", "Down"), ("B", "Map B", "3", "Right"))
IMAGE_WIDTH = 224  # the maps fill their columns (about 270 px)
PAGE_CSS = (
    "<style>"
    # the arrow-key twins of the answer buttons (Streamlit binds one shortcut per button)
    ".st-key-arrow-keys { display: none; }"
    # less empty space above the page, so that an example fits a laptop screen
    "[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; padding-bottom: 2rem; }"
    "</style>"
)


# shared per page server -------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def open_store(url: str) -> Store:
    return Store.open(url, create=False)


@st.cache_resource(show_spinner=False)
def side_secret(url: str) -> str:
    return open_store(url).secret(SECRET_NAME)


@st.cache_resource(show_spinner=False)
def login_throttle() -> LoginThrottle:
    return LoginThrottle()


# No spinner anywhere: Streamlit's spinner text names the function's arguments (paths, URLs).
@st.cache_data(show_spinner=False, max_entries=1024)
def image_bytes(path: str, mtime_ns: int) -> bytes | None:
    from pathlib import Path

    return display_png(Path(path))


def show_image(path, alt: str, width: int | str) -> None:
    """The image as bytes (served under a content hash), or a plain placeholder."""
    try:
        data = image_bytes(str(path), path.stat().st_mtime_ns) if path is not None else None
    except OSError:  # removed since it was resolved
        data = None
    if data is None:
        st.info("Image not available.")
    else:
        st.image(data, width=width, alt=alt, output_format="PNG")


# callbacks (run before the page redraws) ----------------------------------------------------

def log_out() -> None:
    for key in ("annotator_id", "annotator_name", "cursor"):
        st.session_state.pop(key, None)


def enter_cell(url: str, row: dict) -> None:
    st.session_state.cursor = open_cell(open_store(url), st.session_state.annotator_id, row["study_id"], row)
    st.session_state.image_dir = row["image_dir"]


def leave_cell() -> None:
    st.session_state.pop("cursor", None)


def answer(url: str, button: str, example_id: int) -> None:
    if "cursor" not in st.session_state or "annotator_id" not in st.session_state:
        return  # a click from a screen already left (logged out, back to the cells)
    submit_answer(open_store(url), side_secret(url), st.session_state.annotator_id, st.session_state.cursor,
                  button, example_id=example_id)


def first_unanswered(url: str) -> None:
    cursor: CellCursor = st.session_state.cursor
    st.session_state.cursor = open_cell(open_store(url), st.session_state.annotator_id, cursor.study_id, cursor.cell)


# screens ------------------------------------------------------------------------------------

def login_screen(store: Store) -> None:
    st.title("harmony")
    st.caption("Sign in with the account your study's admin made for you.")
    with st.form("login"):
        name = st.text_input("Name", key="login-name")
        password = st.text_input("Password", type="password", key="login-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    throttle = login_throttle()
    name = name.strip()
    time.sleep(throttle.delay(name))
    annotator = store.authenticate(name, password)
    if annotator is None:
        throttle.failed(name)
        st.error("Wrong name or password.")
        return
    throttle.succeeded(name)
    st.session_state.annotator_id = annotator.id
    st.session_state.annotator_name = annotator.name
    st.rerun()


def cells_screen(store: Store, url: str) -> None:
    st.title("Your study cells")
    rows = store.annotator_cells(st.session_state.annotator_id)
    if not rows:
        st.info("There is nothing to annotate yet. Ask your study's admin.")
        return
    st.caption("Pick a cell to annotate. Your progress is saved after every answer.")
    for number, row in enumerate(rows):
        with st.container(border=True):
            text, action = st.columns([4, 1], vertical_alignment="center")
            text.markdown(f"**{row['metric']} · {row['backbone']} · {row['attribution']}**  \n"
                          f"{row['study']} · {row['dataset']}")
            text.progress(row["done"] / row["examples"] if row["examples"] else 0.0,
                          text=f"{row['done']} / {row['examples']} done")
            label = "Start" if row["done"] == 0 else ("Review" if row["done"] >= row["examples"] else "Continue")
            action.button(label, key=f"cell-{number}", on_click=enter_cell, args=(url, row),
                          type="primary" if 0 < row["done"] < row["examples"] else "secondary")


def end_screen(url: str, done: int, total: int) -> None:
    st.progress(done / total if total else 1.0, text=f"{done} / {total} answered")
    if done >= total:
        st.success(f"Done: you answered all {total} examples of this cell. Thank you!")
    else:
        st.warning(f"{total - done} of {total} examples of this cell are still unanswered.")
        st.button("Go to the first unanswered", key="nav-unanswered", type="primary",
                  on_click=first_unanswered, args=(url,))
    left, right = st.columns(2)
    left.button("Back", key="nav-back", on_click=st.session_state.cursor.back, width="stretch")
    right.button("Back to your cells", key="nav-cells", on_click=leave_cell, width="stretch")


def example_screen_ui(store: Store, url: str) -> None:
    cursor: CellCursor = st.session_state.cursor
    study_dir = st.session_state.image_dir
    screen = example_screen(store, side_secret(url), st.session_state.annotator_id, cursor, study_dir)
    if screen is None:
        done = store.count_answered(st.session_state.annotator_id, cursor.study_id, cursor.cell)
        end_screen(url, done, cursor.total)
        return
    example_id = screen.example.id
    st.progress(screen.done / screen.total,
                text=f"Example {cursor.index + 1} of {screen.total} · {screen.done} answered")

    with st.container(horizontal_alignment="center"):
        show_image(screen.image, "the image", IMAGE_WIDTH)
        st.markdown(f"Model prediction: **{screen.example.class_name}**", width="content")

    st.markdown(f"##### {INSTRUCTION}", anchors=False, text_alignment="center")
    side_a, neither, side_b = st.columns([2, 1, 2], vertical_alignment="center")
    places = {"A": side_a, "neither": neither, "B": side_b}
    with side_a:
        show_image(screen.left, "map A", "stretch")
    with side_b:
        show_image(screen.right, "map B", "stretch")
    for button, label, number_key, _ in ANSWER_BUTTONS:
        places[button].button(label, key=f"choice-{button}", shortcut=number_key, width="stretch",
                              type="primary" if screen.answered == button else "secondary",
                              on_click=answer, args=(url, button, example_id))
    with st.container(key="arrow-keys"):
        for button, label, _, arrow_key in ANSWER_BUTTONS:
            st.button(label, key=f"arrow-{button}", shortcut=arrow_key, on_click=answer, args=(url, button, example_id))
    if screen.answered is not None:
        shown = dict((b, label) for b, label, _, _ in ANSWER_BUTTONS)[screen.answered]
        st.caption(f"Your answer: **{shown}**. Press another to change it.")
    else:
        st.caption("Keys: 1 or ← for map A, 2 or ↓ for Neither, 3 or → for map B.")

    back, _, forward = st.columns([1, 3, 1])
    back.button("Back", key="nav-back", on_click=cursor.back, disabled=cursor.index == 0,
                width="stretch")
    forward.button("Next", key="nav-next", on_click=cursor.next, width="stretch")


def still_active(store: Store, name: str) -> bool:
    annotator = store.annotator(name)
    return annotator is not None and annotator.active


def header(in_cell: bool) -> None:
    who, cells, out = st.columns([4, 1.3, 1], vertical_alignment="center")
    who.markdown(f"**harmony** · signed in as **{st.session_state.annotator_name}**")
    if in_cell:
        cells.button("Your cells", key="header-cells", on_click=leave_cell, width="stretch")
    out.button("Log out", key="log-out", on_click=log_out, width="stretch")


def main() -> None:
    st.set_page_config(page_title="harmony: annotation", layout="centered")
    st.html(PAGE_CSS)
    url = resolve_db_url()
    try:
        store = open_store(url)
    except StoreError as exc:
        log.error("annotation page cannot open its store: %s", exc)  # the URL may hold a password: not shown
        st.error("The study database is not ready. Please tell your study's admin.")
        return
    if "annotator_id" in st.session_state and not still_active(store, st.session_state.annotator_name):
        log_out()  # deactivated by an admin since logging in
    if "annotator_id" not in st.session_state:
        login_screen(store)
        return
    header(in_cell="cursor" in st.session_state)
    if "cursor" not in st.session_state:
        cells_screen(store, url)
    else:
        example_screen_ui(store, url)


if __name__ == "__main__":
    main()
