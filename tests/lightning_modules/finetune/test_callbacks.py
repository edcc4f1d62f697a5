"""The best-checkpoint rule at its edges: a NaN or missing score, ties, the default direction, the
validation count (killing the mutants of lightning_modules/finetune/callbacks.py that survived).

Expected values are written by hand from the rule's definition: the best validation is the one whose
score is strictly better (ties keep the earlier one) among those with agreement >= the floor.
"""
from __future__ import annotations

import math

import pytest

from lightning_modules.finetune.callbacks import BestAgreeingCheckpoint, is_better


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_better_checkpoint_never_from_a_nan_or_missing_score_even_as_the_first(higher_is_better):
    assert not is_better(math.nan, None, higher_is_better)
    assert not is_better(None, None, higher_is_better)
    assert not is_better(math.nan, 0.5, higher_is_better)
    assert is_better(0.5, None, higher_is_better)  # any real score beats nothing yet


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_better_checkpoint_needs_a_strict_improvement_a_tie_keeps_the_earlier(higher_is_better):
    assert not is_better(0.5, 0.5, higher_is_better)
    assert is_better(0.6, 0.5, higher_is_better) is higher_is_better
    assert is_better(0.4, 0.5, higher_is_better) is not higher_is_better
    assert is_better(-0.1, 0.0, higher_is_better) is not higher_is_better  # across zero
    assert is_better(0.0, -0.1, higher_is_better) is higher_is_better


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_checkpoint_tie_keeps_the_first_step(tmp_path, higher_is_better):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m", higher_is_better=higher_is_better)
    assert callback.consider(0.7, 0.99, step=10)
    assert not callback.consider(0.7, 1.0, step=20)  # the same score with more agreement: still the first
    assert (callback.best_step, callback.best_score, callback.best_agreement) == (10, 0.7, 0.99)


def test_checkpoint_nan_first_validation_leaves_no_best(tmp_path):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m")
    assert not callback.consider(math.nan, 1.0, step=5)
    assert (callback.best_step, callback.best_score, callback.best_agreement) == (None, None, None)
    assert callback.consider(0.2, 0.97, step=10)
    assert (callback.best_step, callback.best_score, callback.best_agreement) == (10, 0.2, 0.97)


def test_checkpoint_direction_defaults_to_higher_is_better_without_a_module(tmp_path):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m")  # higher_is_better=None, setup() not run
    assert callback.consider(0.3, 1.0, step=1)
    assert callback.consider(0.4, 1.0, step=2)
    assert not callback.consider(0.35, 1.0, step=3)
    assert callback.best_step == 2


def test_checkpoint_agreement_floor_is_inclusive_and_just_below_is_refused(tmp_path):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m", min_agreement=0.9)
    assert not callback.consider(0.5, 0.8999, step=1)
    assert callback.consider(0.5, 0.9, step=2)
    assert callback.best_agreement == 0.9


def test_checkpoint_counts_every_validation_and_the_count_survives_a_resume(tmp_path):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m", min_agreement=0.95)
    outcomes = [callback.consider(score, agreement, step)
                for step, (score, agreement) in enumerate([(0.1, 0.99), (0.9, 0.5), (0.05, 1.0), (math.nan, 1.0)])]
    assert outcomes == [True, False, False, False]
    assert callback.validations == 4  # rejected validations count too
    state = callback.state_dict()
    assert state["validations"] == 4 and state["best_step"] == 0 and state["best_score"] == 0.1
    restored = BestAgreeingCheckpoint(tmp_path, monitor="val/m")
    restored.load_state_dict(state)
    assert restored.validations == 4
    restored.consider(0.2, 1.0, step=9)
    assert restored.validations == 5 and restored.best_step == 9


def test_checkpoint_best_values_are_plain_numbers(tmp_path):
    import numpy as np

    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m")
    assert callback.consider(np.float32(0.25), np.float32(1.0), step=np.int64(3))
    assert type(callback.best_score) is float and type(callback.best_step) is int
    assert type(callback.best_agreement) is float


def test_piped_progress_lines_come_at_most_every_few_seconds(monkeypatch, caplog):
    """ProgressLog (stdout not a terminal): steps 0.5 s apart, a line at most every 5 s."""
    import logging
    from types import SimpleNamespace

    from lightning_modules.finetune.callbacks import ProgressLog, progress

    assert isinstance(progress(enabled=True, every_seconds=5), ProgressLog)  # pytest's stdout is no terminal
    now = [0.0]
    monkeypatch.setattr("lightning_modules.finetune.callbacks.time.monotonic", lambda: now[0])
    trainer = SimpleNamespace(global_step=0, max_steps=40, is_global_zero=True, callback_metrics={})
    callback = ProgressLog(every_seconds=5)
    callback.on_train_start(trainer, None)
    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune"):
        for step in range(1, 41):
            now[0] += 0.5
            trainer.global_step = step
            callback.on_train_batch_end(trainer, None, None, None, step - 1)
    steps = [r.getMessage().split("/")[0].rsplit(" ", 1)[1] for r in caplog.records]
    assert steps == ["10", "20", "30", "40"], steps


def test_a_long_validation_logs_its_progress_too(monkeypatch, caplog):
    import logging
    from types import SimpleNamespace

    from lightning_modules.finetune.callbacks import ProgressLog

    now = [0.0]
    monkeypatch.setattr("lightning_modules.finetune.callbacks.time.monotonic", lambda: now[0])
    trainer = SimpleNamespace(global_step=20, max_steps=40, is_global_zero=True, callback_metrics={},
                              num_val_batches=[8])
    callback = ProgressLog(every_seconds=5)
    callback.on_train_start(trainer, None)
    with caplog.at_level(logging.INFO, logger="lightning_modules.finetune"):
        for batch_idx in range(8):  # 3 s per validation batch
            now[0] += 3
            callback.on_validation_batch_end(trainer, None, None, None, batch_idx)
    assert [r.getMessage() for r in caplog.records] == [
        "validating at step 20/40: batch 2/8", "validating at step 20/40: batch 4/8",
        "validating at step 20/40: batch 6/8", "validating at step 20/40: batch 8/8"]
