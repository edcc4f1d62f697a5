"""The console every benchmark prints its table on.

Piped to a log file, rich would wrap a table to 80 columns and break every cell over
several lines; there it is printed 160 columns wide instead, one row per line.
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

LOG_WIDTH = 160


def table_console() -> Console:
    """A terminal's own width on a terminal, ``LOG_WIDTH`` columns otherwise."""
    return Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)


def print_timing_rows(title: str, rows: list[dict]) -> None:
    """The rows of a timing benchmark (benchmark, case, ours_s, reference_s, ratio, target, ok) as one table."""
    table = Table(title=title)
    for column in ("benchmark", "case", "ours s", "reference s", "ratio", "target", "ok"):
        table.add_column(column, justify="right" if column.endswith("s") or column == "ratio" else "left")
    for row in rows:
        table.add_row(row["benchmark"], row["case"], f"{row['ours_s']:.4f}", f"{row['reference_s']:.4f}",
                      f"{row['ratio']:.2f}", row["target"], "yes" if row["ok"] else "NO")
    table_console().print(table)
