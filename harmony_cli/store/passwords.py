"""Passwords: the rule an account's password meets, and hashing with argon2 (argon2-cffi); clear
passwords are never stored."""
from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..errors import UserError

MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()
# Verified against when the account does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("harmony-no-such-account")


def check_password(password: str) -> str:
    """``password`` if it is long enough for an account (the CLI's and the dashboard's rule), else UserError."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password has {len(password)} characters: give one of at least "
                        f"{MIN_PASSWORD_LENGTH}")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; an account without a hash never matches."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
