"""Opening the store: URL resolution, SQLite settings, schema checks."""
from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session

from lightning_modules.errors import UserError

from .models import SCHEMA_VERSION, Base, Meta

DEFAULT_DB_URL = "sqlite:///outputs/harmony.db"


class StoreError(UserError):
    """The database cannot be used as a harmony store (wrong schema, not a database, ...)."""


def resolve_db_url(db: str | None = None) -> str:
    """``--db`` if given, else ``HARMONY_DB_URL``, else ``sqlite:///outputs/harmony.db``.

    A plain file path is taken as an SQLite database.
    """
    url = db or os.environ.get("HARMONY_DB_URL") or DEFAULT_DB_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


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
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_settings(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def check_schema(engine: Engine, url: str, create: bool = True) -> None:
    """Create the schema in an empty database; refuse a foreign or other-version one."""
    try:
        tables = set(inspect(engine).get_table_names())
    except (DatabaseError, OperationalError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if getattr(exc, "orig", None) else type(exc).__name__
        raise StoreError(f"cannot open {url} as a database ({reason}): give --db an SQLite file or a "
                         f"PostgreSQL URL") from exc
    if Meta.__tablename__ not in tables:
        ours = {t for t in Base.metadata.tables}
        if tables - ours - {"sqlite_sequence"}:
            shown = ", ".join(sorted(tables)[:4]) + (", ..." if len(tables) > 4 else "")
            raise StoreError(f"{url} is not a harmony store (it has tables {shown}): give --db a harmony "
                             f"database or a new file (to import an original HARMONY app database, use "
                             f"`harmony import-legacy`)")
        if not create:
            raise StoreError(f"{url} holds no harmony store yet: build a study first (harmony build-dataset "
                             f"or harmony import-legacy)")
        Base.metadata.create_all(engine)
        with Session(engine.execution_options(sqlite_begin="IMMEDIATE")) as session, session.begin():
            if session.get(Meta, "schema_version") is None:
                session.add_all([Meta(key="app", value="harmony"),
                                 Meta(key="schema_version", value=str(SCHEMA_VERSION))])
        return
    with Session(engine) as session:
        found = session.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    if found != str(SCHEMA_VERSION):
        raise StoreError(f"{url} has harmony schema version {found}, this harmony reads version "
                         f"{SCHEMA_VERSION}: use the harmony release that made it, or a new database")
