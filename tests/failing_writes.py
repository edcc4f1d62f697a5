"""Writes that fail as a full or read-only disk makes them fail, for the bad-input tests.

A disk cannot be filled safely from a test: the operating system's file writes below a folder fail with
the errno a full or read-only file system answers, and the store's writes fail with the driver's own
full-disk error.
"""
from __future__ import annotations

import builtins
import os
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.exc import OperationalError


def fail_writes_below(monkeypatch, folder: Path, code: int, after: int = 0) -> None:
    """Every file creation and mkdir below ``folder`` fails with ``code`` (after ``after`` files succeeded)."""
    real_open, real_mkdir, done = builtins.open, os.mkdir, []
    folder = str(folder)

    def below(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(folder)

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and below(file) and any(m in mode for m in "wax+"):
            if len(done) >= after:
                raise OSError(code, os.strerror(code), os.fspath(file))
            done.append(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if below(path) and after == 0:
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


def database_full(monkeypatch) -> None:
    """Every INSERT, UPDATE and DELETE of the store fails as the driver fails on a full disk (SQLite's
    SQLITE_FULL; PostgreSQL's "could not extend file ... No space left on device")."""
    import harmony_cli.store.base as store_base

    make_engine = store_base.make_engine

    def full_engine(url, *args, **kwargs):
        engine = make_engine(url, *args, **kwargs)
        message = ("database or disk is full" if str(url).startswith("sqlite")
                   else "could not extend file: No space left on device")

        @event.listens_for(engine, "before_cursor_execute")
        def _full(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise OperationalError(statement, parameters, Exception(message))

        return engine

    monkeypatch.setattr(store_base, "make_engine", full_engine)
