"""The console every benchmark prints its table on.

Piped to a log file, rich would wrap a table to 80 columns and break every cell over
several lines; there it is printed 160 columns wide instead, one row per line.
"""
from __future__ import annotations

import sys

from rich.console import Console

LOG_WIDTH = 160


def table_console() -> Console:
    """A terminal's own width on a terminal, ``LOG_WIDTH`` columns otherwise."""
    return Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)
