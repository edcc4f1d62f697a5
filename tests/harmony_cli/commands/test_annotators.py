"""`harmony annotators ...`: through Typer's runner, and the real console entry for errors.

Bad input to the account commands and a store that cannot be written: each case runs the console entry
(``harmony_cli.main:main``, in this process) and asserts one line ``error: ...`` with the fragments that say
what to fix, exit status 2, and every table's row count unchanged. SQLite always; PostgreSQL where
HARMONY_TEST_PG_URL is set. A read-only store is the database's own refusal (SQLite's mode=ro, PostgreSQL's
read-only transactions); a full disk is the driver's error raised at every write (a disk cannot be filled
safely from a test).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harmony_cli.main import app
from harmony_cli.store import Store
from tests.failing_writes import database_full
from tests.helpers import assert_one_line_error, assignable_store, harmony, harmony_main, row_counts

runner = CliRunner()


def store_files(db: Path) -> bytes:
    """Everything SQLite keeps for ``db`` on disk (the file, its WAL and shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def test_add_prompts_twice_and_stores_only_an_argon2_hash(tmp_path):
    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "ana", "--db", str(db)],
                           input="Tr0ub4dor&3xyz\nTr0ub4dor&3xyz\n")
    assert result.exit_code == 0, result.output
    assert "added annotator ana" in result.output
    result = runner.invoke(app, ["annotators", "add", "root", "--admin", "--password-stdin", "--db", str(db)],
                           input="admin-password-42\n")
    assert result.exit_code == 0, result.output
    store = Store.open(str(db))
    ana, root = store.annotator("ana"), store.annotator("root")
    assert ana.password_hash.startswith("$argon2id$") and not ana.is_admin and ana.active
    assert root.is_admin
    assert store.authenticate("ana", "Tr0ub4dor&3xyz") is not None
    assert store.authenticate("root", "admin-password-42") is not None
    store.close()
    on_disk = store_files(db)
    assert b"Tr0ub4dor&3xyz" not in on_disk and b"admin-password-42" not in on_disk
    assert ana.password_hash.encode() in on_disk  # the check above looked at the real data


def test_prompt_mismatch_and_short_password_add_nobody(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "ana", "--db", str(db)],
                           input="first-password\nsecond-password\nfirst-password\nfirst-password\n")
    assert result.exit_code == 0 and "do not match" in result.output  # asked again after the mismatch
    result = harmony_main(monkeypatch, capsys, "annotators", "add", "ben", "--password-stdin", "--db", str(db),
                          stdin="short\n")
    assert_one_line_error(result, "at least 8")
    store = Store.open(str(db))
    assert store.authenticate("ana", "first-password") is not None and store.annotator("ben") is None
    store.close()


def test_list_deactivate_activate_and_set_password(tmp_path):
    db = tmp_path / "h.db"
    runner.invoke(app, ["annotators", "add", "ana", "--password-stdin", "--db", str(db)], input="first-pass\n")
    result = runner.invoke(app, ["annotators", "list", "--json", "--db", str(db)])
    [row] = json.loads(result.output)
    assert (row["name"], row["active"], row["can_log_in"], row["labels"]) == ("ana", True, True, 0)

    assert runner.invoke(app, ["annotators", "deactivate", "ana", "--db", str(db)]).exit_code == 0
    store = Store.open(str(db))
    assert store.authenticate("ana", "first-pass") is None
    result = runner.invoke(app, ["annotators", "set-password", "ana", "--password-stdin", "--db", str(db)],
                           input="second-pass\n")
    assert result.exit_code == 0 and "inactive" in result.output
    assert runner.invoke(app, ["annotators", "activate", "ana", "--db", str(db)]).exit_code == 0
    assert store.authenticate("ana", "first-pass") is None
    assert store.authenticate("ana", "second-pass") is not None
    store.close()
    result = runner.invoke(app, ["annotators", "list", "--db", str(db)])
    assert result.exit_code == 0 and "ana" in result.output


def test_annotator_errors_are_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    runner.invoke(app, ["annotators", "add", "ana", "--password-stdin", "--db", str(db)], input="long-enough\n")
    # The installed console script once (interpreter start is slow on a busy machine), then main() in-process.
    assert_one_line_error(harmony("annotators", "add", "ana", "--password-stdin", "--db", str(db),
                                  stdin="long-enough\n", warnings=True), "exists already", "set-password ana")
    cli = lambda *args, stdin="": harmony_main(monkeypatch, capsys, *args, stdin=stdin)  # noqa: E731
    assert_one_line_error(cli("annotators", "set-password", "bob", "--password-stdin", "--db", str(db),
                              stdin="long-enough\n"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "deactivate", "bob", "--db", str(db)), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "list", "--db", str(tmp_path / "absent.db")), "no harmony store at")


def test_unlock_lifts_a_lockout_and_add_stores_the_name_as_the_page_reads_it(tmp_path):
    from harmony_cli.store.accounts import LOCK_AFTER

    db = tmp_path / "h.db"
    result = runner.invoke(app, ["annotators", "add", "  bob ", "--password-stdin", "--db", str(db)],
                           input="long-enough\n")
    assert result.exit_code == 0 and "added annotator bob" in result.output
    with Store.open(str(db)) as store:
        for attempt in range(LOCK_AFTER):
            store.login("bob", "wrong", client="203.0.113.9", now=1000.0 * (attempt + 1))
        assert "locked" in store.login("bob", "long-enough", client="203.0.113.9", now=5e4).message
    result = runner.invoke(app, ["annotators", "unlock", "bob", "--db", str(db)])
    assert result.exit_code == 0 and result.output.strip() == "unlocked bob"
    with Store.open(str(db)) as store:
        assert store.login("bob", "long-enough", client="203.0.113.9", now=6e4).annotator.name == "bob"


def test_assign_unassign_and_list_assignments(tmp_path):
    db = tmp_path / "h.db"
    assignable_store(db)
    result = runner.invoke(app, ["annotators", "assign", "ana", "--study", "pilot", "--cell", "rma/tiny/gradcam",
                                 "--cell", "synthetic/focus/tiny/gradcam", "--db", str(db)])
    assert result.exit_code == 0 and "assigned rma/tiny/gradcam, synthetic/focus/tiny/gradcam of study pilot to ana" \
        in result.output, result.output
    rows = json.loads(runner.invoke(app, ["annotators", "assignments", "--json", "--db", str(db)]).output)
    assert [(r["annotator"], r["study"], r["dataset"], r["metric"]) for r in rows] == [
        ("ana", "pilot", "synthetic", "focus"), ("ana", "pilot", None, "rma")]  # by cell
    listed = runner.invoke(app, ["annotators", "assignments", "--study", "pilot", "--db", str(db)]).output
    assert "ana\tpilot\tfocus/tiny/gradcam (synthetic)" in listed and "ana\tpilot\trma/tiny/gradcam" in listed
    result = runner.invoke(app, ["annotators", "unassign", "ana", "--study", "pilot", "--cell", "focus/tiny/gradcam",
                                 "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert [r["metric"] for r in json.loads(runner.invoke(app, ["annotators", "assignments", "--json", "--db",
                                                                str(db)]).output)] == ["rma"]
    runner.invoke(app, ["annotators", "unassign", "ana", "--study", "pilot", "--db", str(db)])
    assert "no assignments yet" in runner.invoke(app, ["annotators", "assignments", "--db", str(db)]).output


def test_assignment_errors_are_one_line_with_exit_status_2(tmp_path, monkeypatch, capsys):
    db = tmp_path / "h.db"
    assignable_store(db)
    cli = lambda *args: harmony_main(monkeypatch, capsys, *args, "--db", str(db))  # noqa: E731
    assert_one_line_error(cli("annotators", "assign", "bob", "--study", "pilot"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "pilot", "--cell", "road/tiny/gradcam"),
                          "no cell road/tiny/gradcam", "rma/tiny/gradcam")
    assert_one_line_error(cli("annotators", "assign", "ana", "--study", "pilot", "--cell", "rma-tiny"),
                          "metric/backbone/attribution")
    assert_one_line_error(cli("annotators", "unassign", "bob", "--study", "pilot"), "no annotator 'bob'")
    assert_one_line_error(cli("annotators", "assignments", "--study", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("studies", "open", "nope"), "no study called 'nope'")
    assert_one_line_error(cli("studies", "set-labels-per-example", "pilot", "0"), "at least 1")
    with Store.open(str(db)) as store:
        assert store.assignments() == []


PASSWORD = "long-enough\n"


def read_only(url: str) -> str:
    """The same store, opened so that the database refuses every write."""
    if url.startswith("sqlite"):
        return url.replace("sqlite:///", "sqlite:///file:", 1) + "?mode=ro&uri=true"
    return url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"


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
        database_full(monkeypatch)
    before = row_counts(url)
    target = read_only(url) if store_state == "read-only" else url
    result = harmony_main(monkeypatch, capsys, "annotators", *command, "--db", target, stdin=stdin)
    assert_one_line_error(result, *fragments)
    assert "argon2" not in result.stderr and "Traceback" not in result.stderr
    if store_state == "read-only" or store_state == "full":
        assert "give --db an SQLite file made by harmony" not in result.stderr  # the wrong fix
    monkeypatch.undo()
    assert row_counts(url) == before
