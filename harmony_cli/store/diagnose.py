"""Why an existing SQLite file cannot be opened as a store, said as its cause and its fix.

SQLite's own words mislead here: a store on a read-only file system answers "unable to open
database file" and one on a full disk "disk I/O error" (a reader of a WAL database must create
``<store>-shm`` beside it), and a text file "file is not a database" like a damaged store. So the
file and its folder are looked at before a message is chosen.
"""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import UserError


class StoreError(UserError):
    """The database cannot be used as a harmony store (wrong schema, not a database, ...)."""


# The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"
# Room a reader needs beside a WAL store: its -shm index (32 KiB) and a -wal file.
READER_ROOM = 64 * 1024
# SQLite's words for a file whose pages do not hold a database.
DAMAGE_WORDS = ("malformed", "not a database", "corrupt")


def has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def place_problem(folder: Path) -> str | None:
    """What stops SQLite from writing beside a store in ``folder``: a read-only or full file system, or
    a folder this user may not write; None when nothing is seen."""
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return (f"its folder {folder} is on a read-only file system (SQLite writes its -shm and -wal files "
                f"beside the store): copy the store to a writable folder and give --db that copy")
    if stats.f_bavail * stats.f_frsize < READER_ROOM:
        return (f"the disk holding {folder} is full (SQLite writes its -shm and -wal files beside the store): "
                f"free some space and run it again")
    if not os.access(folder, os.W_OK):
        return (f"its folder {folder} is not writable for this user (SQLite writes its -shm and -wal files "
                f"beside the store): make it writable, or copy the store to a writable folder")
    return None


def damaged(path: Path, reason: str):
    reason = " ".join(reason.replace("*** in database main ***", "").split())  # quick_check's report on one line
    return StoreError(f"{path} is a damaged SQLite database ({reason}): restore it from a backup (`sqlite3 {path} "
                      f".recover` may rescue its rows)")


def open_failure(path: Path, exc: sqlite3.Error):
    """The StoreError for an existing, non-empty SQLite file at ``path`` that could not be read."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not has_sqlite_header(path):
        return StoreError(f"{path} is not an SQLite database, so not a harmony store: give --db a harmony store, "
                          f"or the path of a new file to start one")
    if any(word in reason.lower() for word in DAMAGE_WORDS):
        return damaged(path, reason)
    problem = place_problem(path.parent)
    if problem is not None:
        return StoreError(f"cannot open the store {path}: {problem}")
    return StoreError(f"cannot open the store {path} ({reason}): check that this user may read it and write "
                      f"its folder")


def side_files(path: Path) -> list[Path]:
    """The -wal and -shm files SQLite keeps beside ``path``."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def remove_new_side_files(path: Path, existed: list[bool]) -> None:
    """Remove the -wal/-shm files a failed read created beside a file that is not a usable store."""
    for side, was_there in zip(side_files(path), existed):
        if not was_there:
            try:
                side.unlink(missing_ok=True)
            except OSError:
                pass
