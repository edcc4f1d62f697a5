"""Errors a user can fix: one line that says what was wrong and what to do.

Torch-free, so the store, the analysis and the page import it without torch.
``lightning_modules.errors.UserError`` carries the same ``user_error`` marker (the torch
package cannot import the CLI), so :func:`find_user_error` recognizes both.
"""
from __future__ import annotations

import sys
from abc import ABCMeta
from contextlib import contextmanager
from typing import Iterator

# Exit status of every command that stopped on a user error.
USER_ERROR_STATUS = 2


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
    wraps what a ``_target_`` raises), a ``???`` config value left unset, or an override that
    does not compose (Hydra's composition errors)."""
    from omegaconf.errors import MissingMandatoryValue

    seen = set()
    while exc is not None and id(exc) not in seen:
        if getattr(exc, "user_error", False):
            return exc
        if isinstance(exc, MissingMandatoryValue) and exc.full_key:
            return UserError(f"config value {exc.full_key} must be set: add {exc.full_key}=... to the command")
        if type(exc).__module__.startswith("hydra."):
            from .hydra_app import config_error

            converted = config_error(exc)
            if converted is not None:
                return converted
        seen.add(id(exc))
        exc = exc.__cause__
    return None


def usage_error(exc) -> UserError:
    """Click's refusal of the command line (an unknown option, a value of the wrong type, a missing
    argument) as one line, with where the command's options are listed."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "harmony"
    return UserError(f"{exc.format_message()} (see `{command} --help`)")


def print_error(error: BaseException) -> None:
    """``error: <message>`` on stderr, on one line whatever the terminal's width."""
    from rich.console import Console
    from rich.text import Text

    # a Text, not markup: messages hold brackets (``pip install 'harmony[joblib]'``)
    Console(stderr=True).print(Text.assemble(("error:", "bold red"), f" {error}"), highlight=False, soft_wrap=True)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Run the body; a user error prints one line and exits with status 2, anything else propagates.

    The whole CLI runs inside it; a Hydra job runs inside it too, since Hydra would otherwise
    add its own lines about the failed job.
    """
    try:
        yield
    except Exception as exc:
        error = find_user_error(exc)
        if error is None:
            raise
        print_error(error)
        sys.exit(USER_ERROR_STATUS)
