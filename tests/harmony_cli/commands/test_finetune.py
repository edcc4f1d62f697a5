"""Bad input to `harmony finetune`: one line `error: ...`, exit status 2, and no run folder left behind
(a failing run never leaves a folder that build-dataset could pick), but a resumable run is never removed."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tests.helpers import harmony

# (overrides, what the one line must say, why the case may not apply here (None: always applies))
CASES = [
    (["trainer.max_steps=0"], "trainer.max_steps must be a positive number", None),
    (["trainer.max_steps=-5"], "trainer.max_steps must be a positive number", None),
    (["trainer.max_steps=abc"], "trainer.max_steps must be a positive number", None),
    (["finetune.lr=abc"], "finetune.lr must be a positive number", None),
    (["finetune.lr=-1"], "finetune.lr must be a positive number", None),
    (["finetune.min_agreement=2"], "finetune.min_agreement is a share", None),
    (["finetune.batch_size=0"], "finetune.batch_size must be a positive number", None),
    (["trainer=gpu"], "use trainer=cpu",
     "a CUDA GPU is present: trainer=gpu is valid here" if torch.cuda.is_available() else None),
    # fails inside the run, after Hydra made the run folder: the folder must go again
    (["logger=wandb"], "pip install 'harmony",
     "wandb is installed: logger=wandb is valid here" if importlib.util.find_spec("wandb") else None),
    (["ckpt_path={missing}"], "does not exist", None),
]


def _leftovers(outputs: Path) -> list[Path]:
    return sorted(outputs.rglob("*")) if outputs.exists() else []


@pytest.mark.parametrize("overrides, expected, not_here", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_finetune_input_is_one_line_and_leaves_no_run(outputs_overrides, tmp_path, overrides, expected,
                                                          not_here):
    if not_here:
        pytest.skip(not_here)
    overrides = [o.replace("{missing}", str(tmp_path / "missing.ckpt")) for o in overrides]
    result = harmony("finetune", *overrides, *outputs_overrides, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr[-3000:]
    assert _leftovers(tmp_path / "outputs") == [], "a failing finetune left files behind"


def test_a_failing_resume_keeps_the_resumable_run(outputs_overrides, tmp_path):
    """A run with a checkpoint is never removed, whatever fails when it is resumed."""
    run = tmp_path / "outputs" / "finetune" / "2025-01-01_00-00-00"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = run / "checkpoints" / "last.ckpt"
    checkpoint.write_bytes(b"weights and optimizer state")
    # without ckpt_path=last the run refuses to start over a checkpoint: it fails inside the run
    result = harmony("finetune", f"hydra.run.dir={run}", *outputs_overrides, timeout=300)
    assert result.returncode == 2 and "ckpt_path=last" in result.stderr, result.stderr[-3000:]
    assert checkpoint.read_bytes() == b"weights and optimizer state"


def test_discard_unfinished_run_removes_only_what_a_run_writes(tmp_path):
    from lightning_modules.finetune.rundir import discard_unfinished_run

    parent = tmp_path / "finetune"
    failed = parent / "failed"
    for name in (".hydra/config.yaml", "finetune.log", "logs/version_0/metrics.csv", "tensorboard/version_0/ev",
                 "original.pt"):
        (failed / name).parent.mkdir(parents=True, exist_ok=True)
        (failed / name).write_text("x")
    assert discard_unfinished_run(failed) and not parent.exists()  # the emptied outputs/finetune goes too

    resumable = parent / "resumable"
    (resumable / "checkpoints").mkdir(parents=True)
    (resumable / "checkpoints" / "last.ckpt").write_text("x")
    (resumable / "finetune.log").write_text("x")
    finished = parent / "finished"
    finished.mkdir()
    (finished / "metrics.json").write_text("{}")
    foreign = parent / "foreign"
    (foreign / ".hydra").mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    assert not discard_unfinished_run(resumable) and (resumable / "finetune.log").is_file()
    assert not discard_unfinished_run(finished) and (finished / "metrics.json").is_file()
    assert not discard_unfinished_run(foreign)
    assert (foreign / "notes.txt").read_text() == "mine" and not (foreign / ".hydra").exists()
