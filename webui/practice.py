"""The practice pair: one bundled example shown before a study's first real one; its answer is never stored.

It teaches the interface (map A / Neither / map B, the keys) on the page's own pair component, with
fixed images committed under webui/practice_pair/ (drawn by webui/practice_pngs.py from the embedded
synthetic data): one map on the predicted object, one away from it. They owe nothing to any study,
so the practice tells nothing about a study's maps; they are served like a real pair (webui/images.py:
uncompressed, equal lengths, a fresh nonce), and which side holds which map is drawn at random.

Presses on the practice display carry tokens the real examples never have: :meth:`Practice.take`
consumes them (they never reach the store), in order, before the page handles real presses.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from webui.images import PairImages, pair_images
from webui.presses import PRACTICE, PressLog, button_name
from webui.session import BUTTON_NAMES, new_token

FOLDER = Path(__file__).resolve().parent / "practice_pair"
FILES = {"image": "image.png", "on_object": "on_object.png", "off_object": "off_object.png"}
CLASS_NAME = "green square"  # the class of the bundled image (webui/practice_pngs.py draws one)
PROGRESS = "Practice pair · not part of the study · your answer is not stored"


@dataclass
class Practice:
    """The practice display of one page session: which side shows the map on the object, the answer."""

    on_object: str = field(default_factory=lambda: secrets.choice(("A", "B")))
    token: str = field(default_factory=new_token)
    answer: str | None = None  # the button last pressed on it
    tokens: set[str] = field(default_factory=set)  # every practice display's token (late presses included)
    images: PairImages | None = None

    def __post_init__(self):
        self.tokens.add(self.token)

    def served_images(self) -> PairImages | None:
        """The three PNGs as the browser receives them, made once per practice display."""
        if self.images is None:
            on, off = FOLDER / FILES["on_object"], FOLDER / FILES["off_object"]
            left, right = (on, off) if self.on_object == "A" else (off, on)
            self.images = pair_images(FOLDER / FILES["image"], left, right)
        return self.images

    def header(self, instruction: str) -> dict:
        """The pair component's header for the practice display (the same fields as a real example's)."""
        return {"token": self.token, "instruction": instruction, "answered": self.answer, "progress": PROGRESS,
                "prediction": CLASS_NAME}

    def take(self, presses: list, log: PressLog, on_screen: bool) -> None:
        """Consume the practice presses at the head of the browser's queue (in order, each once).

        While the practice is ``on_screen`` a press sets its answer and redraws it under a new token;
        after, a late one is refused with a notice. Either way nothing is stored, and ``log.processed``
        moves past it so the real presses that follow are handled as ever.
        """
        for press in log.fresh(presses):
            seq, button, token = press["seq"], press.get("button"), press.get("token")
            if not isinstance(token, str) or token not in self.tokens:
                return  # a real example's press: the page's own handling takes it from here
            log.processed = seq
            if on_screen and isinstance(button, str) and button in BUTTON_NAMES:
                self.answer, self.token = button, new_token()
                self.tokens.add(self.token)
            else:
                log.refuse(seq, PRACTICE, f"Your “{button_name(button)}” (press {seq}) was made on the practice "
                                          f"pair, so it was not stored.")

    def feedback(self) -> str | None:
        """What the practice answer shows about the two maps (Markdown), or None before an answer."""
        if self.answer is None:
            return None
        on, off = self.on_object, ("B" if self.on_object == "A" else "A")
        maps = (f"Here **map {on}** highlights the {CLASS_NAME} the model predicted, and **map {off}** "
                f"highlights the background away from it.")
        if self.answer == "neither":
            chosen = "You chose **Neither**: use it when both maps explain the prediction equally well (or badly)."
        else:
            chosen = f"You chose **map {self.answer}**."
        return (f"{chosen} {maps} In the study, judge each pair for yourself: there is no right answer. "
                f"Nothing you answer on this practice pair is stored; press another button to try it again.")
