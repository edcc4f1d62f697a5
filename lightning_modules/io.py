"""Atomic file writes: a reader never sees half a file (write a temporary sibling, then rename)."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (writers that pick a format by suffix still work)
    and carries the process id (two processes never share one). On failure it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path``'s content with ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, payload) -> None:
    """Replace ``path`` with ``payload`` as indented JSON, atomically."""
    write_text(path, json.dumps(payload, indent=2) + "\n")
