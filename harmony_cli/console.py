"""The console the CLI prints on: the terminal's width on a terminal; in a log file whole lines.

Piped to a file, rich would wrap text and tables at 80 columns, breaking paths and table rows
over several lines; there nothing is wrapped instead.
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.rule import Rule

RULE_WIDTH = 100  # columns of a titled rule at most: a log's console is 100,000 wide


def output_console(**options) -> Console:
    """A Console for stdout (``options`` as rich's, e.g. ``highlight=False``)."""
    if sys.stdout.isatty():
        return Console(**options)
    return Console(width=100_000, soft_wrap=True, **options)


def print_rule(console: Console, title: str) -> None:
    """A titled horizontal rule, as wide as the terminal but never wider than RULE_WIDTH."""
    console.print(Rule(title), width=min(console.width, RULE_WIDTH))
