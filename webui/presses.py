"""The browser's presses on the pair component (webui/pair.js): handled in order, each once, every refusal said.

The browser numbers the presses of its page 1, 2, 3, ... and sends every press not yet reported back as one
queue (the component's state ``presses``: dicts seq, token, button). :class:`PressLog` keeps, per page
session, the last press handled (``processed``) and the refusals; the page's header carries them back
(:meth:`PressLog.report`), so the browser drops what was handled and shows every refusal, merged into one
notice per reason however many arrive at once.

A press is handled only as the next one of the sequence: ``seq`` an integer, ``processed + 1``. A resend
of a handled press (1 <= seq <= processed) is skipped; anything else (no number, not an integer, below 1,
past a gap such as 10**9, a number given twice) is refused and leaves ``processed`` where it was, so a
garbled or forged press never makes the real presses that follow look handled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harmony_cli.store import AnswerRefused, SessionEnded, Store
from webui.session import BUTTON_NAMES, BUTTONS, CellCursor, new_token, submit_answer

MAX_BATCH = 500  # presses looked at per queue; the rest wait for the next send (the browser sends oldest first)

# Why presses were refused, as the browser's merged notice says it: "<n> presses were not stored: <reason>."
NO_ANSWER = "no answer was named"
SESSION_ENDED = "your session has ended (the account was deactivated or its password changed); log in again"
UNANSWERABLE = "this example could not be shown, so it takes no answer; use Next to move on"
NO_EXAMPLE = "no example was open any more"
NOT_ON_SCREEN = "no example was on screen to answer"
MOVED_ON = ("the page had already moved on from the example they were made on; check the example shown and "
            "press again if you meant it")
PRACTICE = "they were made on the practice pair"
BAD_NUMBER = "they came without a valid press number"
OUT_OF_SEQUENCE = "their press numbers were out of sequence"


@dataclass
class PressLog:
    """The presses of one page session handled so far: the last sequence number handled, the latest
    refusals (seq, reason, message) and how many were refused per reason since the log began."""

    processed: int = 0
    refused: list[tuple[int | None, str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # never trimmed: the browser's notices add up to it
    ended: bool = False  # the account's session ended (deactivated, new password): log out
    keep: int = 100
    name: str = field(default_factory=new_token)  # a new log restarts the browser's numbering
    checked: list | None = None  # the last queue checked, and its presses in sequence
    in_sequence: list[dict] = field(default_factory=list)

    def refuse(self, seq: int | None, reason: str, message: str) -> None:
        self.counts = {**self.counts, reason: self.counts.get(reason, 0) + 1}
        self.refused = [*self.refused, (seq, reason, message)][-self.keep:]

    def report(self) -> dict:
        """The page header's fields for the browser (webui/pair.js ``report``)."""
        return {"log": self.name, "processed": self.processed, "refused": [list(r) for r in self.refused],
                "refusals": dict(self.counts)}

    def fresh(self, presses: list) -> list[dict]:
        """The presses of the browser's queue still to handle, in sequence order; the others refused once.

        The same queue comes back on every rerun until the browser sends another: its faults were said
        the first time, so it only yields what is still unhandled.
        """
        presses = presses if isinstance(presses, list) else []
        if presses == self.checked:
            return [p for p in self.in_sequence if p["seq"] > self.processed]
        self.checked = presses
        numbered = []
        for press in presses[:MAX_BATCH]:
            seq = press.get("seq") if isinstance(press, dict) else None
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                self.refuse(None, BAD_NUMBER, "A press was not stored: it came without a valid press number.")
            elif seq > self.processed:
                numbered.append(press)
        expected, self.in_sequence = self.processed + 1, []
        for press in sorted(numbered, key=lambda p: p["seq"]):
            if press["seq"] == expected:
                self.in_sequence.append(press)
                expected += 1
            else:
                self.refuse(press["seq"], OUT_OF_SEQUENCE, f"Press {press['seq']} was not stored: its number was "
                                                           f"out of sequence (the page expected {expected}).")
        return list(self.in_sequence)


def button_name(button) -> str:
    return BUTTON_NAMES.get(button, "answer") if isinstance(button, str) else "answer"


def handle_presses(store: Store, secret: str, annotator_id: int, cursor: CellCursor | None, presses: list,
                   log: PressLog, session_version: int | None = None) -> None:
    """Handle the browser's queue of presses in sequence, each once.

    Every press ends stored or refused in ``log``: none is dropped without a word.
    """
    for press in log.fresh(presses):
        seq, button, token = press["seq"], press.get("button"), press.get("token")
        log.processed = seq
        said = f"Your “{button_name(button)}” (press {seq}) was not stored"
        if not isinstance(button, str) or button not in BUTTONS:
            log.refuse(seq, NO_ANSWER, f"Your press {seq} was not stored: it named no answer.")
        elif log.ended:
            log.refuse(seq, SESSION_ENDED, f"{said}: your session has ended; log in again.")
        elif not isinstance(token, str) or not token:
            log.refuse(seq, NOT_ON_SCREEN, f"{said}: {NOT_ON_SCREEN}.")
        elif cursor is not None and token == cursor.unanswerable:
            log.refuse(seq, UNANSWERABLE, f"{said}: {UNANSWERABLE}.")
        elif cursor is None or cursor.example_id is None:
            log.refuse(seq, NO_EXAMPLE, f"{said}: {NO_EXAMPLE}.")
        else:
            submit(store, secret, annotator_id, cursor, press, log, session_version)


def submit(store: Store, secret: str, annotator_id: int, cursor: CellCursor, press: dict, log: PressLog,
           session_version: int | None) -> None:
    """One press on an open example: stored, or refused with why."""
    seq, button = press["seq"], press["button"]
    said = f"Your “{button_name(button)}” (press {seq}) was not stored"
    try:
        stored = submit_answer(store, secret, annotator_id, cursor, button, press["token"],
                               session_version=session_version)
    except SessionEnded:
        log.ended = True
        log.refuse(seq, SESSION_ENDED, f"{said}: {SESSION_ENDED}.")
        return
    except AnswerRefused as refused:
        log.refuse(seq, f"{refused}; the page moved on", f"{said}: {refused}. The page moved on.")
        return
    if not stored:
        log.refuse(seq, MOVED_ON, f"{said}: the page had already moved on from the example you pressed it on. "
                                  f"Check the example shown and press again if you meant it.")
