"""Errors a user can fix. Their message is one line that says what was wrong and what to do."""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a missing path, an unknown option, weights not in the cache, ..."""


def find_user_error(exc: BaseException | None) -> UserError | None:
    """The user error behind ``exc``: itself, the cause of a wrapper (Hydra's ``instantiate``
    wraps what a ``_target_`` raises), or a ``???`` config value left unset."""
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        if isinstance(exc, MissingMandatoryValue) and exc.full_key:
            return UserError(f"config value {exc.full_key} must be set: add {exc.full_key}=... to the command")
        seen.add(id(exc))
        exc = exc.__cause__
    return None
