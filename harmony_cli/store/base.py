"""The store's connection: opening, closing, read and write sessions, and what a failed write says."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.orm import Session

from .db import StoreError, check_schema, make_engine, precheck, resolve_db_url, shown_url, sqlite_path, write_failure
from .models import Annotator, Study

# One lock per SQLite file for this process's writers (see StoreBase.write).
_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()

class StoreBase:
    """A study store at a database URL (``--db``, ``HARMONY_DB_URL`` or the default SQLite file)."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        # Writers take SQLite's write lock up front (BEGIN IMMEDIATE); ignored elsewhere.
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")

    @classmethod
    def open(cls, db: str | None = None, create: bool = True):
        """Open (and, when ``create``, initialise) the store; raises StoreError with one line.

        Also a context manager: ``with Store.open(url) as store: ...`` closes it at the end.
        """
        url = resolve_db_url(db)
        precheck(url, create=create)  # a foreign SQLite file is refused before anything writes to it
        engine = make_engine(url)
        try:
            check_schema(engine, url, create=create)
        except (OperationalError, DataError) as exc:
            engine.dispose()
            raise (write_failure(exc, url) or StoreError(f"cannot open the store {shown_url(url)}: "
                                                         f"{type(exc.orig or exc).__name__}")) from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, url)

    @classmethod
    @contextmanager
    def open_for_command(cls, db: str | None = None) -> Iterator["StoreBase"]:
        """The store a writing command uses, closed at the end. When the command fails and this call
        created the SQLite file (and the folders above it), they are removed again, as long as the
        file holds no study and no account: a failed command leaves no empty store behind."""
        path = sqlite_path(resolve_db_url(db))
        created = [] if path is None else _missing_paths(path)
        try:
            store = cls.open(db)
        except BaseException:
            _remove_created(created)  # it never became a store (a full disk, a folder it cannot write)
            raise
        try:
            yield store
        except BaseException:
            empty = bool(created) and store.holds_nothing()
            store.close()
            if empty:
                _remove_created(created)
            raise
        store.close()

    def holds_nothing(self) -> bool:
        """Whether the store holds no study and no account (what a command that failed at once leaves)."""
        try:
            with self.read() as session:
                return all(session.scalar(select(table.id).limit(1)) is None for table in (Study, Annotator))
        except Exception:  # unreadable: not ours to judge, so not removed
            return False

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table):
        """The dialect's INSERT (with ON CONFLICT support) for ``table``."""
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or not at all.

        On SQLite, this process's writers first queue on a lock: SQLite admits one writer at a
        time, and a writer that finds it busy sleeps in growing steps (up to 100 ms) before
        retrying, while a lock hands over the moment the previous write commits. Other processes
        and PostgreSQL are unaffected (the database serializes them). A write refused for lack of
        rights or space is a one-line StoreError.
        """
        with self._writer_lock(), self._write_failures():
            with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
                yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """Like :meth:`write`, as a Core connection (no ORM unit of work: the page's hot path)."""
        with self._writer_lock(), self._write_failures(), self._write_engine.begin() as conn:
            yield conn

    @contextmanager
    def _write_failures(self) -> Iterator[None]:
        try:
            yield
        except DBAPIError as exc:  # PostgreSQL's read-only transaction is an InternalError
            failure = write_failure(exc, self.url)
            if failure is None:
                raise
            raise failure from exc

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        if self.dialect != "sqlite":
            yield
            return
        with _WRITER_LOCKS_GUARD:
            lock = _WRITER_LOCKS.setdefault(self.url, threading.Lock())
        with lock:
            yield


def _missing_paths(path) -> list:
    """``path`` and its missing parent folders, innermost first, if ``path`` does not exist yet."""
    path = Path(path).absolute()
    if path.exists():
        return []
    missing = [path]
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _remove_created(paths: list) -> None:
    """Remove an SQLite file this process created (with its -wal, -shm and -journal) and the folders
    created for it, innermost first; a folder that is not empty stays."""
    if not paths:
        return
    file, folders = paths[0], paths[1:]
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            file.with_name(file.name + suffix).unlink(missing_ok=True)
        except OSError:
            pass
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break
