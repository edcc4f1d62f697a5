"""Account management on the admin dashboard: the rules and the store calls of ``harmony annotators``.

Names go through the store's ``normalize_name``, accounts through the same Store methods as the CLI
(``add_annotator``, ``set_active``, ``set_password``), so a bad input gets the CLI's one line. The page
draws these forms only for an admin (webui/dashboard.py checks the account first, in the same run),
and every change runs in the script's run after that check, never in a widget callback (callbacks run
before the script, so before the check).
"""
from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from harmony_cli.cells import cell_text, parse_cell
from harmony_cli.errors import UserError
from harmony_cli.store import Store
from harmony_cli.store.passwords import MIN_PASSWORD_LENGTH, check_password


# actions (no Streamlit): each returns the line to show, or raises a UserError with the CLI's line ----

def add_account(store: Store, name: str, password: str, admin: bool = False) -> str:
    """``harmony annotators add NAME [--admin]``: the store normalizes the name and refuses one that exists."""
    account = store.add_annotator(name, check_password(password), admin=admin)
    return f"added {'admin ' if admin else ''}annotator {account.name}"


def set_account_active(store: Store, name: str, active: bool) -> str:
    """``harmony annotators activate|deactivate NAME``: deactivation ends the account's sessions at once."""
    store.set_active(name, active)
    account = store.annotator(name)
    hint = "" if not active or account.password_hash else " (it has no password yet: set one below)"
    return f"{'activated' if active else 'deactivated'} annotator {account.name}{hint}"


def reset_password(store: Store, name: str, password: str) -> str:
    """``harmony annotators set-password NAME``: ends the account's open sessions."""
    store.set_password(name, check_password(password))
    account = store.annotator(name)
    hint = "" if account.active else "; it is inactive: activate it to let it log in"
    return f"set the password of annotator {account.name}{hint}"


def unlock_account(store: Store, name: str) -> str:
    """``harmony annotators unlock NAME``: lift the lockout after too many failed logins."""
    was_locked = store.unlock(name)
    return f"unlocked {name}" if was_locked else f"{name} was not locked (its failed logins are forgotten)"


def change_assignment(store: Store, name: str, study: str, cells: list[str], assign: bool) -> str:
    """``harmony annotators assign|unassign NAME --study S [--cell C ...]`` (no cells: the whole study)."""
    parsed = [parse_cell(c) for c in cells] or None
    what = f"study {study}" if not cells else f"{', '.join(cells)} of study {study}"
    if not assign:
        removed = store.unassign(name, study, parsed)
        return f"unassigned {what} from {name}" + ("" if removed else " (it was not assigned)")
    added = store.assign(name, study, parsed)
    hint = "" if store.study_open(study) else f" (the study is closed to new labels: `harmony studies open {study}`)"
    return f"assigned {what} to {name}" + ("" if added else " (it was already)") + hint


def assignments_frame(rows: list[dict]) -> pd.DataFrame:
    """``harmony annotators assignments``' lines as a table."""
    return pd.DataFrame([{"annotator": r["annotator"],
                          "cells": cell_text(r, bool(r["dataset"])) if r["metric"] else "whole study"}
                         for r in rows], columns=["annotator", "cells"])


def accounts_frame(store: Store) -> pd.DataFrame:
    yes = lambda flag: "yes" if flag else "–"  # noqa: E731
    return pd.DataFrame([{"name": a.name, "admin": yes(a.is_admin), "active": yes(a.active),
                          "can log in": yes(a.active and bool(a.password_hash) and not a.simulated),
                          "simulated": yes(a.simulated)} for a in store.annotators()],
                        columns=["name", "admin", "active", "can log in", "simulated"])


# page -----------------------------------------------------------------------------------------

def report(action: Callable[..., str], *args) -> None:
    """Run an action and show its line: success, or the one-line error a user can act on."""
    try:
        message = action(*args)
    except UserError as exc:
        st.error(str(exc))
        return
    st.success(message)


def accounts_panel(store: Store) -> None:
    """The accounts table and the forms that change accounts (admins only: see webui/dashboard.py)."""
    table = st.empty()  # filled last, so that it shows the change made in this run
    with st.form("account-add", clear_on_submit=True):
        st.markdown("**Add an account**")
        name = st.text_input("Name", key="account-add-name")
        password = st.text_input("Password", type="password", key="account-add-password",
                                 help=f"At least {MIN_PASSWORD_LENGTH} characters.")
        admin = st.checkbox("Admin", key="account-add-admin")
        if st.form_submit_button("Add account"):
            report(add_account, store, name, password, admin)
    names = [a.name for a in store.annotators()]
    if names:
        change_forms(store, names)
    table.table(accounts_frame(store), hide_index=True)


def change_forms(store: Store, names: list[str]) -> None:
    with st.form("account-active"):
        st.markdown("**Deactivate, activate or unlock an account**")
        name = st.selectbox("Account", names, key="account-active-name")
        deactivate, activate, unlock = st.columns(3)
        if deactivate.form_submit_button("Deactivate"):
            report(set_account_active, store, name, False)
        if activate.form_submit_button("Activate"):
            report(set_account_active, store, name, True)
        if unlock.form_submit_button("Unlock logins", help="After too many failed logins a name is locked."):
            report(unlock_account, store, name)
    with st.form("account-password", clear_on_submit=True):
        st.markdown("**Reset a password**")
        name = st.selectbox("Account", names, key="account-password-name")
        password = st.text_input("New password", type="password", key="account-password-new",
                                 help=f"At least {MIN_PASSWORD_LENGTH} characters; ends the account's sessions.")
        if st.form_submit_button("Set password"):
            report(reset_password, store, name, password)


def assignments_panel(store: Store, study: str) -> None:
    """Who may label which cells of ``study``, and the form that changes it (admins only)."""
    table = st.empty()  # filled last, so that it shows the change made in this run
    cells = store.cells(study)
    several = len({c["dataset"] for c in cells}) > 1
    names = [a.name for a in store.annotators() if not a.simulated]
    with st.form("assignment"):
        st.markdown(f"**Assign or unassign cells of {study}**")
        name = st.selectbox("Account", names, key="assign-name")
        chosen = st.multiselect("Cells (none: the whole study)", [cell_text(c, several) for c in cells],
                                key="assign-cells")
        assign, unassign = st.columns(2)
        if assign.form_submit_button("Assign"):
            report(change_assignment, store, name, study, chosen, True)
        if unassign.form_submit_button("Unassign"):
            report(change_assignment, store, name, study, chosen, False)
    table.table(assignments_frame(store.assignments(study)), hide_index=True)
