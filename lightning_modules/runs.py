"""Loading a finished ``harmony finetune`` run (for build-dataset and analysis).

    run = load_finetune_run("outputs/finetune/2025-01-01_12-00-00")
    maps = run.explainer(run.finetuned)(x, y)          # (B,1,H,W)
    scores = run.metric.score(run.finetuned, x, y, run.explainer(run.finetuned), masks=m)   # (B,)

A run dir holds ``.hydra/config.yaml`` (the composed config), ``metrics.json`` and
``checkpoints/{best,last}.ckpt`` (see :mod:`lightning_modules.finetune`).
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from .errors import UserError
from .finetune import BEST_CKPT, CHECKPOINT_DIR, LAST_CKPT, METRICS_FILE, load_finetuned_weights


class RunError(UserError):
    """A path that is not a finished finetune run; the message says what to do."""


@dataclass
class FinetuneRun:
    """A finished fine-tuning run, rebuilt from its dir.

    cfg: the composed config the run used (``<run>/.hydra/config.yaml``; resolved lazily).
    run_dir: the run's folder.
    datamodule: ``instantiate(cfg.data)`` (not set up; call ``datamodule.split("test")``).
    original: the base classifier, eval mode, frozen.
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
        from hydra.utils import instantiate

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


def find_runs(path: str | os.PathLike) -> list[Path]:
    """The finished runs at ``path``: itself, or the job dirs of a multirun sweep, sorted."""
    path = Path(path)
    if is_finetune_run(path):
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if p.is_dir() and is_finetune_run(p))


def load_finetune_run(run_dir: str | os.PathLike, overrides: list[str] | None = None) -> FinetuneRun:
    """Rebuild a finished run: its config, data module, original and fine-tuned models, metric.

    ``overrides``: dotlist values replacing the recorded config's (e.g. ``["data.root=/mnt/imagenet"]``
    when the data moved). Raises :class:`RunError` (one line) for a dir that is not a finished run.
    """
    from hydra.utils import instantiate

    run_dir = Path(run_dir)
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise RunError(f"{run_dir} is not a finetune run (no .hydra/config.yaml): give a dir under "
                       f"outputs/finetune/ or outputs/finetune-multirun/<time>/<job>/")
    if not (run_dir / METRICS_FILE).is_file():
        raise RunError(f"finetune run {run_dir} did not finish (no {METRICS_FILE}): resume it with "
                       f"`harmony finetune hydra.run.dir={run_dir} ckpt_path=last`")
    cfg = OmegaConf.load(config)
    if overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    best = metrics.get("best_checkpoint")
    checkpoint = run_dir / best if best else run_dir / CHECKPOINT_DIR / LAST_CKPT
    if not checkpoint.is_file():
        raise RunError(f"finetune run {run_dir} has no {checkpoint.relative_to(run_dir)}: its checkpoints were "
                       f"removed; run `harmony finetune` again")

    datamodule = instantiate(cfg.data)
    original = instantiate(cfg.backbone, datamodule=datamodule).eval().requires_grad_(False)
    holder = _Holder(copy.deepcopy(original))
    load_finetuned_weights(holder, checkpoint)
    finetuned = holder.finetuned.eval().requires_grad_(False)
    return FinetuneRun(cfg=cfg, run_dir=run_dir, datamodule=datamodule, original=original, finetuned=finetuned,
                       metric=instantiate(cfg.metric.metric), metrics=metrics, checkpoint=checkpoint)


class _Holder:
    """What :func:`load_finetuned_weights` loads into: an object with a ``finetuned`` module."""

    def __init__(self, finetuned: nn.Module):
        self.finetuned = finetuned


__all__ = ["BEST_CKPT", "FinetuneRun", "RunError", "find_runs", "is_finetune_run", "load_finetune_run"]
