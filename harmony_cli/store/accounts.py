"""Annotator accounts: names, passwords, session versions, and login throttling kept in the store.

Throttling lives in the database so that every page server shares it, per entered name (an account's
or not) and client address: a guesser slows and locks their own client's attempts at a name, never the
owner's from another address. After FREE_ATTEMPTS failures, each attempt must wait BASE_DELAY_S doubled
per further failure (at most MAX_DELAY_S) after the previous one; one that comes sooner is refused
without checking the password, so parallel guesses cannot share a delay. After LOCK_AFTER failures from
one address the name is locked for that address until an admin unlocks it. Clients whose address the
page cannot tell (a browser or a reverse proxy on the server's own machine) share one count that
delays but never locks, so that no one can lock the owner out.

A count is forgotten GUARD_WINDOW_S after its last attempt (its lock with it), and the table keeps at
most MAX_GUARD_ROWS rows (the least recent go first), so that names tried at random cannot fill the store.
"""
from __future__ import annotations

import ipaddress
import math
import time
import unicodedata
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select, tuple_

from .db import StoreError
from .models import Annotator, LoginGuard
from .passwords import hash_password, verify_password

NAME_MAX = 150
FREE_ATTEMPTS = 3
BASE_DELAY_S = 1.0
MAX_DELAY_S = 30.0
LOCK_AFTER = 10
GUARD_WINDOW_S = 24 * 3600
MAX_GUARD_ROWS = 10_000
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


def client_key(client: object) -> str:
    """Whom a login attempt is counted for: an IPv4 address, an IPv6 address's /64 network (one host
    holds a whole /64, so cycling through it is one client), or "" when unknown or not an address."""
    try:
        address = ipaddress.ip_address(client) if isinstance(client, str) else None
    except ValueError:
        address = None
    if address is None:
        return ""
    if address.version == 6 and address.ipv4_mapped:  # an IPv4 client of a dual-stack server
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


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
        """Clear the failed logins of an entered name from every address; whether it was locked for any."""
        name = normalize_name(name)
        with self.write() as session:
            guards = list(session.scalars(select(LoginGuard).where(LoginGuard.name == name)))
            for guard in guards:
                session.delete(guard)
            return any(guard.locked for guard in guards)

    def authenticate(self, name: str, password: str) -> Annotator | None:
        """The account for this name and password if it may log in now, else None (no hint why)."""
        return self.login(name, password).annotator

    def login(self, name: str, password: str, client: str | None = None, now: float | None = None) -> LoginResult:
        """Check a login through the store's throttle; the account, or None and what to show.

        ``client``: the address the attempt comes from (None: unknown, see the module's docstring)."""
        try:
            name = normalize_name(name)
        except StoreError:
            return LoginResult(None, WRONG)
        now = time.time() if now is None else now
        client = client_key(client)
        refused = self._reserve_attempt(name, client, now)
        if refused is not None:
            return LoginResult(None, refused)
        annotator = self.annotator(name)
        ok = verify_password(annotator.password_hash if annotator else None, password)
        ok = ok and annotator is not None and annotator.active and not annotator.simulated
        with self.write() as session:
            guard = session.get(LoginGuard, (name, client))  # None: it made room for others' attempts meanwhile
            if guard is not None and ok:
                guard.attempts = 0
            elif guard is not None and client and guard.attempts >= LOCK_AFTER:
                guard.locked = True  # only a known address: a shared, unknown one would lock the owner out too
        return LoginResult(annotator, None) if ok else LoginResult(None, WRONG)

    def _reserve_attempt(self, name: str, client: str, now: float) -> str | None:
        """Count an attempt for ``name`` from ``client`` (as failed until it succeeds), or say why it must
        not be made."""
        with self.write() as session:
            made = session.execute(self.insert(LoginGuard).values(name=name, client=client, attempts=0, locked=False)
                                   .on_conflict_do_nothing(index_elements=["name", "client"])
                                   .returning(LoginGuard.name)).first()  # (not rowcount: -1 on PostgreSQL here)
            if made is not None:
                _bound_guards(session, now, keep=(name, client))
            guard = session.scalar(select(LoginGuard).where(LoginGuard.name == name, LoginGuard.client == client)
                                   .with_for_update())
            if guard.last_attempt_at is not None and now - guard.last_attempt_at >= GUARD_WINDOW_S:
                guard.attempts, guard.locked = 0, False  # forgotten
            if guard.locked:
                return ("This name is locked after too many failed logins from your address: ask your study's "
                        "admin to unlock it (harmony annotators unlock NAME).")
            wait = login_delay(guard.attempts)
            if guard.last_attempt_at is not None and now < guard.last_attempt_at + wait:
                return (f"Too many failed logins for this name: wait {math.ceil(guard.last_attempt_at + wait - now)} s, "
                        f"then try again.")
            guard.attempts += 1
            guard.last_attempt_at = now
        return None


def _bound_guards(session, now: float, keep: tuple[str, str]) -> None:
    """Forget counts older than GUARD_WINDOW_S, then the least recent beyond MAX_GUARD_ROWS (unlocked ones
    first), never the row ``keep`` (name, client) that the caller is counting."""
    session.execute(delete(LoginGuard).where(LoginGuard.last_attempt_at < now - GUARD_WINDOW_S)
                    .execution_options(synchronize_session=False))
    excess = session.scalar(select(func.count()).select_from(LoginGuard)) - MAX_GUARD_ROWS
    if excess <= 0:
        return
    oldest = (select(LoginGuard.name, LoginGuard.client)
              .where(or_(LoginGuard.name != keep[0], LoginGuard.client != keep[1]))
              .order_by(LoginGuard.locked, LoginGuard.last_attempt_at).limit(excess))
    session.execute(delete(LoginGuard).where(tuple_(LoginGuard.name, LoginGuard.client).in_(oldest))
                    .execution_options(synchronize_session=False))
