"""Logins on the annotation page, kept in the store so that every page server shares them.

A login gets a random token (the page puts it in its URL, so that a reload stays logged in). The
store keeps only the token's SHA-256 with the account, its session version and the server's time of
issue: someone who reads the store cannot turn a row into a working token, logging out deletes the
row, and the lifetime counts from the issue time the server recorded, whatever a client sends. No
signing key exists, so none has to be shared between page servers or kept out of the store.
"""
from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import delete, select

from .models import Annotator, PageSession

# How long a page login lasts from its issue, however active; then the annotator logs in again.
PAGE_SESSION_TTL_S = 12 * 3600
TOKEN_BYTES = 32


def token_hash(token: str) -> str:
    """The stored form of a page token (a random 256-bit token needs no salt or slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


class PageSessionsMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def start_page_session(self, annotator_id: int, session_version: int, now: float | None = None) -> str:
        """A new page login for this account: its token (shown to the browser only); expired logins
        of every account are deleted in the same transaction."""
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.write() as session:
            session.execute(delete(PageSession).where(PageSession.issued_at <= now - PAGE_SESSION_TTL_S))
            session.add(PageSession(token_hash=token_hash(token), annotator_id=annotator_id,
                                    session_version=session_version, issued_at=now))
        return token

    def page_session(self, token: str | None, now: float | None = None) -> Annotator | None:
        """The account a page token logs in, or None: unknown or logged-out token, past its lifetime
        (from the server's issue time), or an account since deactivated, given a new password, or
        that cannot log in."""
        if not token:
            return None
        now = time.time() if now is None else now
        query = (select(Annotator, PageSession.issued_at)
                 .join(PageSession, PageSession.annotator_id == Annotator.id)
                 .where(PageSession.token_hash == token_hash(token),
                        PageSession.session_version == Annotator.session_version))
        with self.read() as session:
            found = session.execute(query).first()
        if found is None:
            return None
        annotator, issued_at = found
        if now >= issued_at + PAGE_SESSION_TTL_S:
            return None
        if not (annotator.active and annotator.password_hash and not annotator.simulated):
            return None
        return annotator

    def end_page_session(self, token: str | None) -> bool:
        """Log a page token out (its row is deleted); whether it was a login."""
        if not token:
            return False
        with self.write() as session:
            return session.execute(delete(PageSession).where(PageSession.token_hash == token_hash(token))).rowcount > 0
