"""The annotation page's logic, free of Streamlit so that tests and benchmarks call it directly.

Blinding lives here: the page only ever deals in *buttons* ("A", "neither", "B") and
neutral image bytes; which map sits on which side is decided by :func:`left_map` from a
server-side secret, and translated back to a choice (original | finetuned | neither)
only on its way into the store.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_cli.analysis.looks import after_answer
from harmony_cli.cells import CELL_FIELDS
from harmony_cli.store import SIDES, AnswerRefused, CellClosed, Store

log = logging.getLogger("harmony.webui")
BUTTONS = ("A", "neither", "B")  # left map, "Neither", right map
# A sequential study's looks run here, one at a time per page server, off the annotator's answer: a look
# reads the cell's labels and runs the rule, and the answer should not wait for it (harmony_cli.analysis.looks).
_LOOKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="harmony-looks")
SECRET_NAME = "page-side-order"
BUTTON_NAMES = {"A": "Map A", "neither": "Neither", "B": "Map B"}


def left_map(secret: str, annotator_id: int, example_id: int) -> str:
    """Which map ("original" or "finetuned") this annotator sees on the left for this example.

    A keyed hash of (annotator, example): random across pairs, the same on every reload,
    session and page server, and not computable without the store's secret.
    """
    digest = hmac.new(secret.encode(), f"{annotator_id}:{example_id}".encode(), hashlib.sha256).digest()
    return SIDES[digest[0] & 1]


def other_side(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


def choice_for(button: str, left: str) -> str:
    """The stored choice for a pressed button, given which map was on the left."""
    if button == "A":
        return left
    if button == "B":
        return other_side(left)
    if button == "neither":
        return "neither"
    raise ValueError(f"unknown button {button!r}: one of {', '.join(BUTTONS)}")


def button_for(choice: str | None, left: str) -> str | None:
    """The button that shows a stored choice on this screen (inverse of :func:`choice_for`)."""
    if choice is None:
        return None
    if choice == "neither":
        return "neither"
    return "A" if choice == left else "B"


def map_paths(example: Any, left: str) -> tuple[str | None, str | None]:
    """(left, right) image paths of the two maps, relative to the study's image folder.

    The map as rendered for display (``*_map_path``: the map over a faint copy of the image,
    see harmony_cli.study.rendering) is shown, else the plain heatmap.
    """
    original = example.original_map_path or example.original_heatmap_path
    finetuned = example.finetuned_map_path or example.finetuned_heatmap_path
    return (original, finetuned) if left == "original" else (finetuned, original)


def resolve_image(image_dir: str | None, relative: str | None) -> Path | None:
    """The file ``relative`` inside ``image_dir``, or None when absent or outside it.

    Paths come from the database: one that resolves (through ``..`` or a link) outside
    the study's image folder is refused.
    """
    if not image_dir or not relative:
        return None
    base = Path(image_dir).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def run_looks_later(store: Store, cell) -> Future | None:
    """The due looks of the cell ``Store.answer`` returned (None: nothing to do), on the page server's look
    thread. A look that fails is logged and done at the cell's next answer (looks compare look numbers)."""
    if cell is None:
        return None
    future = _LOOKS.submit(after_answer, store, cell)
    future.add_done_callback(_log_failed_look)
    return future


def _log_failed_look(future: Future) -> None:
    if future.exception() is not None:
        log.error("a sequential look failed (it runs again at the cell's next answer): %s", future.exception())


def looks_done(timeout: float = 30) -> None:
    """Wait until the looks submitted so far are done (the look thread takes them in order)."""
    _LOOKS.submit(lambda: None).result(timeout)


def new_token() -> str:
    return secrets.token_urlsafe(12)


@dataclass
class CellCursor:
    """Where an annotator is in one cell.

    ``index`` is the shown example's place in ``example_ids``, or None for the cell's end
    screen; ``shown_at`` is when that example appeared (a monotonic clock, for response_ms);
    ``token`` names this display of it: an opaque random string, new at every move, that the
    browser sends back with an answer (see :func:`submit_answer`). ``quota``: the study's labels
    per example (the page moves on to examples that still need labels).
    """

    study_id: int
    cell: dict
    example_ids: list[int]
    index: int | None
    quota: int = 1
    shown_at: float = field(default_factory=time.monotonic)
    token: str = field(default_factory=new_token)
    unanswerable: str | None = None  # the token of a display whose images could not be shown

    @property
    def example_id(self) -> int | None:
        return None if self.index is None else self.example_ids[self.index]

    @property
    def total(self) -> int:
        return len(self.example_ids)

    def show(self, index: int | None, now: float | None = None) -> None:
        self.index = index
        self.shown_at = time.monotonic() if now is None else now
        self.token = new_token()

    def back(self, now: float | None = None) -> None:
        """The previous example (from the end screen: the last one)."""
        if self.index is None:
            self.show(self.total - 1 if self.total else None, now)
        elif self.index > 0:
            self.show(self.index - 1, now)

    def next(self, now: float | None = None) -> None:
        """The following example, or the end screen after the last."""
        if self.index is not None:
            self.show(self.index + 1 if self.index + 1 < self.total else None, now)


def start_after(store: Store, annotator_id: int, study_id: int, cell: dict, ids: list[int],
                quota: int) -> int | None:
    """The example after which this annotator starts looking (None: from the start).

    Only when the cell has more annotators than labels per example (not everyone labels every
    example), annotators who open it at once spread over it instead of all being handed its first
    example and then refused on it: the k-th of its n annotators starts k/n of the way in.
    """
    team = store.cell_annotators(study_id, cell)
    if len(team) <= quota or annotator_id not in team or not ids:
        return None
    offset = team.index(annotator_id) * len(ids) // len(team)
    return ids[offset - 1] if offset else None


def open_cell(store: Store, annotator_id: int, study_id: int, cell: dict, now: float | None = None) -> CellCursor:
    """A cursor on the example this annotator should label first (least-labelled of those they have not
    answered and that still need labels), or on the end screen if the cell needs nothing more from them."""
    cell = {k: cell[k] for k in CELL_FIELDS}
    ids = store.cell_example_ids(study_id, cell)
    cursor = CellCursor(study_id, cell, ids, None, quota=store.study_rules(study_id).labels_per_example)
    first = store.next_to_label(annotator_id, study_id, cell, cursor.quota,
                                after=start_after(store, annotator_id, study_id, cell, ids, cursor.quota))
    cursor.show(ids.index(first) if first is not None else None, now)
    return cursor


def move_on(store: Store, annotator_id: int, cursor: CellCursor, after: int, now: float) -> None:
    """Show the next example that needs this annotator's label after ``after`` (the end screen if none)."""
    following = store.next_to_label(annotator_id, cursor.study_id, cursor.cell, cursor.quota, after=after)
    if following is not None and following not in cursor.example_ids:  # examples were added meanwhile
        cursor.example_ids = store.cell_example_ids(cursor.study_id, cursor.cell)
    cursor.show(None if following is None else cursor.example_ids.index(following), now)


def submit_answer(store: Store, secret: str, annotator_id: int, cursor: CellCursor, button: str, token: str,
                  now: float | None = None, session_version: int | None = None) -> bool:
    """Store the answer ``button`` pressed on the display named ``token``, then move to the next
    unanswered example. Returns whether it was stored.

    Only the display the cursor serves now is answerable: a press made on an earlier display (the
    browser had not drawn the move yet, or a second press of a double click) is refused, never
    re-targeted to the example now shown. Each display takes one answer. ``session_version``:
    the account's version at login (the store refuses the answer if it changed since, or if the
    study's rules refuse it: see Store.answer). One upsert per answer, so repeats never duplicate. In a
    sequential study the answer then queues its cell's due looks (:func:`run_looks_later`): an answer that
    reaches the cell meanwhile is still taken, and the decision uses only the labels of its look.
    An answer the study's rules refuse (AnswerRefused) moves the cursor on too (to the end screen
    when the cell is closed to the annotator) and is raised for the page to say why.
    """
    if button not in BUTTONS:
        raise ValueError(f"unknown button {button!r}: one of {', '.join(BUTTONS)}")
    now = time.monotonic() if now is None else now
    shown = cursor.example_id
    if shown is None or not token or not hmac.compare_digest(token, cursor.token) or token == cursor.unanswerable:
        return False
    response_ms = int(round((now - cursor.shown_at) * 1000))
    left = left_map(secret, annotator_id, shown)
    try:
        new_label = store.answer(annotator_id, shown, choice_for(button, left), left_map=left,
                                 response_ms=response_ms, source="page", session_version=session_version)
    except CellClosed:
        cursor.show(None, now)
        raise
    except AnswerRefused:
        move_on(store, annotator_id, cursor, shown, now)
        raise
    run_looks_later(store, new_label)  # a sequential study's due looks: the cell may be decided soon after
    move_on(store, annotator_id, cursor, shown, now)
    return True


@dataclass
class Screen:
    """What the page draws for one example, already blinded: sides, not models."""

    example: Any          # the example's row (id, class_name, image paths, ...)
    image: Path | None
    left: Path | None     # map A
    right: Path | None    # map B
    answered: str | None  # the button of the current answer, if any
    done: int             # answered examples of the cell
    total: int


def example_screen(store: Store, secret: str, annotator_id: int, cursor: CellCursor,
                   image_dir: str | None) -> Screen | None:
    """The shown example with its images resolved inside the study's folder (None: end screen)."""
    if cursor.example_id is None:
        return None
    example = store.annotator_example(annotator_id, cursor.example_id)
    if example is None:  # deleted meanwhile: the cell's list is stale
        cursor.example_ids = store.cell_example_ids(cursor.study_id, cursor.cell)
        cursor.show(None)
        return None
    left = left_map(secret, annotator_id, example.id)
    left_path, right_path = map_paths(example, left)
    return Screen(example=example, image=resolve_image(image_dir, example.image_path),
                  left=resolve_image(image_dir, left_path), right=resolve_image(image_dir, right_path),
                  answered=button_for(example.choice, left), done=example.done, total=cursor.total)
