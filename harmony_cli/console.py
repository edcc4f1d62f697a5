"""The console the CLI prints on: the terminal's width on a terminal; in a log file whole lines.

Piped to a file, rich would wrap text and tables at 80 columns, breaking paths and table rows
over several lines; there nothing is wrapped instead.
"""
from __future__ import annotations

import sys

from rich.console import Console


def output_console(**options) -> Console:
    """A Console for stdout (``options`` as rich's, e.g. ``highlight=False``)."""
    if sys.stdout.isatty():
        return Console(**options)
    return Console(width=100_000, soft_wrap=True, **options)
