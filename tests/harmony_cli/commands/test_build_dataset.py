"""Bad input to `harmony build-dataset`: one line, exit status 2, nothing written.

Each case runs the real console entry (``harmony_cli.main:main``) in-process and checks the one-line
message, the exit status and that no store row and no image file was added. A full or read-only disk is
simulated by tests/failing_writes.py.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_cli.store import Store
from tests.conftest import REPO, TEST_CACHE
from tests.failing_writes import database_full, fail_writes_below
from tests.helpers import files_under, row_counts, run_main


def cli_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``harmony_cli.main:main`` in-process: (exit status, stderr)."""
    code, _, err = run_main(monkeypatch, capsys, *args)
    return code, err


@pytest.fixture(scope="module")
def finished_run(tiny_weights, tmp_path_factory) -> Path:
    """A finished one-step rma/gradcam finetune run of the tiny backbone; its dir."""
    outputs = tmp_path_factory.mktemp("bad_input") / "outputs"
    command = [sys.executable, "-m", "harmony_cli.main", "finetune", "metric=rma", f"paths.outputs={outputs}",
               f"paths.cache={TEST_CACHE / 'cache'}", f"paths.models={TEST_CACHE / 'models'}",
               f"backbone.weights={tiny_weights}", "data.train_size=64", "data.val_size=16", "data.test_size=32",
               "finetune.batch_size=8", "finetune.val_size=16", "finetune.val_batch_size=16",
               "finetune.plot_images=2", "trainer.val_check_interval=1", "trainer.max_steps=1",
               "trainer.enable_progress_bar=false"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (outputs / "finetune").iterdir()
    return run


def no_checkpoint_run(root: Path) -> Path:
    """What `trainer.max_steps=0` once left: a config and a metrics.json, but no checkpoint."""
    run = root / "outputs" / "finetune" / "2025-01-01_10-00-00"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("data: {name: synthetic}\nmetric: {name: rma}\n"
                                                "backbone: {name: tiny}\nattribution: {name: gradcam}\n")
    (run / "metrics.json").write_text('{"best_checkpoint": null, "steps": 0}')
    return run


# (id, arguments after the command; {run} {bare} {file} {images} filled in, setup, what the line must say)
BUILD_CASES = [
    ("examples_per_cell=abc", ["run={run}", "study.examples_per_cell=abc"], None,
     "study.examples_per_cell='abc' is not a whole number"),
    ("examples_per_cell=0", ["run={run}", "study.examples_per_cell=0"], None, "must be at least 1"),
    ("disjoint_images=maybe", ["run={run}", "study.disjoint_images=maybe"], None, "is not true or false"),
    ("device=tpu0", ["run={run}", "study.device=tpu0"], None, "is not a torch device"),
    ("name with a path", ["run={run}", "study.name=../../escape"], None, "is not a study name"),
    ("run without a checkpoint", ["run={bare}"], None, "has no checkpoint"),
    ("latest is a run without a checkpoint", ["paths.outputs={bare_outputs}"], None,
     "no finished finetune run with a checkpoint"),
    ("image folder read-only", ["run={run}"], ("fail", errno.EROFS, 0), "the file system is read-only"),
    ("image folder full", ["run={run}"], ("fail", errno.ENOSPC, 0), "the disk is full"),
    ("disk fills during the build", ["run={run}"], ("fail", errno.ENOSPC, 3), "the disk is full"),
    ("image folder below a file", ["run={run}", "study.image_dir={file}/images"], None, "not a folder"),
    ("database full", ["run={run}"], ("database_full",), "is full: free some space"),
]


@pytest.mark.parametrize("args, setup, expected", [c[1:] for c in BUILD_CASES], ids=[c[0] for c in BUILD_CASES])
def test_a_failing_build_dataset_says_one_line_and_leaves_no_trace(args, setup, expected, finished_run,
                                                                   store_with_a_study, tmp_path, monkeypatch, capsys):
    db, images = store_with_a_study, tmp_path / "images"
    (tmp_path / "afile").write_text("not a folder")
    bare = no_checkpoint_run(tmp_path / "bare")
    fill = {"run": finished_run, "bare": bare, "bare_outputs": tmp_path / "bare" / "outputs",
            "file": tmp_path / "afile"}
    before = row_counts(f"sqlite:///{db}")
    if setup and setup[0] == "fail":
        fail_writes_below(monkeypatch, images, setup[1], after=setup[2])
    elif setup:
        database_full(monkeypatch)
    overrides = {"paths.outputs": tmp_path / "outputs", "paths.cache": TEST_CACHE / "cache",
                 "study.image_dir": images, "study.examples_per_cell": 2, "study.batch_size": 2,
                 "study.image_size": 32}
    overrides.update(arg.format(**fill).split("=", 1) for arg in args)
    code, err = cli_main(monkeypatch, capsys, "build-dataset", *[f"{k}={v}" for k, v in overrides.items()],
                         "--db", f"sqlite:///{db}")
    monkeypatch.undo()
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:") and expected in err, err
    assert row_counts(f"sqlite:///{db}") == before
    assert files_under(images) == [] and not list(images.glob("*"))  # no file, no study folder


def test_a_rerun_with_a_corrected_image_dir_uses_it(finished_run, store_with_a_study, tmp_path, monkeypatch,
                                                    capsys):
    db, bad, good = store_with_a_study, tmp_path / "read_only", tmp_path / "good"
    args = ["build-dataset", f"run={finished_run}", "study.name=pilot", "study.examples_per_cell=2",
            "study.batch_size=2", "study.image_size=32", f"paths.cache={TEST_CACHE / 'cache'}", "--db",
            f"sqlite:///{db}"]
    fail_writes_below(monkeypatch, bad, errno.EROFS)
    code, err = cli_main(monkeypatch, capsys, *args, f"study.image_dir={bad}")
    monkeypatch.undo()
    assert code == 2 and "read-only" in err, err
    code, err = cli_main(monkeypatch, capsys, *args, f"study.image_dir={good}")
    assert code == 0, err
    store = Store.open(f"sqlite:///{db}")
    try:
        assert [s.name for s in store.studies()] == ["earlier", "pilot"]  # nothing from the failed try
        assert Path(store.study("pilot").image_dir) == (good / "pilot").resolve()
    finally:
        store.close()
    assert len(files_under(good / "pilot")) >= 2 * 3  # each example: an image and two maps at least
