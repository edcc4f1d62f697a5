"""Annotator accounts: names, passwords, sessions, and login throttling kept in the store.

Throttling lives in the database so that every page server shares it: each entered name (an
account's or not) has a row counting its failed attempts. After FREE_ATTEMPTS, each attempt must
wait BASE_DELAY_S doubled per further failure (at most MAX_DELAY_S) after the previous one; one
that comes sooner is refused without checking the password, so parallel guesses cannot share a
delay. After LOCK_AFTER failures the name is locked until an admin unlocks it.
"""
from __future__ import annotations

import math
import time
import unicodedata
from dataclasses import dataclass

from sqlalchemy import select

from .db import StoreError
from .models import Annotator, LoginGuard
from .passwords import hash_password, verify_password

NAME_MAX = 150
FREE_ATTEMPTS = 3
BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
LOCK_AFTER = 10
WRONG = "Wrong name or password."


def normalize_name(name: str) -> str:
    """``name`` stripped and in Unicode NFC, so "Zoë" typed either way is one account; StoreError
    (one line) when empty, too long or holding control characters."""
    normal = unicodedata.normalize("NFC", str(name).strip())
    if not normal:
        raise StoreError("an annotator needs a non-empty name")
    if any(unicodedata.category(c).startswith("C") for c in normal):
        raise StoreError("an annotator name cannot hold control or invisible characters (NUL, tab, newline, ...): "
                         "give a plain name")
    if len(normal) > NAME_MAX:
        raise StoreError(f"an annotator name has at most {NAME_MAX} characters, this one {len(normal)}: "
                         f"give a shorter name")
    return normal


def login_delay(attempts: int) -> float:
    """Seconds an attempt must wait after the previous one, given the failed attempts before it."""
    extra = attempts - FREE_ATTEMPTS
    return 0.0 if extra < 0 else min(MAX_DELAY_S, BASE_DELAY_S * 2 ** extra)


@dataclass
class LoginResult:
    """The account logged in to, or None and the one line to show."""

    annotator: Annotator | None
    message: str | None = None


class AccountsMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write``/``insert`` from StoreBase)."""

    def add_annotator(self, name: str, password: str | None, admin: bool = False, active: bool = True,
                      simulated: bool = False) -> Annotator:
        """Create an annotator; ``password=None`` makes an account that cannot log in."""
        name = normalize_name(name)
        with self.write() as session:
            if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
                raise StoreError(f"annotator {name!r} exists already: use `harmony annotators set-password {name}`")
            annotator = Annotator(name=name, password_hash=hash_password(password) if password else None,
                                  is_admin=admin, active=active, simulated=simulated)
            session.add(annotator)
            session.flush()
            return annotator

    def annotator(self, name: str) -> Annotator | None:
        try:
            name = normalize_name(name)
        except StoreError:
            return None  # no account can have such a name
        with self.read() as session:
            return session.scalar(select(Annotator).where(Annotator.name == name))

    def annotator_by_id(self, annotator_id: int) -> Annotator | None:
        with self.read() as session:
            return session.get(Annotator, annotator_id)

    def annotators(self) -> list[Annotator]:
        with self.read() as session:
            return list(session.scalars(select(Annotator).order_by(Annotator.name)))

    def _account(self, session, name: str) -> Annotator:
        annotator = session.scalar(select(Annotator).where(Annotator.name == normalize_name(name)))
        if annotator is None:
            raise StoreError(f"no annotator {name!r}: see `harmony annotators list`")
        return annotator

    def set_password(self, name: str, password: str) -> None:
        """A new password; ends the account's open page sessions."""
        if not password:
            raise StoreError("a password cannot be empty")
        with self.write() as session:
            annotator = self._account(session, name)
            if annotator.simulated:
                raise StoreError(f"annotator {annotator.name!r} is simulated (made by simulate-annotators): simulated "
                                 f"accounts never log in; add a real one with `harmony annotators add NAME`")
            annotator.password_hash = hash_password(password)
            annotator.session_version += 1

    def set_active(self, name: str, active: bool) -> None:
        """(De)activate an account; deactivation ends its open page sessions at once."""
        with self.write() as session:
            annotator = self._account(session, name)
            if annotator.active != active:
                annotator.active = active
                annotator.session_version += 1

    def unlock(self, name: str) -> bool:
        """Clear the failed logins of an entered name; whether it was locked."""
        name = normalize_name(name)
        with self.write() as session:
            guard = session.get(LoginGuard, name)
            if guard is None:
                return False
            was_locked = guard.locked
            session.delete(guard)
            return was_locked

    def session_valid(self, annotator_id: int, session_version: int) -> bool:
        """Whether a page session of this account and version may still act."""
        annotator = self.annotator_by_id(annotator_id)
        return (annotator is not None and annotator.active and not annotator.simulated
                and annotator.session_version == session_version)

    def authenticate(self, name: str, password: str) -> Annotator | None:
        """The account for this name and password if it may log in now, else None (no hint why)."""
        return self.login(name, password).annotator

    def login(self, name: str, password: str, now: float | None = None) -> LoginResult:
        """Check a login through the store's throttle; the account, or None and what to show."""
        try:
            name = normalize_name(name)
        except StoreError:
            return LoginResult(None, WRONG)
        now = time.time() if now is None else now
        refused = self._reserve_attempt(name, now)
        if refused is not None:
            return LoginResult(None, refused)
        annotator = self.annotator(name)
        ok = verify_password(annotator.password_hash if annotator else None, password)
        ok = ok and annotator is not None and annotator.active and not annotator.simulated
        with self.write() as session:
            guard = session.get(LoginGuard, name)
            if ok:
                guard.attempts = 0
            elif guard.attempts >= LOCK_AFTER:
                guard.locked = True
        return LoginResult(annotator, None) if ok else LoginResult(None, WRONG)

    def _reserve_attempt(self, name: str, now: float) -> str | None:
        """Count an attempt for ``name`` (as failed until it succeeds), or say why it must not be made."""
        with self.write() as session:
            session.execute(self.insert(LoginGuard).values(name=name, attempts=0, locked=False)
                            .on_conflict_do_nothing(index_elements=["name"]))
            guard = session.scalar(select(LoginGuard).where(LoginGuard.name == name).with_for_update())
            if guard.locked:
                return ("This name is locked after too many failed logins: ask your study's admin to unlock it "
                        "(harmony annotators unlock NAME).")
            wait = login_delay(guard.attempts)
            if guard.last_attempt_at is not None and now < guard.last_attempt_at + wait:
                return (f"Too many failed logins for this name: wait {math.ceil(guard.last_attempt_at + wait - now)} s, "
                        f"then try again.")
            guard.attempts += 1
            guard.last_attempt_at = now
        return None
