"""``make demo``'s log, piped to a file as a new user would: a shortened demo (few steps, few examples,
the session's base model) twice, read line by line as it is written.

The log has each record once, none of Lightning's tips, deprecation warnings or model-summary table,
a line at least every 15 s of each stage, and ends with the verdict table and three commands that
work from the folder the demo ran in. The second demo reuses the first's sweep, examples and labels.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import CACHE_OVERRIDES, REPO

MAX_SILENCE = 15.0  # seconds a stage may go without a line (issue 29)
# a log line's own prefix: Hydra's / harmony's "[time][logger][LEVEL] - ", or Lightning's own "INFO: "
PREFIX = re.compile(r"^(\[[^\]]*\]\[[^\]]*\](\[[A-Z]+\])? - |\[[^\]]*\]\[HYDRA\] |[A-Z]+: )")
STAGE = re.compile(r"^─+ (\d\. .*?) ─+$")


def _run_demo(cwd: Path, overrides: list[str]) -> list[tuple[float, str]]:
    """The demo's stdout and stderr, one pipe, as (seconds since start, line) in arrival order."""
    env = {**os.environ, "HARMONY_OUTPUTS": str(cwd / "outputs"), "HARMONY_DEMO_EXAMPLES": "8",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("HARMONY_DB_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "harmony_cli.demo", *overrides], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started, lines = time.monotonic(), []

    def read() -> None:
        for line in process.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))

    reader = threading.Thread(target=read)
    reader.start()
    code = process.wait(timeout=600)
    reader.join()
    lines.append((time.monotonic() - started, "<end>"))
    assert code == 0, "\n".join(text for _, text in lines[-60:])
    return lines


def _stages(lines: list[tuple[float, str]]) -> dict[str, list[tuple[float, str]]]:
    """The lines of each stage, from its rule to the next (the last stage: to the end)."""
    stages: dict[str, list[tuple[float, str]]] = {}
    current = None
    for at, text in lines:
        found = STAGE.match(text.strip())
        if found:
            current = found.group(1)
            stages[current] = []
        if current is not None:
            stages[current].append((at, text))
    return stages


def _records(stage: list[tuple[float, str]]) -> list[str]:
    """Each line's message without its log prefix."""
    return [PREFIX.sub("", text).strip() for _, text in stage]


@pytest.fixture(scope="module")
def demo_logs(trained_tiny, tmp_path_factory) -> tuple[Path, list, list]:
    import torch

    cwd = tmp_path_factory.mktemp("demo")
    weights = cwd / "tiny.pt"
    torch.save(trained_tiny.state_dict(), weights)
    overrides = [*CACHE_OVERRIDES, f"backbone.weights={weights}", "data.train_size=256", "data.val_size=64",
                 "data.test_size=64", "finetune.batch_size=16", "finetune.val_size=32", "finetune.val_batch_size=32",
                 "finetune.plot_images=4", "trainer.val_check_interval=5", "trainer.max_steps=10"]
    first = _run_demo(cwd, overrides)
    second = _run_demo(cwd, overrides)
    return cwd, first, second


def test_the_piped_log_has_each_record_once_and_no_third_party_noise(demo_logs):
    _, first, _ = demo_logs
    text = "\n".join(line for _, line in first)
    assert "Launching 2 jobs" in text and "4. analyze" in text  # the log is the demo's
    for noise in ("💡", "litlogger", "Tip:", "eprecat", "FutureWarning", "validation_step", "FLOPs",
                  "val_dataloader"):
        assert noise not in text, noise
    assert not [line for _, line in first if line.startswith("INFO: ")], "Lightning's own copy of a record"
    for title, stage in _stages(first).items():
        for job in _jobs(stage):  # a sweep's jobs each log their own "GPU available", summary, ...
            words = [line for line in _records(job) if re.search(r"[A-Za-z0-9]", line)]
            repeated = {line for line in words if words.count(line) > 1}
            assert not repeated, (title, repeated)


def _jobs(stage: list[tuple[float, str]]) -> list[list[tuple[float, str]]]:
    """A stage's lines split where Hydra launches a sweep's next job ("[HYDRA] \t#1 : ...")."""
    jobs: list[list[tuple[float, str]]] = [[]]
    for at, text in stage:
        if re.search(r"\[HYDRA\] \t#\d+ : ", text):
            jobs.append([])
        jobs[-1].append((at, text))
    return jobs


def test_each_stage_prints_a_line_at_least_every_15_seconds(demo_logs):
    _, first, _ = demo_logs
    stages = _stages(first)
    assert len(stages) == 4, list(stages)
    ends = [stage[0][0] for stage in list(stages.values())[1:]] + [first[-1][0]]
    for (title, stage), end in zip(stages.items(), ends):
        times = [at for at, _ in stage] + [end]
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert max(gaps) <= MAX_SILENCE, (title, max(gaps), stage)


def test_the_demo_ends_with_the_verdict_table_and_three_commands_that_work_from_its_folder(demo_logs):
    cwd, first, _ = demo_logs
    lines = [line for _, line in first[:-1]]
    block = lines[lines.index(next(line for line in lines if "harmony demo done in" in line)):]
    assert [line.split(":")[0].strip() for line in block[1:]] == ["open the page", "run the real study",
                                                                  "read the report"]
    before = "\n".join(lines[:len(lines) - len(block)])
    analyze = before[before.index("4. analyze"):]  # from the stage's rule: the verdict table and its counts
    assert "verdict" in analyze and re.search(r"aligned \d+, misaligned \d+", analyze)
    commands = [shlex.split(line.split(":", 1)[1].split("#")[0]) for line in block[1:]]
    for command in commands[:2]:
        assert _executable(cwd, command[0]).is_file(), command
    assert commands[2][0] == "less" and (cwd / commands[2][1]).is_file()
    help_run = subprocess.run([str(_executable(cwd, commands[1][0])), *commands[1][1:3], "--help"], cwd=cwd,
                              capture_output=True, text=True, timeout=120)
    assert help_run.returncode == 0 and "miniature" in help_run.stdout, help_run.stderr


def _executable(cwd: Path, name: str) -> Path:
    """A command's program as the shell in ``cwd`` finds it."""
    return Path(shutil.which(name) or "") if os.sep not in name else cwd / name


def test_a_second_demo_reuses_the_sweep_the_examples_and_the_labels(demo_logs):
    _, _, second = demo_logs
    text = "\n".join(line for _, line in second)
    assert "reusing the finished sweep" in text and "Launching" not in text
    assert "0 labels added" in text
    added = [line for line in text.splitlines() if "/ gradcam / tiny" in line and "│" in line]
    assert added and all(line.split("│")[3].strip() == "0" for line in added), added  # the "added" column
