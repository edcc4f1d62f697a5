"""Errors a user can fix: one line that says what was wrong and what to do.

Torch-free, so the store, the analysis and the page import it without torch.
``lightning_modules.errors.UserError`` carries the same ``user_error`` marker (the torch
package cannot import the CLI), so :func:`find_user_error` recognizes both.
"""
from __future__ import annotations

from abc import ABCMeta


class UserError(Exception, metaclass=ABCMeta):
    """Bad input: a missing path, an unknown option, a database of the wrong schema, ...

    Any exception class with ``user_error = True`` counts as a subclass for ``isinstance`` /
    ``issubclass`` (not for an ``except`` clause, which checks real bases: catch ``Exception``
    and ask :func:`find_user_error`).
    """

    user_error = True

    @classmethod
    def __subclasshook__(cls, other):
        if cls is UserError:
            return True if getattr(other, "user_error", False) else NotImplemented
        return NotImplemented


def find_user_error(exc: BaseException | None) -> BaseException | None:
    """The user error behind ``exc``: itself, the cause of a wrapper (Hydra's ``instantiate``
    wraps what a ``_target_`` raises), or a ``???`` config value left unset."""
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        if getattr(exc, "user_error", False):
            return exc
        if isinstance(exc, MissingMandatoryValue) and exc.full_key:
            return UserError(f"config value {exc.full_key} must be set: add {exc.full_key}=... to the command")
        seen.add(id(exc))
        exc = exc.__cause__
    return None
