"""Opening the store: URL resolution, SQLite settings, schema checks.

A database is inspected before anything is written to it: an SQLite file is
first read through a read-only connection, so that a foreign file (the
original app's database, another program's) is refused without being
switched to WAL mode or given tables.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, DataError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from ..defaults import default_db_url
from .diagnose import StoreError, damaged, open_failure, remove_new_side_files, side_files
from .models import APP_NAME, SCHEMA_VERSION, Base, LoginGuard, Meta

# Older schema versions this harmony upgrades in place when it opens them.
UPGRADABLE = {1, 2, 3, 4}
# Tables that mark a database of the original HARMONY Django app.
LEGACY_TABLE = "relevavance_example"


# Driver messages that mean the store cannot be written, and what to say instead of the driver's text.
_WRITE_FAILURES = (
    (("readonly database", "read-only", "read only", "permission denied"),
     "the store {url} is read-only: give --db a store you may write to, or fix the file's permissions"),
    (("disk is full", "no space left", "could not extend", "disk full"),
     "the disk of the store {url} is full: free some space and run it again (nothing was stored)"),
)


def write_failure(exc: BaseException, url: str) -> StoreError | None:
    """A one-line StoreError for a write the database refused for lack of rights or space, else None.

    Never built from the statement or its parameters (a password hash must not reach a message).
    """
    orig = str(getattr(exc, "orig", None) or exc).lower()
    for needles, message in _WRITE_FAILURES:
        if any(n in orig for n in needles):
            return StoreError(message.format(url=shown_url(url)))
    if isinstance(exc, DataError):
        return StoreError("a value is too long or malformed for the store: shorten it and run it again")
    return None


def resolve_db_url(db: str | None = None) -> str:
    """``--db`` if given, else the config's ``db_url`` (``HARMONY_DB_URL``, else the SQLite file under the
    outputs root: :func:`harmony_cli.defaults.default_db_url`).

    A plain file path is taken as an SQLite database.
    """
    url = db or default_db_url()
    if not url:
        raise StoreError("HARMONY_DB_URL is set but empty: unset it (the store under the outputs root) or give it "
                         "a database URL")
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def shown_url(url: str) -> str:
    """The URL as it may appear in messages: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[-1] if ":///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path)


def _sqlite_settings(engine: Engine) -> None:
    """WAL + busy timeout so several page servers and CLI commands share one file.

    pysqlite's own transaction handling is switched off and transactions are
    begun explicitly: writers use ``BEGIN IMMEDIATE`` so that two writers queue
    on the busy timeout instead of failing on a lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite gets WAL, a busy timeout and immediate write transactions)."""
    try:
        if url.startswith("sqlite"):
            path = sqlite_path(url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            _sqlite_settings(engine)
            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"cannot use database URL {shown_url(url)!r} ({_reason(exc)}): give --db an SQLite "
                         f"file or a URL like postgresql+psycopg://user@host/db") from exc


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__


def _read_sqlite_file(path: Path, url: str) -> tuple[set[str], dict[str, str]]:
    """Tables and harmony meta of an existing SQLite file, read without writing to it.

    A file that cannot be read is refused with its cause (not SQLite, damaged, a read-only or full
    place: :mod:`.diagnose`), and the -wal/-shm files the attempt left beside it are removed."""
    existed = [side.exists() for side in side_files(path)]
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise write_failure(exc, url) or open_failure(path, exc) from exc
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        meta = dict(conn.execute(f"SELECT key, value FROM {Meta.__tablename__}")) if Meta.__tablename__ in tables \
            else {}
        if LEGACY_TABLE in tables and not meta:  # sent to import-legacy only when it can be read whole
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            if check != "ok":
                raise damaged(path, check)
    except sqlite3.DatabaseError as exc:
        conn.close()
        remove_new_side_files(path, existed)
        raise write_failure(exc, url) or open_failure(path, exc) from exc
    except StoreError:
        conn.close()
        remove_new_side_files(path, existed)
        raise
    conn.close()
    return tables, meta


def _read_engine(engine: Engine, url: str) -> tuple[set[str], dict[str, str]]:
    try:
        tables = set(inspect(engine).get_table_names())
        meta = {}
        if Meta.__tablename__ in tables:
            with Session(engine) as session:
                meta = {k: v for k, v in session.execute(select(Meta.key, Meta.value))}
    except (DatabaseError, OperationalError) as exc:
        failure = write_failure(exc, url)
        if failure is not None:
            raise failure from exc
        raise StoreError(f"cannot open {shown_url(url)} as a database ({_reason(exc)}): check the URL and that "
                         f"the server runs") from exc
    return tables, meta


def _refuse_foreign(url: str, tables: set[str], meta: dict[str, str]) -> None:
    """Raise StoreError unless the tables and meta are those of this harmony's store (or empty)."""
    shown = shown_url(url)
    if Meta.__tablename__ not in tables:
        foreign = tables - set(Base.metadata.tables) - {"sqlite_sequence"}
        if LEGACY_TABLE in tables:
            raise StoreError(f"{shown} is a database of the original HARMONY app, not a harmony store: import it "
                             f"with `harmony import-legacy PATH` into a harmony store")
        if foreign:
            listed = ", ".join(sorted(foreign)[:4]) + (", ..." if len(foreign) > 4 else "")
            raise StoreError(f"{shown} is not a harmony store (it has tables {listed}): give --db a harmony "
                             f"database or a new file")
        if tables:  # some of our tables but no meta: a half-made or foreign store
            raise StoreError(f"{shown} has harmony tables but no schema version (unknown schema): use a new "
                             f"database")
        return
    if meta.get("app", APP_NAME) != APP_NAME:
        raise StoreError(f"{shown} belongs to {meta.get('app')!r}, not harmony: give --db a harmony database")
    found = meta.get("schema_version")
    if found is None or not found.isdigit():
        raise StoreError(f"{shown} has an unknown harmony schema version ({found!r}): use a new database")
    if int(found) != SCHEMA_VERSION and int(found) not in UPGRADABLE:
        newer = "a newer" if int(found) > SCHEMA_VERSION else "an older"
        raise StoreError(f"{shown} has harmony schema version {found}, this harmony reads version "
                         f"{SCHEMA_VERSION}: open it with {newer} harmony, or use a new database")


def precheck(url: str, create: bool = True) -> None:
    """Refuse an SQLite file that is not a harmony store before an engine ever writes to it."""
    path = sqlite_path(url)
    if path is None:
        return
    if not path.exists():
        if not create:
            raise StoreError(f"no harmony store at {path}: build a study first (harmony build-dataset or "
                             f"harmony import-legacy), or give --db the right file")
        return
    if path.is_dir():
        raise StoreError(f"{path} is a folder, not a database file: give --db a file path")
    if path.stat().st_size == 0:
        return  # an empty file is a new SQLite database
    _refuse_foreign(url, *_read_sqlite_file(path, url))


def check_schema(engine: Engine, url: str, create: bool = True) -> None:
    """Create the schema in an empty database; refuse a foreign or other-version one."""
    tables, meta = _read_engine(engine, url)
    _refuse_foreign(url, tables, meta)
    if Meta.__tablename__ in tables:
        if int(meta["schema_version"]) != SCHEMA_VERSION:
            _upgrade(engine)
        return
    if not create:
        raise StoreError(f"{shown_url(url)} holds no harmony store yet: build a study first (harmony "
                         f"build-dataset or harmony import-legacy)")
    # One transaction (BEGIN IMMEDIATE on SQLite) so two processes creating the store at once queue.
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        Base.metadata.create_all(conn)
        with Session(conn) as session:
            if session.get(Meta, "schema_version") is None:
                session.add_all([Meta(key="app", value=APP_NAME),
                                 Meta(key="schema_version", value=str(SCHEMA_VERSION))])
                session.flush()


def _upgrade(engine: Engine) -> None:
    """An older version to this one, in one transaction: 1 -> 2 adds account session versions and
    the login guard table, 2 -> 3 the assignment table, 3 -> 4 the page session table and a login guard
    kept per name and client, 4 -> 5 the sequential cell table (new tables: ``create_all`` makes them). The old guard table is dropped
    (its counts and locks are forgotten), and so is the login-token secret of version 3, which tokens
    do not use."""
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        with Session(conn) as session:
            found = int(session.get(Meta, "schema_version").value)
        if found == SCHEMA_VERSION:
            return  # another process upgraded it meanwhile
        if found < 2:
            conn.exec_driver_sql("ALTER TABLE harmony_annotator ADD COLUMN session_version INTEGER NOT NULL "
                                 "DEFAULT 0")
        if found < 4:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {LoginGuard.__tablename__}")
            conn.execute(delete(Meta).where(Meta.key == "secret.page-login"))
        Base.metadata.create_all(conn)  # the tables that are new (checkfirst)
        with Session(conn) as session:
            session.get(Meta, "schema_version").value = str(SCHEMA_VERSION)
            session.flush()
