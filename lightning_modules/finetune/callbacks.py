"""Callbacks of a fine-tuning run, built from ``conf/callbacks/`` with ``hydra.utils.instantiate``.

- :class:`BestAgreeingCheckpoint`: ``last.ckpt`` after every validation, ``best.ckpt`` = the best
  validation metric among validations whose prediction agreement is >= ``min_agreement``; it keeps
  every validation's numbers (:attr:`BestAgreeingCheckpoint.history`) for the run's summary.
- :class:`ValidateAtBudgetEnd`: the last steps of a ``max_steps`` budget are validated too.
- :class:`ValidationLog`: one log line per validation (metric of both models, agreement, accuracy).
- :func:`progress`: a rich bar on a terminal, periodic log lines (:class:`ProgressLog`) otherwise.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar

from ..logs import PROGRESS_SECONDS

log = logging.getLogger("lightning_modules.finetune")

CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"


def is_better(score: float, best: float | None, higher_is_better: bool) -> bool:
    """Whether ``score`` beats ``best`` (None: nothing yet) in the metric's direction."""
    if score is None or math.isnan(score):
        return False
    if best is None:
        return True
    return score > best if higher_is_better else score < best


class BestAgreeingCheckpoint(pl.Callback):
    """After every validation: write ``last.ckpt``, and ``best.ckpt`` when the validation metric
    is the best so far among validations whose prediction agreement is >= ``min_agreement``.

    dirpath: where checkpoints go (``<trainer.default_root_dir>/checkpoints`` when None).
    higher_is_better: the monitored metric's direction (the LightningModule's when None).
    Its state (best score/step/agreement, training seconds, the validation history) lives in
    every checkpoint, so a resumed run keeps its best; files are written by rank 0, atomically.
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, monitor: str = "val/metric",
                 agreement_key: str = "val/agreement", min_agreement: float = 0.95,
                 higher_is_better: bool | None = None):
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.monitor, self.agreement_key = monitor, agreement_key
        self.min_agreement, self.higher_is_better = float(min_agreement), higher_is_better
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.best_agreement: float | None = None
        self.validations = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, float]] = []  # one row per validation: step and the val/* values
        self._started: float | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = Path(trainer.default_root_dir) / CHECKPOINT_DIR
        if self.higher_is_better is None:
            self.higher_is_better = bool(getattr(pl_module, "higher_is_better", True))

    def consider(self, score: float, agreement: float, step: int) -> bool:
        """Record a validation; True when it is the new best checkpoint (agreement floor respected)."""
        self.validations += 1
        higher = True if self.higher_is_better is None else self.higher_is_better
        if agreement < self.min_agreement or not is_better(score, self.best_score, higher):
            return False
        self.best_score, self.best_step, self.best_agreement = float(score), int(step), float(agreement)
        return True

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds of training so far, over every start of the run (resumes add up)."""
        return self.train_seconds + (time.monotonic() - self._started if self._started is not None else 0.0)

    def _save(self, trainer, name: str) -> None:
        path = self.dirpath / name
        tmp = self.dirpath / f".{name}.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("harmony-ckpt-dir")
        trainer.save_checkpoint(tmp, weights_only=False)  # every rank calls it; rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, path)  # a reader never sees half a checkpoint
        trainer.strategy.barrier("harmony-ckpt-saved")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics or self.agreement_key not in metrics:
            return
        step = trainer.global_step
        row = {key: float(value) for key, value in metrics.items() if key.startswith("val/")}
        self.history = [r for r in self.history if r["step"] != step] + [{**row, "step": step}]
        if self.consider(row[self.monitor], row[self.agreement_key], step):
            self._save(trainer, BEST_CKPT)
        self._save(trainer, LAST_CKPT)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # Ctrl-C in a single process: keep what was trained so far (multi-process ranks may be gone)
        if isinstance(exception, KeyboardInterrupt) and trainer.world_size == 1 and trainer.global_step > 0:
            self._save(trainer, LAST_CKPT)
            log.warning("interrupted at step %d: continue with `harmony finetune <same overrides> --resume` "
                        "(or hydra.run.dir=%s ckpt_path=last)", trainer.global_step, self.dirpath.parent)

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_step": self.best_step, "best_agreement": self.best_agreement,
                "validations": self.validations, "train_seconds": self.elapsed(),
                "min_agreement": self.min_agreement, "monitor": self.monitor, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_step = state_dict.get("best_step")
        self.best_agreement = state_dict.get("best_agreement")
        self.validations = int(state_dict.get("validations", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self.history = list(state_dict.get("history", []))
        self._started = None


class ValidateAtBudgetEnd(pl.Callback):
    """Stop (and so validate) on the step that reaches ``max_steps``, so the last steps count.

    Lightning validates when a run stops early (e.g. ``max_time``) but not when it reaches
    ``max_steps`` between two ``val_check_interval`` multiples.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


def _budget(trainer) -> str:
    """``"step 20/60"`` (or ``"step 20"`` with no step budget)."""
    return f"step {trainer.global_step}/{trainer.max_steps}" if trainer.max_steps > 0 else f"step {trainer.global_step}"


class ValidationLog(pl.Callback):
    """One log line per validation: the metric of both models, the prediction agreement, accuracy.

    Goes to the run's log file (``<run dir>/finetune.log``) and to the console via logging.
    """

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        name = getattr(pl_module, "metric_name", "metric")
        values = trainer.callback_metrics
        if f"val/{name}" not in values:
            return
        direction = "higher" if getattr(pl_module, "higher_is_better", True) else "lower"
        log.info("validation at %s: %s %.4f (original %.4f, %s is better), agreement %.3f, accuracy %.3f "
                 "(original %.3f)", _budget(trainer), name, float(values[f"val/{name}"]),
                 float(values.get(f"val/{name}_original", math.nan)), direction, float(values["val/agreement"]),
                 float(values.get("val/accuracy", math.nan)), float(values.get("val/accuracy_original", math.nan)))


class ProgressLog(pl.Callback):
    """Progress as periodic log lines (for logs and pipes): step, loss, seconds per step, time left;
    one at most every ``every_seconds``."""

    def __init__(self, every_seconds: float = PROGRESS_SECONDS):
        self.every_seconds = float(every_seconds)
        self._started: tuple[float, int] | None = None
        self._last = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = (time.monotonic(), trainer.global_step)
        self._last = self._started[0]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or self._started is None or time.monotonic() - self._last < self.every_seconds:
            return
        self._last = time.monotonic()
        seconds = (time.monotonic() - self._started[0]) / max(step - self._started[1], 1)
        left = f", about {seconds * (trainer.max_steps - step):.0f} s left" if trainer.max_steps > 0 else ""
        loss = trainer.callback_metrics.get("train/loss")
        loss_text = f"loss {float(loss):.4f}, " if loss is not None else ""
        log.info("training at %s: %s%.2f s/step%s", _budget(trainer), loss_text, seconds, left)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        """A long validation (maps and metric of both models) says how far it is too."""
        if not trainer.is_global_zero or self._started is None or time.monotonic() - self._last < self.every_seconds:
            return
        self._last = time.monotonic()
        batches = trainer.num_val_batches[dataloader_idx] if trainer.num_val_batches else 0
        log.info("validating at %s: batch %d/%d", _budget(trainer), batch_idx + 1, batches)


class StepProgressBar(RichProgressBar):
    """Lightning's rich bar, titled by the step budget (not ``Epoch 0/-2`` under a step budget)."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_steps > 0:
            return f"fine-tuning, epoch {current_epoch}, {trainer.max_steps} steps in all"
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return f"fine-tuning, epoch {current_epoch}/{trainer.max_epochs - 1}"
        return f"fine-tuning, epoch {current_epoch}"


def progress(enabled: bool = True, every_seconds: float = PROGRESS_SECONDS) -> pl.Callback | None:
    """The progress display: a rich bar when stdout is a terminal, a log line at most every
    ``every_seconds`` otherwise (a pipe or a file), nothing when not ``enabled``."""
    if not enabled:
        return None
    if sys.stdout.isatty():
        return StepProgressBar(leave=True)
    return ProgressLog(every_seconds)
