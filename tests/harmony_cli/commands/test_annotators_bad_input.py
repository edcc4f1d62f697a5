"""Bad input to the account commands and a store that cannot be written (issue 14, items 6 and 8).

Each case runs the console entry (``harmony_cli.main:main``, in this process) and asserts one line
``error: ...`` with the fragments that say what to fix, exit status 2, and every table's row count
unchanged. SQLite always; PostgreSQL where HARMONY_TEST_PG_URL is set. A read-only store is the
database's own refusal (SQLite's mode=ro, PostgreSQL's read-only transactions); a full disk is
the driver's error raised at every write (a disk cannot be filled safely from a test).
"""
from __future__ import annotations

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from harmony_cli.store import Store
from harmony_cli.store.models import Base
from tests.harmony_cli.commands.test_annotators import assert_one_line_error, harmony_main

PASSWORD = "long-enough\n"


def row_counts(url: str) -> dict[str, int]:
    with Store.open(url, create=False) as store, store.read() as session:
        return {name: session.scalar(select(func.count()).select_from(table))
                for name, table in Base.metadata.tables.items()}


def read_only(url: str) -> str:
    """The same store, opened so that the database refuses every write."""
    if url.startswith("sqlite"):
        return url.replace("sqlite:///", "sqlite:///file:", 1) + "?mode=ro&uri=true"
    return url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"


def fill_disk(monkeypatch) -> None:
    """Every write of the command fails as the database driver fails on a full disk (SQLite's
    SQLITE_FULL; PostgreSQL's "could not extend file ... No space left on device")."""
    from harmony_cli.store import db

    make_engine = db.make_engine

    def full_engine(url):
        engine = make_engine(url)
        message = ("database or disk is full" if url.startswith("sqlite")
                   else "could not extend file: No space left on device")

        @event.listens_for(engine, "before_cursor_execute")
        def _full(conn, cursor, statement, parameters, context, executemany):
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                raise OperationalError(statement, parameters, Exception(message))

        return engine

    monkeypatch.setattr("harmony_cli.store.base.make_engine", full_engine)


# (case, command after `harmony annotators`, stdin, fragments of the one line, store: normal | read-only | full)
CASES = [
    ("NUL in the name", ["add", "bo\x00b", "--password-stdin"], PASSWORD, ["control"], "normal"),
    ("tab in the name", ["add", "bob\tsmith", "--password-stdin"], PASSWORD, ["control"], "normal"),
    ("200-character name", ["add", "n" * 200, "--password-stdin"], PASSWORD, ["at most 150", "shorter"], "normal"),
    ("blank name", ["add", "   ", "--password-stdin"], PASSWORD, ["non-empty"], "normal"),
    ("name taken once stripped", ["add", "  ana ", "--password-stdin"], PASSWORD, ["exists already"], "normal"),
    ("name taken in another Unicode form", ["add", "Zoe\u0308", "--password-stdin"], PASSWORD,
     ["exists already"], "normal"),
    ("short password", ["add", "dan", "--password-stdin"], "short\n", ["at least 8"], "normal"),
    ("password for a simulated account", ["set-password", "sim-1", "--password-stdin"], PASSWORD,
     ["simulated", "never log in"], "normal"),
    ("unknown account", ["deactivate", "nobody"], "", ["no annotator 'nobody'"], "normal"),
    ("add to a read-only store", ["add", "carl", "--password-stdin"], PASSWORD, ["read-only"], "read-only"),
    ("new password in a read-only store", ["set-password", "ana", "--password-stdin"], PASSWORD, ["read-only"],
     "read-only"),
    ("deactivate in a read-only store", ["deactivate", "ana"], "", ["read-only"], "read-only"),
    ("add to a full store", ["add", "carl-" + "x" * 140, "--password-stdin"], PASSWORD, ["full", "free some space"],
     "full"),
    ("new password in a full store", ["set-password", "ana", "--password-stdin"], PASSWORD, ["full"], "full"),
]


@pytest.fixture
def accounts_store(db_url):
    with Store.open(db_url) as store:
        store.add_annotator("ana", "first-pass")
        store.add_annotator("Zoë", "first-pass")
        store.add_annotator("sim-1", None, active=False, simulated=True)
    return db_url


@pytest.mark.parametrize("case, command, stdin, fragments, store_state", CASES, ids=[c[0] for c in CASES])
def test_bad_account_input_is_one_line_and_changes_nothing(accounts_store, monkeypatch, capsys, case, command, stdin,
                                                           fragments, store_state):
    url = accounts_store
    if store_state == "full":
        fill_disk(monkeypatch)
    before = row_counts(url)
    target = read_only(url) if store_state == "read-only" else url
    result = harmony_main(monkeypatch, capsys, "annotators", *command, "--db", target, stdin=stdin)
    assert_one_line_error(result, *fragments)
    assert "argon2" not in result.stderr and "Traceback" not in result.stderr
    if store_state == "read-only" or store_state == "full":
        assert "give --db an SQLite file made by harmony" not in result.stderr  # the wrong fix
    monkeypatch.undo()
    assert row_counts(url) == before
