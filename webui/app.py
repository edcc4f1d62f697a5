"""The annotation page: ``streamlit run webui/app.py``.

Annotators log in with the account an admin made (``harmony annotators add``), pick a
study cell, and for each example choose the map that better explains the prediction.
The database is ``HARMONY_DB_URL`` (default ``sqlite:///$HARMONY_OUTPUTS/harmony.db``, ``outputs/`` by default).

Blinding: the browser only ever sees "map A" / "map B", uncompressed PNGs of equal length
with no names (webui/images.py) and neutral widget keys; the original/fine-tuned side is
decided and translated on the server (webui/session.py). The example on screen and its
answers are one browser component (webui/pair.py): an answer names the display it was made
on, and the server stores it only for that display.
"""
from __future__ import annotations

import logging

import streamlit as st

from harmony_cli.cells import cell_text
from harmony_cli.store import Store, StoreError, resolve_db_url
from webui import dashboard as admin_dashboard
from webui import instructions as page_instructions
from webui import login as page_login
from webui import pair
from webui.images import pair_images
from webui.presses import PressLog, handle_presses
from webui.session import SECRET_NAME, CellCursor, example_screen, open_cell

log = logging.getLogger("harmony.webui")

INSTRUCTION = page_instructions.INSTRUCTION  # one source: the study's default instructions say it in full
PAGE_CSS = (
    "<style>"
    # less empty space above the page, so that an example fits a laptop screen
    "[data-testid='stMainBlockContainer'] { padding-top: 2.5rem; padding-bottom: 2rem; }"
    "</style>"
)
SESSION_ENDED = ("Your session has ended (it expired, you logged out in another tab, or an admin changed your "
                 "account): log in again.")
DECIDED = "This cell is decided: its labels answer the study's question, so it needs no more. Thank you!"
SESSION_KEYS = ("annotator_id", "annotator_name", "session_version", "page_token", "cursor", "display")


# shared per page server -------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def open_store(url: str) -> Store:
    return Store.open(url, create=False)


@st.cache_resource(show_spinner=False)
def store_secret(url: str, name: str) -> str:
    return open_store(url).secret(name)


@st.cache_resource(show_spinner=False)
def pair_component():
    return pair.component()


# callbacks (run before the page redraws) ----------------------------------------------------

def log_out(url: str) -> None:
    """End this tab's login: in the store first (its URL token stops working everywhere), then here."""
    open_store(url).end_page_session(st.session_state.get("page_token"))
    for key in SESSION_KEYS:
        st.session_state.pop(key, None)
    for key in (page_login.QUERY_KEY, admin_dashboard.VIEW_KEY):  # the next account in this tab starts afresh
        if key in st.query_params:
            del st.query_params[key]


def enter_cell(url: str, row: dict) -> None:
    st.session_state.cursor = open_cell(open_store(url), st.session_state.annotator_id, row["study_id"], row)
    st.session_state.image_dir = row["image_dir"]


def leave_cell() -> None:
    st.session_state.pop("cursor", None)


def first_unanswered(url: str) -> None:
    cursor: CellCursor = st.session_state.cursor
    st.session_state.cursor = open_cell(open_store(url), st.session_state.annotator_id, cursor.study_id, cursor.cell)


def press_log() -> PressLog:
    if "press_log" not in st.session_state:
        st.session_state.press_log = PressLog()
    return st.session_state.press_log


def take_presses(store: Store, url: str) -> None:
    """Store or refuse the presses the browser queued since the last run (before anything is drawn)."""
    queued = pair.presses(st.session_state.get(pair.KEY))
    if not queued:
        return
    log_ = press_log()
    handle_presses(store, store_secret(url, SECRET_NAME), st.session_state.annotator_id,
                   st.session_state.get("cursor"), queued, log_, st.session_state.session_version)
    if log_.ended:
        log_out(url)


# login ----------------------------------------------------------------------------------------

def start_session(annotator, token: str) -> None:
    """This tab is logged in to ``annotator`` by the store's page session ``token`` (also in the URL)."""
    st.session_state.annotator_id = annotator.id
    st.session_state.annotator_name = annotator.name
    st.session_state.session_version = annotator.session_version
    st.session_state.page_token = token
    st.query_params[page_login.QUERY_KEY] = token


def resume_session(store: Store) -> None:
    """Log in again from the page URL's token after a reload; drop a token that is no longer good."""
    token = st.query_params.get(page_login.QUERY_KEY)
    if token is None:
        return
    annotator = store.page_session(token)
    if annotator is not None:
        start_session(annotator, token)
    else:
        del st.query_params[page_login.QUERY_KEY]


# screens ------------------------------------------------------------------------------------

def login_screen(store: Store, url: str) -> None:
    st.title("harmony")
    st.caption("Sign in with the account your study's admin made for you.")
    with st.form("login"):
        name = st.text_input("Name", key="login-name")
        password = st.text_input("Password", type="password", key="login-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    try:
        # throttled in the store, for every page server alike, per name and client address
        result = store.login(name, password, client=st.context.ip_address)
        annotator = result.annotator
        token = store.start_page_session(annotator.id, annotator.session_version) if annotator else None
    except StoreError as exc:
        log.error("login failed in the store: %s", exc)
        st.error("The study database cannot be used right now. Please tell your study's admin.")
        return
    if annotator is None:
        st.error(result.message)
        return
    start_session(annotator, token)
    st.rerun()


def cell_status(row: dict) -> str:
    """A cell's progress toward its labels, and what it still wants from this annotator."""
    status = (f"{row['labels']} / {row['needed']} labels ({row['labels_per_example']} per example) · "
              f"you answered {row['done']} of {row['examples']}")
    if row["decided"]:  # (its verdict is not shown to annotators)
        return status + " · decided: needs no more labels"
    if row["complete"]:
        return status + " · complete"
    if row["available"] == 0:
        return status + " · needs nothing more from you"
    return status


def cells_screen(store: Store, url: str) -> None:
    st.title("Your study cells")
    rows = store.annotator_cells(st.session_state.annotator_id)
    if not rows:
        st.info("No study is open to you yet: your study's admin assigns you one.")
        return
    st.caption("Pick a cell to annotate. Your progress is saved after every answer.")
    for number, row in enumerate(rows):
        with st.container(border=True):
            text, action = st.columns([4, 1], vertical_alignment="center")
            text.markdown(f"**{cell_text(row, separator=admin_dashboard.CELL_SEPARATOR)}**  \n"
                          f"{row['study']} · {row['dataset']}")
            text.progress(min(1.0, row["labels"] / row["needed"]) if row["needed"] else 0.0, text=cell_status(row))
            wanted = row["available"] > 0
            label = "Start" if row["done"] == 0 and wanted else ("Continue" if wanted else "Review")
            action.button(label, key=f"cell-{number}", on_click=enter_cell, args=(url, row),
                          type="primary" if wanted else "secondary")


def end_screen(store: Store, url: str, done: int, total: int) -> None:
    cursor: CellCursor = st.session_state.cursor
    annotator_id = st.session_state.annotator_id
    st.progress(done / total if total else 1.0, text=f"{done} / {total} answered")
    if not store.cell_open_to(annotator_id, cursor.study_id, cursor.cell):
        st.warning("This cell is closed to new labels for you (the study was closed, or the cell unassigned). "
                   "Your answers so far are kept.")
    elif done >= total:
        st.success(f"Done: you answered all {total} examples of this cell. Thank you!")
    elif store.cell_decided(cursor.study_id, cursor.cell):
        st.success(DECIDED)
    elif store.next_to_label(annotator_id, cursor.study_id, cursor.cell, cursor.quota) is None:
        st.success(f"This cell needs nothing more from you: every example you have not answered has its "
                   f"{cursor.quota} labels from other annotators. Thank you!")
    else:
        st.warning(f"{total - done} of {total} examples of this cell are still unanswered.")
        st.button("Go to the first unanswered", key="nav-unanswered", type="primary",
                  on_click=first_unanswered, args=(url,))
    left, right = st.columns(2)
    left.button("Back", key="nav-back", on_click=st.session_state.cursor.back, width="stretch")
    right.button("Back to your cells", key="nav-cells", on_click=leave_cell, width="stretch")


def display_images(cursor: CellCursor, screen):
    """The served images of the cursor's display, made once per display (each carries a fresh nonce)."""
    cached = st.session_state.get("display")
    if cached is None or cached[0] != cursor.token:
        cached = (cursor.token, pair_images(screen.image, screen.left, screen.right))
        st.session_state.display = cached
        if cached[1] is None:
            cursor.unanswerable = cursor.token  # no answer without both maps and the image on screen
    return cached[1]


def mount_pair(header: dict, images) -> None:
    """The example on screen and its answer buttons/keys (webui/pair.js); mounted on every cell screen,
    so that presses made just before the end screen are still reported."""
    press_log_ = press_log()
    header = {**header, **press_log_.report()}
    pair_component()(key=pair.KEY, data=pair.pack(header, images), default={"presses": []},
                     on_presses_change=lambda: None)


def example_screen_ui(store: Store, url: str) -> None:
    cursor: CellCursor = st.session_state.cursor
    screen = example_screen(store, store_secret(url, SECRET_NAME), st.session_state.annotator_id, cursor,
                            st.session_state.image_dir)
    if screen is None:
        mount_pair({"token": None}, None)
        done = store.count_answered(st.session_state.annotator_id, cursor.study_id, cursor.cell)
        end_screen(store, url, done, cursor.total)
        return
    images = display_images(cursor, screen)
    mount_pair({"token": cursor.token, "instruction": INSTRUCTION, "answered": screen.answered,
                "progress": f"Example {cursor.index + 1} of {screen.total} · {screen.done} answered",
                "prediction": screen.example.class_name}, images)
    back, help_, forward = st.columns([1, 3, 1])
    back.button("Back", key="nav-back", on_click=cursor.back, disabled=cursor.index == 0, width="stretch")
    page_instructions.help_button(help_, st.session_state.annotator_id, cursor)
    forward.button("Next", key="nav-next", on_click=cursor.next, width="stretch")


def header(in_cell: bool) -> None:
    who, cells, out = st.columns([4, 1.3, 1], vertical_alignment="center")
    who.markdown(f"**harmony** · signed in as **{st.session_state.annotator_name}**")
    if in_cell:
        cells.button("Your cells", key="header-cells", on_click=leave_cell, width="stretch")
    out.button("Log out", key="log-out", on_click=log_out, args=(resolve_db_url(),), width="stretch")


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
    if "annotator_id" not in st.session_state:
        resume_session(store)
    elif store.page_session(st.session_state.get("page_token")) is None:
        log_out(url)  # logged out in another tab, past its lifetime, deactivated, or a new password
        st.warning(SESSION_ENDED)
    if "annotator_id" in st.session_state:
        page_instructions.take_practice_presses(st.session_state.annotator_id, press_log())  # never stored
        take_presses(store, url)
        if "annotator_id" not in st.session_state:
            st.warning(SESSION_ENDED)
    if "annotator_id" not in st.session_state:
        login_screen(store, url)
        return
    header(in_cell="cursor" in st.session_state)
    if admin_dashboard.show(store):  # admins: the dashboard (webui/dashboard.py); a non-admin is refused it
        return
    if "cursor" not in st.session_state:
        cells_screen(store, url)
    elif not page_instructions.screen(store, st.session_state.annotator_id, st.session_state.cursor, mount_pair):
        example_screen_ui(store, url)  # (instructions, the practice pair or Help come first when due)


if __name__ == "__main__":
    main()
