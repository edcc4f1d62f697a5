"""A study's instructions for its annotators: Markdown text kept in ``Study.config["instructions"]``.

Set at build time by ``study.instructions`` (conf/study/default.yaml: the text itself, or the path
of a ``.md``/``.markdown``/``.txt`` file) or later by ``harmony studies set-instructions``. The page
(webui/instructions.py) shows them before an annotator's first example and from its Help button;
a study without them gets the page's default text.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError

CONFIG_KEY = "instructions"
MAX_CHARS = 50_000  # a page of instructions is a few thousand characters; more is a wrong file
FILE_SUFFIXES = (".md", ".markdown", ".txt")


def checked_text(text: str, where: str, fix: str) -> str:
    """``text`` without its surrounding blank space; one line if it is empty or far too long."""
    text = text.strip()
    if not text:
        raise UserError(f"{where} is empty: {fix}")
    if len(text) > MAX_CHARS:
        raise UserError(f"{where} has {len(text):,} characters, more than instructions need "
                        f"({MAX_CHARS:,} at most): {fix}")
    return text


def read_file(path: str | Path, fix: str) -> str:
    """The instructions in the UTF-8 file ``path``; one line if it is absent, unreadable or empty."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"instructions file {path} is a folder, not a file: {fix}")
    if not path.is_file():
        raise UserError(f"instructions file {path} does not exist: {fix}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"instructions file {path} is not UTF-8 text: save it as UTF-8 Markdown") from None
    except OSError as exc:
        raise UserError(f"instructions file {path} cannot be read ({exc.strerror}): {fix}") from None
    return checked_text(text, f"instructions file {path}", fix)


def from_setting(value) -> str | None:
    """``study.instructions`` as the text to record: None (the page's default), a file's text, or the text.

    A one-line value ending in .md, .markdown or .txt names a file, which must exist (a mistyped path
    must not become the instructions); anything else is the Markdown itself.
    """
    if value is None:
        return None
    text = str(value)
    fix = "give study.instructions=PATH of a Markdown file, the text itself, or null for the default"
    if "\n" not in text.strip() and text.strip().lower().endswith(FILE_SUFFIXES):
        return read_file(text.strip(), fix)
    return checked_text(text, "study.instructions", fix)
