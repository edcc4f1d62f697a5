"""The CLI's console in a log file: whole lines, and rules of a readable width."""
from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from harmony_cli.console import RULE_WIDTH, print_rule


def test_a_rule_in_a_log_file_is_not_the_consoles_width():
    log = io.StringIO()
    console = Console(file=log, width=100_000, soft_wrap=True)  # output_console() off a terminal
    print_rule(console, "1. finetune")
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and "1. finetune" in lines[0]
    assert RULE_WIDTH - 2 <= len(lines[0]) <= RULE_WIDTH, len(lines[0])


def test_a_rule_on_a_narrow_terminal_fits_it():
    log = io.StringIO()
    print_rule(Console(file=log, width=40), "2. build-dataset")
    assert max(len(line) for line in log.getvalue().splitlines()) <= 40


def test_the_demo_stage_header_piped_to_a_file_reads_as_short_lines(tmp_path):
    """run_stage's header and closing line through a pipe (the stage itself: a harmony command that fails)."""
    code = ("import sys; from harmony_cli.demo import run_stage\n"
            "try:\n    run_stage('1. no such command', ['no-such-command'], [])\nexcept SystemExit:\n    pass\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert "1. no such command" in out and "the demo stops here" in out
    assert max(len(line) for line in out.splitlines()) <= RULE_WIDTH, out


def test_logged_progress_prints_lines_in_a_log_file_at_most_every_few_seconds():
    from harmony_cli.console import LoggedProgress

    now = [0.0]
    log = io.StringIO()
    console = Console(file=log, width=100_000, soft_wrap=True)  # not a terminal
    with LoggedProgress(console=console, every_seconds=5, get_time=lambda: now[0]) as progress:
        task = progress.add_task("rma / gradcam / tiny", total=100)
        for _ in range(10):  # 10 advances, 2 s apart: a line at 6, 12 and 18 s
            now[0] += 2
            progress.advance(task, 10)
        lines = [line for line in log.getvalue().splitlines() if line.strip()]
    assert lines == ["rma / gradcam / tiny: 30/100 (6 s)", "rma / gradcam / tiny: 60/100 (12 s)",
                     "rma / gradcam / tiny: 90/100 (18 s)"], lines


def test_logged_progress_on_a_terminal_draws_rich_bars_only():
    from harmony_cli.console import LoggedProgress

    log = io.StringIO()
    console = Console(file=log, width=80, force_terminal=True)
    with LoggedProgress(console=console, every_seconds=0) as progress:
        task = progress.add_task("cell", total=4)
        progress.advance(task, 4)
    assert "cell: 4/4" not in log.getvalue()
