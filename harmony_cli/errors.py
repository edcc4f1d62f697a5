"""Errors a user can fix: one line that says what was wrong and what to do, exit status 2.

``UserError`` is :class:`lightning_modules.errors.UserError` (torch-free), the one class every
package raises; this module adds how the CLI prints one. Finding the user error behind a Hydra
failure needs the config folder, so it lives in :mod:`harmony_cli.hydra_app`.
"""
from __future__ import annotations

from rich.console import Console
from rich.text import Text

from lightning_modules.errors import UserError

__all__ = ["USER_ERROR_STATUS", "UserError", "print_error", "usage_error"]

# Exit status of every command that stopped on a user error.
USER_ERROR_STATUS = 2


def usage_error(exc) -> UserError:
    """Click's refusal of the command line (an unknown option, a value of the wrong type, a missing
    argument) as one line, with where the command's options are listed."""
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "harmony"
    return UserError(f"{exc.format_message()} (see `{command} --help`)")


def print_error(error: BaseException) -> None:
    """``error: <message>`` on stderr, on one line whatever the terminal's width."""
    # a Text, not markup: messages hold brackets (``pip install 'harmony[joblib]'``)
    Console(stderr=True).print(Text.assemble(("error:", "bold red"), f" {error}"), highlight=False, soft_wrap=True)
