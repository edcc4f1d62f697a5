"""The fine-tuning job: ``harmony finetune`` composes a config and calls :func:`run_finetune`.

Every ``trainer.val_check_interval`` steps the validation subset is scored for both models
(the original's once), with their prediction agreement and accuracies; the checkpoint callback
keeps ``best.ckpt`` = the best validation metric among validations whose agreement is at least
``finetune.min_agreement``. The model (``conf/model``), the callbacks (``conf/callbacks``) and the
loggers (``conf/logger``) are built with ``hydra.utils.instantiate``. A run that fails before its
first checkpoint leaves no run folder behind (see :func:`rundir.discard_unfinished_run`).
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from torch import nn

from ..errors import UserError
from ..io import write_json
from ..logs import quiet_lightning
from ..plots import finetune_figure
from .callbacks import BEST_CKPT, CHECKPOINT_DIR, LAST_CKPT, BestAgreeingCheckpoint
from .checks import check_combination
from .data import FinetuneData
from .module import FinetuneModule
from .original import ORIGINAL_FILE, load_recorded_original, save_original
from .rundir import (FIGURE_FILE, METRICS_FILE, RUN_LOG, discard_unfinished_run, load_finetuned_weights,
                     resolve_ckpt_path)

log = logging.getLogger("lightning_modules.finetune")


def explainer_factory_of(cfg) -> Callable[[nn.Module], object]:
    """``model -> attribution`` from ``cfg.attribution.explainer`` (a picklable partial)."""
    return instantiate(cfg.attribution.explainer, _partial_=True)


def build_module(cfg, datamodule=None, original: nn.Module | None = None) -> FinetuneModule:
    """The :class:`FinetuneModule` of a composed config (``cfg.model``; the original built from
    ``cfg.backbone`` when not given)."""
    if original is None:
        original = instantiate(cfg.backbone, datamodule=datamodule if datamodule is not None else instantiate(cfg.data))
    return instantiate(cfg.model, original=original, explainer_factory=explainer_factory_of(cfg))


def _missing_module(exc: BaseException) -> str | None:
    """The module whose absence caused ``exc`` (searching its causes), if any."""
    while exc is not None:
        if isinstance(exc, ModuleNotFoundError):
            return exc.name or str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def build_loggers(cfg, run_dir: Path) -> list:
    """The Lightning loggers of ``cfg.logger`` (conf/logger), each saving under ``run_dir``.

    A logger whose package is an optional extra (wandb, mlflow) and is not installed is one line
    naming the extra to install.
    """
    loggers = []
    for key, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        try:  # a logger's own save_dir is a folder inside the run dir
            loggers.append(instantiate(node, save_dir=str(run_dir / str(node.get("save_dir") or ""))))
        except Exception as exc:
            if not _missing_module(exc):
                raise
            raise UserError(f"logger={key} needs the optional package {key}, which is not installed: "
                            f"pip install 'harmony[{key}]' (or use logger=csv)") from None
    return loggers


def build_callbacks(cfg) -> list[pl.Callback]:
    """The callbacks of ``cfg.callbacks`` (conf/callbacks); an entry that builds None is left out."""
    built = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    return [callback for callback in built if callback is not None]


def checkpoint_callback(callbacks: list[pl.Callback]) -> BestAgreeingCheckpoint:
    found = [c for c in callbacks if isinstance(c, BestAgreeingCheckpoint)]
    if len(found) != 1:
        raise UserError("callbacks must hold exactly one BestAgreeingCheckpoint (conf/callbacks/default.yaml's "
                        "best_checkpoint): it writes the run's checkpoints")
    return found[0]


def build_trainer(cfg, run_dir: Path, callbacks: list[pl.Callback], loggers: list) -> pl.Trainer:
    """``cfg.trainer`` with the run's callbacks and loggers; a progress bar only when one is among the callbacks."""
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(run_dir),
                       enable_checkpointing=False,
                       enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
                       inference_mode=False)  # a requirement, not a setting: validation maps need gradients


@contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """Log this package's lines to ``<run_dir>/finetune.log`` (unless Hydra's job log already does)
    and to the console (unless a handler already prints them)."""
    logger = logging.getLogger("lightning_modules")
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    target = os.path.abspath(run_dir / RUN_LOG)
    if not any(getattr(h, "baseFilename", None) == target for h in root.handlers + logger.handlers):
        handlers.append(logging.FileHandler(target, delay=True))
    if not any(type(h) is logging.StreamHandler for h in root.handlers + logger.handlers):
        handlers.append(logging.StreamHandler(sys.stdout))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        logger.addHandler(handler)
    level = logger.level
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
    try:
        yield
    finally:
        logger.setLevel(level)
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


def _is_rank_zero() -> bool:
    return getattr(rank_zero_only, "rank", 0) == 0


def run_finetune(cfg, run_dir: str | os.PathLike, resume_missing_ok: bool = False) -> dict | None:
    """Fine-tune per ``cfg`` in ``run_dir``; return the ``metrics.json`` content (None on ranks > 0).

    ``cfg.ckpt_path``: null (new run), ``last`` (resume ``run_dir``'s last.ckpt) or a checkpoint file.
    On failure, what the run wrote is removed unless it can be resumed (it has ``last.ckpt``).
    """
    run_dir = Path(run_dir)
    try:
        with run_log(run_dir), quiet_lightning():
            return _fit_and_finish(cfg, run_dir, resume_missing_ok)
    except BaseException:
        if _is_rank_zero():
            discard_unfinished_run(run_dir)
        raise


def _fit_and_finish(cfg, run_dir: Path, resume_missing_ok: bool) -> dict | None:
    check_combination(cfg)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir, missing_ok=resume_missing_ok)
    loggers = build_loggers(cfg, run_dir)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    ft = cfg.finetune
    data = FinetuneData(instantiate(cfg.data), ft.batch_size, ft.val_batch_size, ft.val_size)
    # a resumed run continues against the original it started from, never one rebuilt from the config
    original = load_recorded_original(cfg.backbone, ckpt_path) if ckpt_path else None
    module = build_module(cfg, datamodule=data.data, original=original)
    if _is_rank_zero() and not (original is not None and (run_dir / ORIGINAL_FILE).is_file()):
        save_original(run_dir, module.original)
    callbacks = build_callbacks(cfg)
    checkpoints = checkpoint_callback(callbacks)
    trainer = build_trainer(cfg, run_dir, callbacks, loggers)
    trainable = sum(p.numel() for p in module.finetuned.parameters() if p.requires_grad)
    log.info("fine-tuning a copy of %s (%.2f M trainable parameters) against the original, frozen",
             cfg.backbone.name, trainable / 1e6)
    started = time.monotonic()
    with warnings.catch_warnings():
        # all intended: the nets stay in eval mode; a resumed run restarts its shuffled epoch; a small data set
        # (a folder of 16 photos) has fewer batches per epoch than trainer.log_every_n_steps, and harmony logs by
        # step across epochs, which Lightning does whatever an epoch's length
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        warnings.filterwarnings("ignore", message=r".*dataloader is not resumable.*")
        warnings.filterwarnings("ignore", message=r"The number of training batches .* is smaller than the logging "
                                                  r"interval")
        trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return None
    _restore_spawned_state(checkpoints, run_dir)
    if not (run_dir / CHECKPOINT_DIR / LAST_CKPT).is_file():
        raise UserError(f"the run stopped at step {trainer.global_step} before its first validation, so it has no "
                        f"checkpoint: raise trainer.max_time or lower trainer.val_check_interval")
    metrics = finish_run(cfg, run_dir, module, data.val_set, checkpoints, wall_seconds=time.monotonic() - started,
                         denormalize=data.data.denormalize)
    log.info("%s", summary_table(metrics, run_dir))
    return metrics


def _restore_spawned_state(checkpoints: BestAgreeingCheckpoint, run_dir: Path) -> None:
    """Under a spawning strategy (ddp_spawn) the callback ran in the workers: take its state from
    the last checkpoint they wrote."""
    last = run_dir / CHECKPOINT_DIR / LAST_CKPT
    if checkpoints.history or not last.is_file():
        return
    states = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
    state = states.get(checkpoints.state_key)
    if state is not None:
        checkpoints.load_state_dict(state)


def finish_run(cfg, run_dir: Path, module: FinetuneModule, val_set, checkpoints: BestAgreeingCheckpoint,
               wall_seconds: float = 0.0, denormalize: Callable | None = None) -> dict:
    """Write ``metrics.json`` (the best validation's numbers) and the PNG (with the best weights; its images
    drawn with ``denormalize``, the data module's inverse of its normalization; None: ImageNet's).

    The numbers come from the checkpoint callback's record of the validation at the best
    checkpoint's step (the last validation when none kept the agreement floor), so nothing is
    scored twice.
    """
    best_path = run_dir / CHECKPOINT_DIR / BEST_CKPT
    best_step = checkpoints.best_step
    if best_path.is_file():
        load_finetuned_weights(module, best_path)
        best_checkpoint = f"{CHECKPOINT_DIR}/{BEST_CKPT}"
    else:
        log.warning("no validation kept prediction agreement >= %.2f: metrics.json reports the last weights; "
                    "lower finetune.lr or metric.loss_weight", checkpoints.min_agreement)
        load_finetuned_weights(module, run_dir / CHECKPOINT_DIR / LAST_CKPT)
        best_checkpoint, best_step = None, None
    history = checkpoints.history
    row = next((r for r in history if r["step"] == best_step), history[-1])
    metrics = _metrics(cfg, module, row, history, checkpoints, best_checkpoint, best_step, wall_seconds)
    metrics["validation_images"] = len(val_set)
    write_json(run_dir / METRICS_FILE, metrics)
    finetune_figure(module, val_set, history, metrics, run_dir / FIGURE_FILE, n_images=int(cfg.finetune.plot_images),
                    denormalize=denormalize)
    return metrics


def _metrics(cfg, module: FinetuneModule, row: dict, history: list[dict], checkpoints: BestAgreeingCheckpoint,
             best_checkpoint: str | None, best_step: int | None, wall_seconds: float) -> dict:
    """The content of metrics.json from the chosen validation ``row`` (:data:`rundir.METRICS_KEYS` first)."""
    name = module.metric_name
    return {
        "metric": name, "attribution": str(cfg.attribution.name), "backbone": str(cfg.backbone.name),
        "original_score": row.get(f"val/{name}_original", math.nan), "finetuned_score": row[f"val/{name}"],
        "agreement": row["val/agreement"], "finetuned_accuracy": row["val/accuracy"],
        "original_accuracy": row["val/accuracy_original"], "best_checkpoint": best_checkpoint,
        "steps": int(history[-1]["step"]),
        "seconds": round(float(checkpoints.elapsed() or wall_seconds), 2),
        "best_step": best_step, "data": str(cfg.data.name),
        "higher_is_better": bool(module.higher_is_better), "min_agreement": float(checkpoints.min_agreement),
        "processes": int(max((r.get("val/processes", 1) for r in history), default=1)),
        "history": history,
    }


def summary_table(metrics: dict, run_dir: Path) -> str:
    """The run's summary as a plain-text table (reads the same in a terminal and in a log file)."""
    direction = "higher" if metrics["higher_is_better"] else "lower"
    best = f"step {metrics['best_step']}" if metrics["best_step"] is not None else \
        f"none kept agreement >= {metrics['min_agreement']:g} (last weights reported)"
    rows = [
        ("", "original", "fine-tuned"),
        (f"{metrics['metric']} ({direction} is better)", f"{metrics['original_score']:.4f}",
         f"{metrics['finetuned_score']:.4f}"),
        ("accuracy", f"{metrics['original_accuracy']:.3f}", f"{metrics['finetuned_accuracy']:.3f}"),
        ("prediction agreement", "", f"{metrics['agreement']:.3f} (floor {metrics['min_agreement']:g})"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines += [f"best checkpoint: {best}, of {metrics['steps']} steps in {metrics['seconds']:.1f} s",
              f"run folder: {run_dir}"]
    title = f"finetune {metrics['metric']} / {metrics['attribution']} / {metrics['backbone']} on {metrics['data']}:"
    return "\n".join([title, *("  " + line for line in lines)])
