"""The annotation page's logic, free of Streamlit so that tests and benchmarks call it directly.

Blinding lives here: the page only ever deals in *buttons* ("A", "neither", "B") and
neutral image bytes; which map sits on which side is decided by :func:`left_map` from a
server-side secret, and translated back to a choice (original | finetuned | neither)
only on its way into the store.
"""
from __future__ import annotations

import hashlib
import hmac
import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harmony_cli.store import SIDES, Store

BUTTONS = ("A", "neither", "B")  # left map, "Neither", right map
SECRET_NAME = "page-side-order"
# An answer this soon after an example appeared is the second click of a double click (or a
# held key) meant for the previous example: it is dropped instead of answering one unseen.
MIN_ANSWER_MS = 250


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


def display_png(path: Path, min_side: int = 256) -> bytes | None:
    """The image re-encoded as a plain PNG (no file name, no metadata), small ones enlarged
    by a whole factor with nearest-neighbour so pixels stay sharp; None if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (OSError, UnidentifiedImageError):
        return None
    factor = max(1, min_side // max(image.size))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


_WRITER_QUEUES: dict[str, threading.Lock] = {}
_WRITER_QUEUES_LOCK = threading.Lock()


@contextmanager
def _writer_queue(store: Store) -> Iterator[None]:
    """Queue this server's answers to an SQLite store on a lock.

    A page server's sessions are threads of one process. SQLite admits one writer at a time,
    and a writer that finds it busy sleeps in growing steps (up to 100 ms) before retrying;
    waiting on a lock instead hands the write over the moment the previous one commits.
    Other servers and PostgreSQL are unaffected (the database still serializes them).
    """
    if store.engine.dialect.name != "sqlite":
        yield
        return
    with _WRITER_QUEUES_LOCK:
        lock = _WRITER_QUEUES.setdefault(store.url, threading.Lock())
    with lock:
        yield


@dataclass
class CellCursor:
    """Where an annotator is in one cell.

    ``index`` is the shown example's place in ``example_ids``, or None for the cell's end
    screen; ``shown_at`` is when that example appeared (a monotonic clock, for response_ms).
    """

    study_id: int
    cell: dict
    example_ids: list[int]
    index: int | None
    shown_at: float = field(default_factory=time.monotonic)

    @property
    def example_id(self) -> int | None:
        return None if self.index is None else self.example_ids[self.index]

    @property
    def total(self) -> int:
        return len(self.example_ids)

    def show(self, index: int | None, now: float | None = None) -> None:
        self.index = index
        self.shown_at = time.monotonic() if now is None else now

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


def open_cell(store: Store, annotator_id: int, study_id: int, cell: dict, now: float | None = None) -> CellCursor:
    """A cursor on the annotator's first unanswered example of the cell (the end screen if none)."""
    cell = {k: cell[k] for k in ("dataset", "metric", "backbone", "attribution")}
    ids = store.cell_example_ids(study_id, cell)
    cursor = CellCursor(study_id, cell, ids, None)
    first = store.next_unlabeled(annotator_id, study_id, cell)
    cursor.show(ids.index(first) if first is not None else None, now)
    return cursor


def submit_answer(store: Store, secret: str, annotator_id: int, cursor: CellCursor, button: str,
                  example_id: int | None = None, now: float | None = None,
                  min_answer_ms: int | None = None) -> bool:
    """Store the answer for the shown example, then move to the next unanswered one.

    ``example_id`` is the example the pressed button was drawn for: a click that arrives
    after the screen moved on is ignored, as is one within ``min_answer_ms`` (default MIN_ANSWER_MS)
    of a new example.
    Returns whether the answer was stored. One upsert per answer, so repeats never duplicate.
    """
    now = time.monotonic() if now is None else now
    shown = cursor.example_id
    if shown is None or (example_id is not None and example_id != shown):
        return False
    response_ms = int(round((now - cursor.shown_at) * 1000))
    if response_ms < (MIN_ANSWER_MS if min_answer_ms is None else min_answer_ms):
        return False
    left = left_map(secret, annotator_id, shown)
    with _writer_queue(store):
        store.answer(annotator_id, shown, choice_for(button, left), left_map=left, response_ms=response_ms,
                     source="page")
    following = store.next_unlabeled(annotator_id, cursor.study_id, cursor.cell, after=shown)
    if following is not None and following not in cursor.example_ids:  # examples were added meanwhile
        cursor.example_ids = store.cell_example_ids(cursor.study_id, cursor.cell)
    cursor.show(None if following is None else cursor.example_ids.index(following), now)
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


class LoginThrottle:
    """Slows down repeated failed logins, per entered name (whether or not it exists).

    The first ``free`` failures within ``window_s`` cost nothing; each further attempt
    waits ``base_s`` doubled per extra failure, at most ``max_s``. A success clears the name.
    Shared by every session of a page server, hence the lock.
    """

    def __init__(self, free: int = 3, base_s: float = 1.0, max_s: float = 10.0, window_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.free, self.base_s, self.max_s, self.window_s, self.clock = free, base_s, max_s, window_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, name: str) -> list[float]:
        horizon = self.clock() - self.window_s
        recent = [t for t in self._failures.get(name, []) if t > horizon]
        if recent:
            self._failures[name] = recent
        else:
            self._failures.pop(name, None)
        return recent

    def delay(self, name: str) -> float:
        """Seconds to wait before checking this attempt's password."""
        with self._lock:
            extra = len(self._recent(name)) - self.free
        return 0.0 if extra < 0 else min(self.max_s, self.base_s * 2 ** extra)

    def failed(self, name: str) -> None:
        with self._lock:
            self._failures[name] = [*self._recent(name), self.clock()]

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)
