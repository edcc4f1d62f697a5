"""Reliability as a user meets it: kill -9 and resume, and one-line errors from every command."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.helpers import HARMONY, harmony


def _popen(*args: str) -> subprocess.Popen:
    command = [str(HARMONY)] if HARMONY.is_file() else [sys.executable, "-m", "harmony_cli.main"]
    return subprocess.Popen([*command, *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the command ended before it could be killed"
        assert time.monotonic() < deadline, "timed out waiting for the command to make progress"
        time.sleep(0.02)


def _kill9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL


def test_finetune_killed_with_sigkill_resumes_to_the_same_final_step(small_run, tmp_path):
    budget = [o for o in small_run if not o.startswith(("trainer.max_steps", "trainer.val_check_interval"))]
    args = ["finetune", "metric=rma", *budget, "trainer.max_steps=60", "trainer.val_check_interval=5"]
    process = _popen(*args)
    runs = tmp_path / "outputs" / "finetune"
    _wait_for(lambda: any(runs.glob("*/checkpoints/last.ckpt")), process)
    _kill9(process)
    (run,) = runs.iterdir()
    assert not (run / "metrics.json").exists(), "the run finished before it was killed"

    resumed = harmony(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(runs.iterdir()) == [run]
    assert json.loads((run / "metrics.json").read_text())["steps"] == 60


def _examples(db: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT source_key, image_path, original_map_path, finetuned_map_path "
                            "FROM harmony_example").fetchall()


def test_build_dataset_killed_with_sigkill_completes_without_duplicates(small_run, tmp_path):
    finetuned = harmony("finetune", "metric=rma", *small_run)
    assert finetuned.returncode == 0, finetuned.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "finetune").iterdir()
    db = tmp_path / "study.db"
    args = ["build-dataset", f"run={run}", "study.name=killed", "study.examples_per_cell=30", "study.batch_size=2",
            f"paths.outputs={tmp_path / 'outputs'}", "--db", f"sqlite:///{db}"]
    process = _popen(*args)

    def some_examples() -> bool:
        try:
            return len(_examples(db)) >= 4
        except sqlite3.Error:  # not created yet
            return False

    _wait_for(some_examples, process)
    _kill9(process)
    assert len(_examples(db)) < 30, "the build finished before it was killed"

    again = harmony(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    rows = _examples(db)
    assert len(rows) == 30 and len({r[0] for r in rows}) == 30
    image_dir = next((tmp_path / "outputs").glob("study_images/*"))
    for row in rows:
        for path in row[1:]:
            assert (image_dir / path).is_file()


@pytest.fixture
def foreign_db(tmp_path) -> Path:
    path = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    return path


@pytest.fixture
def not_a_db(tmp_path) -> Path:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 50)
    return path


# (arguments, what the one line must say: never empty, "" is in every line); {foreign} / {garbage} /
# {missing} are filled in per test.
CASES = [
    (["finetune", "metric=nope"], "unknown metric 'nope'"),
    (["finetune", "nosuchoption=1"], "unknown config option 'nosuchoption'"),
    (["finetune", "backbone.weights={missing}"], "does not exist"),
    (["finetune", "data=imagenet", "data.root={missing}"], "ImageNet"),
    (["build-dataset", "run={missing}"], "{missing}"),
    (["build-dataset", "study.nosuchoption=1"], "unknown config option"),
    (["studies", "--db", "sqlite:///{foreign}"], "not a harmony store"),
    (["studies", "--db", "sqlite:///{garbage}"], "database"),
    (["analyze", "--db", "sqlite:///{foreign}"], "not a harmony store"),
    (["analyze", "--db", "sqlite:///{missing}"], "{missing}"),
    (["annotators", "list", "--db", "sqlite:///{foreign}"], "not a harmony store"),
    (["simulate-annotators", "--db", "sqlite:///{garbage}"], "database"),
    (["import-legacy", "{missing}"], "{missing}"),
    (["import-legacy", "{foreign}"], "HARMONY"),
    (["data", "preview", "data=nope"], "unknown data 'nope'"),
    (["data", "preview", "data=imagenet", "data.root={missing}"], "data.root"),
]


@pytest.mark.parametrize("args, expected", CASES, ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in enumerate(CASES)])
def test_every_command_says_what_to_fix_in_one_line(args, expected, tmp_path, foreign_db, not_a_db):
    missing = tmp_path / "does-not-exist"
    assert expected, "an empty expectation matches any line"
    fill = {"{foreign}": str(foreign_db), "{garbage}": str(not_a_db), "{missing}": str(missing)}
    for key, value in fill.items():
        args = [a.replace(key, value) for a in args]
        expected = expected.replace(key, value)
    before = {p: p.read_bytes() for p in (foreign_db, not_a_db)}
    if args[0] in ("finetune", "build-dataset"):  # keep their run dirs out of the project's outputs/
        args = [*args, f"paths.outputs={tmp_path / 'out'}"]
    result = harmony(*args, cwd=tmp_path, timeout=300)  # whatever the checkout's outputs/ holds
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error:") and expected.lower() in lines[0].lower(), lines[0]
    # nothing that was stored is touched by a failing command
    assert all(p.read_bytes() == data for p, data in before.items())
    assert not missing.exists()
