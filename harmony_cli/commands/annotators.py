"""``harmony annotators``: the admin's accounts commands (add, list, deactivate, activate, set-password, unlock)
and assignments (assign, unassign, assignments)."""
from __future__ import annotations

import sys
from typing import Optional

import typer

from ..errors import UserError
from ..cells import cell_text, parse_cell
from ..store.passwords import check_password
from .options import DbOption

app = typer.Typer(help="Manage annotator accounts (passwords are stored as argon2 hashes only).",
                  no_args_is_help=True)



def read_password(password_stdin: bool) -> str:
    """The new password: the first line of stdin, or typed twice at a hidden prompt."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return check_password(password)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Login name of the new annotator."),
    admin: bool = typer.Option(False, "--admin", help="Make the account an admin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin's first "
                                                                        "line instead of prompting."),
    db: DbOption = None,
) -> None:
    """Create an annotator account (the password is prompted for twice)."""
    from ..store import Store, normalize_name

    name = normalize_name(name)  # as the page will read it: stripped, NFC, no control characters
    with Store.open_for_command(db) as store:  # a refused password leaves no new, empty store file
        if store.annotator(name) is not None:  # say so before asking for a password
            raise UserError(f"annotator {name!r} exists already: use `harmony annotators set-password {name}`")
        store.add_annotator(name, read_password(password_stdin), admin=admin)
    typer.echo(f"added {'admin ' if admin else ''}annotator {name}")


@app.command("list")
def list_(
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """List annotator accounts with how many labels each has given."""
    import json

    from ..console import output_console
    from rich.table import Table
    from sqlalchemy import func, select

    from ..store import Label, Store

    store = Store.open(db, create=False)
    try:
        with store.read() as session:
            counts = {a: n for a, n in session.execute(select(Label.annotator_id, func.count(Label.id))
                                                       .group_by(Label.annotator_id))}
        rows = [dict(name=a.name, admin=a.is_admin, active=a.active,
                     can_log_in=a.active and bool(a.password_hash) and not a.simulated,
                     simulated=a.simulated, labels=counts.get(a.id, 0), created=a.created_at.isoformat())
                for a in store.annotators()]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(rows)} annotators")
    for column in ("name", "admin", "active", "can log in", "simulated", "labels"):
        table.add_column(column, justify="right" if column == "labels" else "left")
    yes = lambda flag: "yes" if flag else "-"  # noqa: E731
    for r in rows:
        table.add_row(r["name"], yes(r["admin"]), yes(r["active"]), yes(r["can_log_in"]), yes(r["simulated"]),
                      str(r["labels"]))
    output_console().print(table)


def _set_active(name: str, active: bool, db: Optional[str]) -> None:
    from ..store import Store

    store = Store.open(db, create=False)
    try:
        store.set_active(name, active)
        annotator = store.annotator(name)
    finally:
        store.close()
    state = "activated" if active else "deactivated"
    hint = "" if not active or annotator.password_hash else \
        f" (it has no password yet: `harmony annotators set-password {name}`)"
    typer.echo(f"{state} annotator {name}{hint}")


@app.command("deactivate")
def deactivate(
    name: str = typer.Argument(..., help="Login name."),
    db: DbOption = None,
) -> None:
    """Stop an annotator from logging in; their labels stay."""
    _set_active(name, False, db)


@app.command("activate")
def activate(
    name: str = typer.Argument(..., help="Login name."),
    db: DbOption = None,
) -> None:
    """Let a deactivated (or imported) annotator log in again."""
    _set_active(name, True, db)


@app.command("set-password")
def set_password(
    name: str = typer.Argument(..., help="Login name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin's first "
                                                                        "line instead of prompting."),
    db: DbOption = None,
) -> None:
    """Give an annotator a new password (prompted for twice)."""
    from ..store import Store, StoreError

    store = Store.open(db, create=False)
    try:
        annotator = store.annotator(name)
        if annotator is None:
            raise StoreError(f"no annotator {name!r}: see `harmony annotators list`")
        if annotator.simulated:
            raise StoreError(f"annotator {annotator.name!r} is simulated (made by simulate-annotators): simulated "
                             f"accounts never log in; add a real one with `harmony annotators add NAME`")
        store.set_password(name, read_password(password_stdin))
    finally:
        store.close()
    hint = "" if annotator.active else f"; it is inactive: `harmony annotators activate {name}` to let it log in"
    typer.echo(f"set the password of annotator {name}{hint}")


@app.command("unlock")
def unlock(
    name: str = typer.Argument(..., help="Login name (as typed at the login, whether or not an account has it)."),
    db: DbOption = None,
) -> None:
    """Lift the lockout after too many failed logins (from every address), and forget the failed attempts."""
    from ..store import Store

    with Store.open(db, create=False) as store:
        was_locked = store.unlock(name)
    typer.echo(f"unlocked {name}" if was_locked else f"{name} was not locked (its failed logins are forgotten)")


# assignments -----------------------------------------------------------------------------------

CELLS_HELP = ("A cell as metric/backbone/attribution (or dataset/metric/backbone/attribution); repeat for "
              "several. None: the whole study.")


def _cells(cells: Optional[list[str]]) -> Optional[list[dict]]:
    return [parse_cell(c) for c in cells] if cells else None


def _what(study: str, cells: Optional[list[str]]) -> str:
    return f"study {study}" if not cells else f"{', '.join(cells)} of study {study}"


@app.command("assign")
def assign(
    name: str = typer.Argument(..., help="Login name."),
    study: str = typer.Option(..., "--study", help="Study name (see `harmony studies`)."),
    cells: Optional[list[str]] = typer.Option(None, "--cell", help=CELLS_HELP),
    db: DbOption = None,
) -> None:
    """Open a study, or some of its cells, to an annotator on the page."""
    from ..store import Store

    with Store.open(db, create=False) as store:
        added = store.assign(name, study, _cells(cells))
        closed = not store.study_open(study)
    hint = f" (the study is closed to new labels: `harmony studies open {study}`)" if closed else ""
    typer.echo(f"assigned {_what(study, cells)} to {name}" + ("" if added else " (it was already)") + hint)


@app.command("unassign")
def unassign(
    name: str = typer.Argument(..., help="Login name."),
    study: str = typer.Option(..., "--study", help="Study name (see `harmony studies`)."),
    cells: Optional[list[str]] = typer.Option(None, "--cell", help=CELLS_HELP),
    db: DbOption = None,
) -> None:
    """Close a study (every assignment in it), or some of its cells, to an annotator; their labels stay."""
    from ..store import Store

    with Store.open(db, create=False) as store:
        removed = store.unassign(name, study, _cells(cells))
    typer.echo(f"unassigned {_what(study, cells)} from {name}" + ("" if removed else " (it was not assigned)"))


@app.command("assignments")
def assignments(
    study: Optional[str] = typer.Option(None, "--study", help="Only this study."),
    db: DbOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of lines."),
) -> None:
    """List who is assigned which study or cell."""
    import json

    from ..store import Store, StoreError

    with Store.open(db, create=False) as store:
        if study is not None and store.study(study) is None:
            raise StoreError(f"no study called {study!r}; `harmony studies` lists them")
        rows = store.assignments(study)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no assignments yet: `harmony annotators assign NAME --study S`")
    for row in rows:
        cell = cell_text(row) if row["metric"] else "whole study"
        typer.echo(f"{row['annotator']}\t{row['study']}\t{cell}" + (f" ({row['dataset']})" if row["dataset"] else ""))
