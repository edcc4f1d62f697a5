"""A login that survives a page reload: a signed, expiring token in the page's URL (``?session=``).

The token names the account and its session version and when it expires, signed with a secret
kept in the store (HMAC-SHA256). It holds no password and nothing about the study; a password
change or deactivation bumps the account's session version, which voids every token issued before.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import time

SECRET_NAME = "page-login"
QUERY_KEY = "session"
TOKEN_TTL_S = 12 * 3600


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def login_token(secret: str, annotator_id: int, session_version: int, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + TOKEN_TTL_S)
    payload = f"{annotator_id}.{session_version}.{expires}"
    return f"{payload}.{_signature(secret, payload)}"


def read_login_token(secret: str, token: str | None, now: float | None = None) -> tuple[int, int] | None:
    """(annotator id, session version) of a genuine, unexpired token, else None."""
    parts = (token or "").split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    payload = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _signature(secret, payload)):
        return None
    if int(parts[2]) < (time.time() if now is None else now):
        return None
    return int(parts[0]), int(parts[1])
