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
