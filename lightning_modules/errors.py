"""Errors a user can fix. Their message is one line that says what was wrong and what to do.

The CLI (``harmony_cli.errors.find_user_error``) prints any exception whose class has
``user_error = True`` as one line; this package cannot import the CLI, so it marks its own.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a missing path, an unknown option, weights not in the cache, ..."""

    user_error = True
