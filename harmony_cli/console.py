"""The console the CLI prints on: the terminal's width on a terminal; in a log file whole lines.

Piped to a file, rich would wrap text and tables at 80 columns, breaking paths and table rows
over several lines; there nothing is wrapped instead.
"""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.rule import Rule

from lightning_modules.logs import PROGRESS_SECONDS

RULE_WIDTH = 100  # columns of a titled rule at most: a log's console is 100,000 wide


def output_console(**options) -> Console:
    """A Console for stdout (``options`` as rich's, e.g. ``highlight=False``)."""
    if sys.stdout.isatty():
        return Console(**options)
    return Console(width=100_000, soft_wrap=True, **options)


def print_rule(console: Console, title: str) -> None:
    """A titled horizontal rule, as wide as the terminal but never wider than RULE_WIDTH."""
    console.print(Rule(title), width=min(console.width, RULE_WIDTH))


class LoggedProgress(Progress):
    """rich's Progress, which draws nothing on a console that is not a terminal until it stops; there
    (a pipe or a log file) each advance prints a line instead, at most every ``every_seconds``."""

    def __init__(self, *columns, every_seconds: float = PROGRESS_SECONDS, **options):
        super().__init__(*columns, **options)
        self.every_seconds = every_seconds
        self._last_line = self.get_time()

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.console.is_terminal or self.get_time() - self._last_line < self.every_seconds:
            return
        self._last_line = self.get_time()
        task = self._tasks[task_id]
        total = f"/{task.total:g}" if task.total is not None else ""
        self.console.print(f"{task.description}: {task.completed:g}{total} ({task.elapsed or 0:.0f} s)",
                           highlight=False)
