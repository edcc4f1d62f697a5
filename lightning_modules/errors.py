"""Errors a user can fix. Their message is one line that says what was wrong and what to do.

The one ``UserError`` class of harmony: it lives here, torch-free, because ``lightning_modules``
cannot import the CLI while the CLI, the store, the analysis and the page can import this module
(``lightning_modules/__init__.py`` imports nothing). ``harmony_cli.errors`` re-exports it.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: a missing path, an unknown option, a database of the wrong schema, weights not in the cache, ..."""
