"""A fine-tuning run's folder: its layout, where a run starts from (resume), cleaning up a run
that failed before it could be resumed, which earlier run ``ckpt_path=last`` continues, and loading
a finished run (for build-dataset and analysis).

Layout (``outputs/finetune/<time>/``; a sweep job's is
``outputs/finetune-multirun/<time>/<n>_<metric>_<attribution>_<backbone>/``). Rank 0 writes
everything; checkpoints, metrics.json and the PNG are replaced atomically::

    .hydra/config.yaml, hydra.yaml, overrides.yaml   the composed config and the overrides (Hydra)
    finetune.log                                     the run's log: one line per validation, the summary
    logs/...                                         the Lightning logger's files (conf/logger: csv, tensorboard, ...)
    original.pt                                      the original's weights, written before the first step
    checkpoints/last.ckpt                            after every validation: fine-tuned weights, optimizer, loop state
    checkpoints/best.ckpt                            best validation metric among those with agreement >= min_agreement
    metrics.json                                     the summary (:data:`METRICS_KEYS` + best_step, history, ...)
    finetune.png                                     maps of both models on validation images + validation curves

Checkpoints hold the fine-tuned net (keys ``finetuned.*``) and the digest of ``original.pt``, from which
a loaded run's original comes (:mod:`.original`; never rebuilt from the config)::

    run = load_finetune_run("outputs/finetune/2025-01-01_12-00-00")
    maps = run.explainer(run.finetuned)(x, y)          # (B,1,H,W)
"""
from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ..errors import UserError
from .callbacks import CHECKPOINT_DIR, LAST_CKPT
from .original import ORIGINAL_FILE, load_recorded_original

log = logging.getLogger("lightning_modules.finetune")

METRICS_FILE = "metrics.json"
FIGURE_FILE = "finetune.png"
RUN_LOG = "finetune.log"
LOG_DIR = "logs"
# what the loggers of conf/logger write inside a run dir (csv, tensorboard, mlflow, wandb)
LOGGER_DIRS = (LOG_DIR, "tensorboard", "mlruns", "wandb")
METRICS_KEYS = ("metric", "attribution", "backbone", "original_score", "finetuned_score", "agreement",
                "finetuned_accuracy", "original_accuracy", "best_checkpoint", "steps", "seconds")


class RunError(UserError):
    """A path that is not a finished finetune run; the message says what to do."""


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path, missing_ok: bool = False) -> str | None:
    """The checkpoint a run starts from: None (fresh), ``last`` (this run dir's last.ckpt) or a file."""
    last = run_dir / CHECKPOINT_DIR / LAST_CKPT
    if ckpt_path in (None, "", "null", "None"):
        if last.is_file():
            raise UserError(f"run dir {run_dir} already holds {CHECKPOINT_DIR}/{LAST_CKPT}: add ckpt_path=last "
                            f"to resume it, or leave out hydra.run.dir to start a new run")
        return None
    if str(ckpt_path) == "last":
        if last.is_file():
            return str(last)
        if missing_ok:  # a sweep job that never got to its first checkpoint starts afresh
            log.info("no %s in %s: starting afresh", LAST_CKPT, run_dir)
            return None
        raise UserError(f"no {CHECKPOINT_DIR}/{LAST_CKPT} in {run_dir} to resume: drop ckpt_path=last to start "
                        f"a new run, or set hydra.run.dir to a run that has one")
    path = Path(ckpt_path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist: give ckpt_path a .ckpt file, 'last', or null")
    return str(path)


def discard_unfinished_run(run_dir: str | os.PathLike) -> bool:
    """Remove what a failed run wrote to ``run_dir`` (and the folder itself when that empties it).

    Never touches a run that can be resumed (``checkpoints/last.ckpt``) or that finished
    (``metrics.json``), nor anything in the folder that a run does not write. True if removed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / CHECKPOINT_DIR / LAST_CKPT).is_file() or (run_dir / METRICS_FILE).exists():
        return False
    for name in (".hydra", CHECKPOINT_DIR, *LOGGER_DIRS):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (RUN_LOG, FIGURE_FILE, ORIGINAL_FILE):
        (run_dir / name).unlink(missing_ok=True)
    for folder in (run_dir, run_dir.parent):  # the run, then outputs/finetune when it was the only one
        try:
            folder.rmdir()
        except OSError:  # not empty: someone else's files stay
            break
    return not run_dir.exists()


def load_finetuned_weights(module, ckpt: str | os.PathLike) -> None:
    """Load a fine-tuning checkpoint's fine-tuned weights into ``module.finetuned``."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.finetuned.load_state_dict({k[len("finetuned."):]: v for k, v in state.items() if k.startswith("finetuned.")})


@dataclass
class FinetuneRun:
    """A finished fine-tuning run, rebuilt from its dir.

    cfg: the composed config the run used (``<run>/.hydra/config.yaml``; resolved lazily).
    run_dir: the run's folder.
    datamodule: ``instantiate(cfg.data)`` (not set up; call ``datamodule.split("test")``).
    original: the base classifier the run started from (its ``original.pt``), eval mode, frozen.
    finetuned: the fine-tuned copy with the best checkpoint's weights (the last one's when no
        validation kept the agreement floor: ``metrics["best_checkpoint"]`` is then None), eval mode, frozen.
    metric: the metric object (``score(model, x, y, explain, masks=None) -> (B,)``, ``loss(...)``,
        attributes name, family, higher_is_better, needs_masks).
    metrics: ``metrics.json`` (metric, attribution, backbone, original_score, finetuned_score, agreement,
        finetuned_accuracy, original_accuracy, best_checkpoint, steps, seconds, best_step, data, ...).
    checkpoint: the file the fine-tuned weights came from.
    """

    cfg: DictConfig
    run_dir: Path
    datamodule: Any
    original: nn.Module
    finetuned: nn.Module
    metric: Any
    metrics: dict = field(default_factory=dict)
    checkpoint: Path | None = None

    def explainer(self, model: nn.Module):
        """The run's attribution method on ``model``: ``explainer(model)(x, target) -> (B,1,H,W)``."""
        return instantiate(self.cfg.attribution.explainer, model=model)

    @property
    def cell(self) -> dict[str, str]:
        """The study cell of this run: dataset, metric, backbone, attribution."""
        return {"dataset": str(self.cfg.data.name), "metric": str(self.cfg.metric.name),
                "backbone": str(self.cfg.backbone.name), "attribution": str(self.cfg.attribution.name)}


def is_finetune_run(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a finished finetune run (config and metrics.json present)."""
    path = Path(path)
    return (path / ".hydra" / "config.yaml").is_file() and (path / METRICS_FILE).is_file()


def _finished_run_files(run_dir: Path) -> tuple[Path, dict, Path]:
    """The config file, metrics.json content and weights file of a finished run, or a one-line RunError."""
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise RunError(f"{run_dir} is not a finetune run (no .hydra/config.yaml): give a dir under "
                       f"outputs/finetune/ or outputs/finetune-multirun/<time>/<job>/")
    if not (run_dir / METRICS_FILE).is_file():
        raise RunError(f"finetune run {run_dir} did not finish (no {METRICS_FILE}): resume it with "
                       f"`harmony finetune hydra.run.dir={run_dir} ckpt_path=last`")
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    best = metrics.get("best_checkpoint")
    checkpoint = run_dir / best if best else run_dir / CHECKPOINT_DIR / LAST_CKPT
    if not checkpoint.is_file():
        raise RunError(f"finetune run {run_dir} has no {checkpoint.relative_to(run_dir)}: its checkpoints were "
                       f"removed; run `harmony finetune` again")
    return config, metrics, checkpoint


def load_finetune_run(run_dir: str | os.PathLike, overrides: list[str] | None = None) -> FinetuneRun:
    """Rebuild a finished run: its config, data module, original and fine-tuned models, metric.

    ``overrides``: dotlist values replacing the recorded config's (e.g. ``["data.root=/mnt/imagenet"]``
    when the data moved; ``backbone.weights`` has no effect: the original is the run's ``original.pt``).
    Raises :class:`RunError` (one line) for a dir that is not a finished run, and
    :class:`.original.OriginalError` for one whose original is not recorded or does not match.
    """
    run_dir = Path(run_dir)
    config, metrics, checkpoint = _finished_run_files(run_dir)
    cfg = OmegaConf.load(config)
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    original = load_recorded_original(cfg.backbone, checkpoint)  # checked before the data is set up
    datamodule = instantiate(cfg.data)
    holder = _Holder(copy.deepcopy(original))
    load_finetuned_weights(holder, checkpoint)
    finetuned = holder.finetuned.eval().requires_grad_(False)
    return FinetuneRun(cfg=cfg, run_dir=run_dir, datamodule=datamodule, original=original, finetuned=finetuned,
                       metric=instantiate(cfg.metric.metric), metrics=metrics, checkpoint=checkpoint)


class _Holder:
    """What :func:`load_finetuned_weights` loads into: an object with a ``finetuned`` module."""

    def __init__(self, finetuned: nn.Module):
        self.finetuned = finetuned


# resume: which earlier run (or sweep) a command with ``ckpt_path=last`` continues -------------------

# Override keys that may differ between a run and its resumption (a budget may be extended).
RESUME_IGNORED_KEYS = {"ckpt_path", "task", "trainer.max_steps", "trainer.max_time"}


def override_key(override: str) -> str:
    """The key of a Hydra override (``+a.b=1`` -> ``a.b``)."""
    return override.split("=", 1)[0].lstrip("+~")


def comparable(overrides: list[str]) -> list[str]:
    """The overrides that identify a run, sorted (resume matching)."""
    return sorted(o for o in overrides
                  if override_key(o) not in RESUME_IGNORED_KEYS and not override_key(o).startswith("hydra."))


def find_resumable(root: Path, overrides: list[str], multirun: bool = False) -> Path | None:
    """The newest run (or sweep) dir under ``root`` started with the same ``overrides``; a run counts
    only with a last checkpoint to continue from."""
    if not root.is_dir():
        return None
    wanted = comparable(overrides)
    for run in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        if multirun:
            spec = run / "multirun.yaml"
            if not spec.is_file():
                continue
            recorded = list(OmegaConf.load(spec).hydra.overrides.task)
        else:
            spec = run / ".hydra" / "overrides.yaml"
            if not spec.is_file() or not (run / CHECKPOINT_DIR / LAST_CKPT).is_file():
                continue
            recorded = list(OmegaConf.load(spec))
        if comparable(recorded) == wanted:
            return run
    return None
