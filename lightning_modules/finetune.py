"""Metric fine-tuning: a trainable copy of a classifier whose attribution maps improve a metric.

``harmony finetune metric=rma`` composes a config and calls :func:`run_finetune`. The
:class:`FinetuneModule` holds the frozen *original* and the fine-tuned copy; its loss is

    (1 - cos(original logits, fine-tuned logits)) / 2  +  loss_weight * metric.loss(...)

(the metric's differentiable training term; lower is better). Both nets stay in eval mode,
as in the study, so BatchNorm statistics and Dropout never drift. Every
``trainer.val_check_interval`` steps the validation subset is scored for both models
(the original's once), with their prediction agreement and accuracies;
:class:`BestAgreeingCheckpoint` keeps ``last.ckpt`` and ``best.ckpt`` = the best validation
metric among validations whose agreement is at least ``finetune.min_agreement``.

Run dir layout (``outputs/finetune/<time>/``; a sweep job's is
``outputs/finetune-multirun/<time>/<n>_<metric>_<attribution>_<backbone>/``). Rank 0 writes
everything; checkpoints, metrics.json and the PNG are replaced atomically::

    .hydra/config.yaml, hydra.yaml, overrides.yaml   the composed config and the overrides (Hydra)
    <job>.log                                        the run's log (Hydra)
    logs/version_<n>/metrics.csv                     Lightning CSV log; one version per start (resumes add one)
    checkpoints/last.ckpt                            after every validation: fine-tuned weights, optimizer, loop state
    checkpoints/best.ckpt                            best validation metric among those with agreement >= min_agreement
    metrics.json                                     the summary (:data:`METRICS_KEYS` + best_step, data, ...)
    finetune.png                                     maps of both models on validation images + validation curves

Checkpoints hold the fine-tuned net only (keys ``finetuned.*``); the original is rebuilt
from the config. :func:`lightning_modules.runs.load_finetune_run` loads a finished run.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from .errors import UserError

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
LAST_CKPT = "last.ckpt"
BEST_CKPT = "best.ckpt"
METRICS_FILE = "metrics.json"
FIGURE_FILE = "finetune.png"
LOG_DIR = "logs"
METRICS_KEYS = ("metric", "attribution", "backbone", "original_score", "finetuned_score", "agreement",
                "finetuned_accuracy", "original_accuracy", "best_checkpoint", "steps", "seconds")


# --------------------------------------------------------------------------- config checks


def check_combination(cfg) -> None:
    """Fail with one line, before any data or model is loaded, on a combination that cannot run.

    RMA (any ``needs_masks`` metric) needs a data set with segmentation masks.
    """
    from hydra.utils import get_class

    needs_masks = bool(cfg.metric.get("needs_masks", False))
    if needs_masks:
        try:
            has_masks = bool(getattr(get_class(cfg.data._target_), "has_masks", False))
        except Exception:  # an unimportable data class fails later with its own message
            return
        if not has_masks:
            raise UserError(f"metric {cfg.metric.name} needs object masks, but data {cfg.data.name} has none: "
                            f"use data=imagenet_s or data=synthetic, or another metric (focus, road, irof, ris)")
    if cfg.finetune.val_size is not None and int(cfg.finetune.val_size) < 1:
        raise UserError(f"finetune.val_size must be a positive number of images (or null: the whole val split), "
                        f"not {cfg.finetune.val_size}")
    if not 0.0 <= float(cfg.finetune.min_agreement) <= 1.0:
        raise UserError(f"finetune.min_agreement is a share of images in [0, 1], not {cfg.finetune.min_agreement}")


# --------------------------------------------------------------------------- the LightningModule


class _LogitsRecorder:
    """An attribution that remembers the logits of each ``create_graph=True`` explanation.

    A metric's training term calls the explainer on the batch; the fine-tuned logits of
    that same forward pass serve the agreement term, saving one forward pass per step.
    Behaves as the wrapped attribution (``__call__`` -> maps, ``explain`` -> Explanation).
    """

    def __init__(self, attribution):
        self.attribution = attribution
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, x: Tensor, target=None, create_graph: bool = False) -> Tensor:
        return self.explain(x, target, create_graph).maps

    def explain(self, x: Tensor, target=None, create_graph: bool = False):
        out = self.attribution.explain(x, target, create_graph)
        if create_graph:
            self.calls.append((x, out.logits))
        return out

    def logits_of(self, x: Tensor) -> Tensor | None:
        """The graph-keeping logits of exactly ``x`` (the same tensor object), if the metric explained it."""
        for inp, logits in self.calls:
            if inp is x and logits.shape[0] == x.shape[0]:
                return logits
        return None

    def __getattr__(self, name):
        if name == "attribution":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.attribution, name)


def agreement_loss(original_logits: Tensor, finetuned_logits: Tensor) -> Tensor:
    """(1 - cos(original, fine-tuned)) / 2 averaged over the batch: (B,K), (B,K) -> scalar in [0, 1]."""
    return ((1 - F.cosine_similarity(finetuned_logits, original_logits.detach(), dim=1)) / 2).mean()


class FinetuneModule(pl.LightningModule):
    """The frozen ``original`` and its trainable copy ``finetuned``.

    original: the base classifier (B,3,H,W) -> (B,K); copied, then frozen.
    metric: an object with ``score(model, x, y, explain, masks=None) -> (B,)`` and
        ``loss(model, x, y, explain, masks=None) -> scalar`` (lower is better).
    explainer_factory: ``model -> attribution`` (e.g. ``partial(GradCAM, layer="features.20")``).
    Batches are dicts with ``image`` (B,3,H,W), ``label`` (B,) and optionally ``mask`` (B,1,H,W).
    """

    def __init__(self, original: nn.Module, metric, explainer_factory: Callable[[nn.Module], object],
                 metric_name: str = "metric", higher_is_better: bool = True, loss_weight: float = 1.0,
                 lr: float = 1e-4, weight_decay: float = 0.0, keep_eval_mode: bool = True):
        super().__init__()
        self.finetuned = copy.deepcopy(original).requires_grad_(True)
        self.original = original.requires_grad_(False).eval()
        self.metric = metric
        self.explainer_factory = explainer_factory
        self.metric_name = metric_name
        self.higher_is_better = higher_is_better
        self.loss_weight = float(loss_weight)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.keep_eval_mode = keep_eval_mode
        self._explainers: dict[str, object] = {}
        # The original never changes: its validation predictions and scores are computed once.
        self._original_val: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._val_sums: Tensor | None = None
        self._fast_original: tuple[torch.device, object] | None = None
        self.train(False)

    # both nets stay in eval mode (Lightning calls .train() at fit start and after validation)
    def train(self, mode: bool = True):
        super().train(mode)
        self.original.eval()  # always: the reference the copy is held to
        if self.keep_eval_mode:
            self.finetuned.eval()
        return self

    def explainer(self, which: str):
        """The attribution of ``"original"`` or ``"finetuned"`` (built lazily, per process)."""
        if which not in self._explainers:
            self._explainers[which] = self.explainer_factory(getattr(self, which))
        return self._explainers[which]

    def __getstate__(self):  # spawned DDP workers rebuild explainers (they may hold hooks)
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_explainers"] = {}
        state["_original_val"] = {}
        state["_fast_original"] = None
        return state

    def original_logits(self, x: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,K) logits of the frozen original, without a graph.

        Runs a BatchNorm-folded, channels-last copy of the original (the metrics'
        ``FastForward``; same logits to ~1e-6), about 1.7x faster than the plain forward on CPU.
        """
        fast = self._fast_original
        if fast is None or fast[0] != x.device:
            from .metrics.base import FastForward

            fast = self._fast_original = (x.device, FastForward(self.original, batch_size=max(len(x), 1)))
        return fast[1].logits(x).clone()  # a normal tensor: inference tensors cannot enter a graph

    def forward(self, x: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,K) logits of the fine-tuned model."""
        return self.finetuned(x)

    def objective(self, batch: dict) -> dict[str, Tensor]:
        """The training loss of a batch and its two terms (``loss``, ``agreement_loss``, ``metric_loss``)."""
        x, y = batch["image"], batch["label"]
        original_logits = self.original_logits(x)
        explain = _LogitsRecorder(self.explainer("finetuned"))
        metric_loss = self.metric.loss(self.finetuned, x, y, explain, masks=batch.get("mask"))
        logits = explain.logits_of(x)
        if logits is None:
            logits = self.finetuned(x)
        similarity = agreement_loss(original_logits, logits)
        return {"loss": similarity + self.loss_weight * metric_loss, "agreement_loss": similarity,
                "metric_loss": metric_loss}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        terms = self.objective(batch)
        batch_size = len(batch["label"])
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=batch_size)
        self.log("train/agreement_loss", terms["agreement_loss"], batch_size=batch_size)
        self.log("train/metric_loss", terms["metric_loss"], batch_size=batch_size)
        return terms["loss"]

    # ---- validation: sums over the (per-rank) validation subset, reduced over ranks at the end

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(SUMS), dtype=torch.float64, device=self.device)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        sums = batch_sums(self, batch, cache=self._original_val, key=(dataloader_idx, batch_idx))
        self._val_sums += sums.to(self._val_sums)

    def on_validation_epoch_end(self) -> None:
        sums = self._val_sums.clone()
        sums[SUMS.index("processes")] = 1.0  # one per process: how many processes validated
        sums = self.trainer.strategy.reduce(sums, reduce_op="sum")
        summary = summarize(sums)
        name = self.metric_name
        # values are already reduced over ranks (sync_dist only averages equal numbers)
        log = partial(self.log, sync_dist=True)
        log(f"val/{name}", summary["finetuned_score"], prog_bar=True)
        log(f"val/{name}_original", summary["original_score"])
        log("val/agreement", summary["agreement"], prog_bar=True)
        log("val/accuracy", summary["finetuned_accuracy"])
        log("val/accuracy_original", summary["original_accuracy"])
        log("val/processes", float(sums[SUMS.index("processes")]))
        log("val/step", float(self.global_step))  # the CSV's own step column lags by one

    def configure_optimizers(self):
        return torch.optim.Adam(self.finetuned.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ---- checkpoints hold only the fine-tuned weights (the original is rebuilt from the config)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("original.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({f"original.{k}": v for k, v in self.original.state_dict().items()})


# --------------------------------------------------------------------------- scoring both models


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(1)


SUMS = ("images", "finetuned_score", "original_score", "agreement", "finetuned_correct", "original_correct",
        "processes", "finetuned_scored", "original_scored")


def batch_sums(module: FinetuneModule, batch: dict, cache: dict | None = None, key=None) -> Tensor:
    """Per-batch sums, in the order of :data:`SUMS` (float64, (9,)).

    Scores are summed over the images where they are defined (a metric returns NaN for an
    image it cannot score, e.g. RMA with an empty mask); ``*_scored`` count those images.
    The original's predictions and scores come from ``cache[key]`` when present.
    """
    x, y, masks = batch["image"], batch["label"], batch.get("mask")
    cached = cache.get(key) if cache is not None else None
    if cached is None or cached[0].shape[0] != x.shape[0]:
        original_score = module.metric.score(module.original, x, y, module.explainer("original"), masks=masks)
        cached = (module.original_logits(x).argmax(1), original_score.detach().double())
        if cache is not None:
            cache[key] = cached
    original_pred, original_score = cached
    finetuned_pred = _predict(module.finetuned, x)
    finetuned_score = module.metric.score(module.finetuned, x, y, module.explainer("finetuned"), masks=masks)
    finetuned_score = finetuned_score.detach().double()

    def total(t: Tensor) -> Tensor:
        return t.double().sum()

    return torch.stack([
        torch.tensor(float(len(y)), dtype=torch.float64, device=x.device),
        total(finetuned_score.nan_to_num(0.0) * ~finetuned_score.isnan()),
        total(original_score.nan_to_num(0.0) * ~original_score.isnan()),
        total(finetuned_pred == original_pred),
        total(finetuned_pred == y),
        total(original_pred == y),
        torch.zeros((), dtype=torch.float64, device=x.device),
        total(~finetuned_score.isnan()),
        total(~original_score.isnan()),
    ])


def summarize(sums: Tensor) -> dict[str, float]:
    """Means of :func:`batch_sums` totals (a score is NaN when no image could be scored)."""
    s = dict(zip(SUMS, (float(v) for v in sums)))
    n = max(s["images"], 1.0)

    def mean(key: str) -> float:
        count = s[key.replace("_score", "_scored")]
        return s[key] / count if count else float("nan")

    return {"finetuned_score": mean("finetuned_score"), "original_score": mean("original_score"),
            "agreement": s["agreement"] / n, "finetuned_accuracy": s["finetuned_correct"] / n,
            "original_accuracy": s["original_correct"] / n, "images": int(s["images"])}


def evaluate(module: FinetuneModule, loader) -> dict[str, float]:
    """Both models' metric, their prediction agreement and accuracies over ``loader`` (one process)."""
    device = next(module.finetuned.parameters()).device
    module.train(False)
    total = torch.zeros(len(SUMS), dtype=torch.float64, device=device)
    for batch in loader:
        if batch is None:
            continue
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        total += batch_sums(module, batch)
    return summarize(total)


# --------------------------------------------------------------------------- checkpoint callbacks


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

    Its state (best score/step/agreement, training seconds) lives in every checkpoint, so
    a resumed run keeps its best; files are written by rank 0, atomically.
    """

    def __init__(self, dirpath: str | os.PathLike, monitor: str, agreement_key: str = "val/agreement",
                 min_agreement: float = 0.95, higher_is_better: bool = True):
        self.dirpath = Path(dirpath)
        self.monitor, self.agreement_key = monitor, agreement_key
        self.min_agreement, self.higher_is_better = float(min_agreement), higher_is_better
        self.best_score: float | None = None
        self.best_step: int | None = None
        self.best_agreement: float | None = None
        self.validations = 0
        self.train_seconds = 0.0
        self._started: float | None = None

    def consider(self, score: float, agreement: float, step: int) -> bool:
        """Record a validation; True when it is the new best checkpoint (agreement floor respected)."""
        self.validations += 1
        if agreement < self.min_agreement or not is_better(score, self.best_score, self.higher_is_better):
            return False
        self.best_score, self.best_step, self.best_agreement = float(score), int(step), float(agreement)
        return True

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.monotonic()

    def _elapsed(self) -> float:
        return self.train_seconds + (time.monotonic() - self._started if self._started is not None else 0.0)

    def _save(self, trainer, name: str) -> None:
        path = self.dirpath / name
        tmp = self.dirpath / f".{name}.tmp"
        if trainer.is_global_zero:
            self.dirpath.mkdir(parents=True, exist_ok=True)
        trainer.strategy.barrier("harmony-ckpt-dir")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)  # a reader never sees half a checkpoint
        trainer.strategy.barrier("harmony-ckpt-saved")

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics or self.agreement_key not in metrics:
            return
        new_best = self.consider(float(metrics[self.monitor]), float(metrics[self.agreement_key]),
                                 trainer.global_step)
        if new_best:
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
                "validations": self.validations, "train_seconds": self._elapsed(),
                "min_agreement": self.min_agreement, "monitor": self.monitor}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score = state_dict.get("best_score")
        self.best_step = state_dict.get("best_step")
        self.best_agreement = state_dict.get("best_agreement")
        self.validations = int(state_dict.get("validations", 0))
        self.train_seconds = float(state_dict.get("train_seconds", 0.0))
        self._started = None


class ValidateAtBudgetEnd(pl.Callback):
    """Stop (and so validate) on the step that reaches ``max_steps``, so the last steps count.

    Lightning validates when a run stops early (e.g. ``max_time``) but not when it reaches
    ``max_steps`` between two ``val_check_interval`` multiples.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


# --------------------------------------------------------------------------- the whole job


def _loader(dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    from .data import collate_skip_none

    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate_skip_none, persistent_workers=num_workers > 0)


def validation_subset(datamodule, size: int | None):
    """The first ``size`` items of the val split (all of it for None): the same images every validation."""
    dataset = datamodule.split("val")
    if size is None or int(size) >= len(dataset):
        return dataset
    return Subset(dataset, range(int(size)))


def build_module(cfg, datamodule=None, original: nn.Module | None = None) -> FinetuneModule:
    """The :class:`FinetuneModule` of a composed config (the original built from it when not given)."""
    from hydra.utils import instantiate

    if original is None:
        original = instantiate(cfg.backbone, datamodule=datamodule if datamodule is not None else instantiate(cfg.data))
    explainer_factory = explainer_factory_of(cfg)
    return FinetuneModule(
        original=original, metric=instantiate(cfg.metric.metric), explainer_factory=explainer_factory,
        metric_name=cfg.metric.name, higher_is_better=bool(cfg.metric.higher_is_better),
        loss_weight=float(cfg.metric.loss_weight), lr=float(cfg.finetune.lr),
        weight_decay=float(cfg.finetune.get("weight_decay", 0.0)),
        keep_eval_mode=bool(cfg.finetune.get("keep_eval_mode", True)))


def explainer_factory_of(cfg) -> Callable[[nn.Module], object]:
    """``model -> attribution`` from ``cfg.attribution.explainer`` (a picklable partial)."""
    from hydra.utils import instantiate

    return instantiate(cfg.attribution.explainer, _partial_=True)


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


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """Validation rows of every ``logs/version_*/metrics.csv`` of a run, by step (a resumed run's later rows win)."""
    import csv

    rows: dict[int, dict[str, float]] = {}
    versions = sorted((run_dir / LOG_DIR).glob("version_*/metrics.csv"),
                      key=lambda p: int(p.parent.name.split("_")[-1]) if p.parent.name.split("_")[-1].isdigit() else 0)
    for path in versions:
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if not row.get("val/agreement"):
                    continue
                step = int(float(row.get("val/step") or row["step"]))
                rows[step] = {**{k: float(v) for k, v in row.items() if v not in ("", None)}, "step": step}
    return [rows[s] for s in sorted(rows)]


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def load_finetuned_weights(module: FinetuneModule, ckpt: str | os.PathLike) -> None:
    """Load a fine-tuning checkpoint's fine-tuned weights into ``module.finetuned``."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    module.finetuned.load_state_dict({k[len("finetuned."):]: v for k, v in state.items() if k.startswith("finetuned.")})


def run_finetune(cfg, run_dir: str | os.PathLike, resume_missing_ok: bool = False) -> dict | None:
    """Fine-tune per ``cfg`` in ``run_dir``; return the ``metrics.json`` content (None on ranks > 0).

    ``cfg.ckpt_path``: null (new run), ``last`` (resume ``run_dir``'s last.ckpt) or a checkpoint file.
    """
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    check_combination(cfg)
    run_dir = Path(run_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir, missing_ok=resume_missing_ok)
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule=datamodule)
    ft = cfg.finetune
    num_workers = int(getattr(datamodule, "num_workers", 0))
    train_loader = _loader(datamodule.split("train"), int(ft.batch_size), True, num_workers)
    val_set = validation_subset(datamodule, ft.val_size)
    val_loader = _loader(val_set, int(ft.val_batch_size), False, num_workers)

    best = BestAgreeingCheckpoint(run_dir / CHECKPOINT_DIR, monitor=f"val/{cfg.metric.name}",
                                  min_agreement=float(ft.min_agreement), higher_is_better=module.higher_is_better)
    callbacks = [best, ValidateAtBudgetEnd()]
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar(leave=True))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=CSVLogger(str(run_dir), name=LOG_DIR),
                          default_root_dir=str(run_dir), enable_checkpointing=False,
                          # attribution maps need gradients during validation
                          inference_mode=False)
    started = time.monotonic()
    with warnings.catch_warnings():
        # both intended: the nets stay in eval mode; a resumed run restarts its shuffled epoch
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        warnings.filterwarnings("ignore", message=r".*dataloader is not resumable.*")
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path)
    if not trainer.is_global_zero:
        return None
    return finish_run(cfg, run_dir, module, val_loader, wall_seconds=time.monotonic() - started)


def finish_run(cfg, run_dir: Path, module: FinetuneModule, val_loader, wall_seconds: float = 0.0) -> dict:
    """Write ``metrics.json`` (the best validation's numbers) and the PNG (with the best weights).

    The numbers come from the validation logged at the best checkpoint's step (the last
    validation when none kept the agreement floor), so nothing is scored twice; only a run
    with no logged validation is scored here.
    """
    from .plots import finetune_figure

    ckpt_dir = run_dir / CHECKPOINT_DIR
    last = ckpt_dir / LAST_CKPT
    state = torch.load(last, map_location="cpu", weights_only=False) if last.is_file() else {}
    best_state = next((v for k, v in state.get("callbacks", {}).items() if k.startswith("BestAgreeingCheckpoint")), {})
    best_path = ckpt_dir / BEST_CKPT
    best_step = best_state.get("best_step")
    if best_path.is_file():
        load_finetuned_weights(module, best_path)
        best_checkpoint = f"{CHECKPOINT_DIR}/{BEST_CKPT}"
    else:
        log.warning("no validation kept prediction agreement >= %.2f: metrics.json reports the last weights; "
                    "lower finetune.lr or metric.loss_weight", float(cfg.finetune.min_agreement))
        if last.is_file():
            load_finetuned_weights(module, last)
        best_checkpoint, best_step = None, None
    history = read_history(run_dir)
    name = str(cfg.metric.name)
    row = next((r for r in history if r["step"] == best_step), history[-1] if history else None)
    if row is not None and f"val/{name}" in row:
        summary = {"original_score": row.get(f"val/{name}_original", float("nan")),
                   "finetuned_score": row[f"val/{name}"], "agreement": row["val/agreement"],
                   "finetuned_accuracy": row["val/accuracy"], "original_accuracy": row["val/accuracy_original"]}
    else:
        summary = evaluate(module, val_loader)
    metrics = {
        "metric": name, "attribution": str(cfg.attribution.name), "backbone": str(cfg.backbone.name),
        "original_score": summary["original_score"], "finetuned_score": summary["finetuned_score"],
        "agreement": summary["agreement"], "finetuned_accuracy": summary["finetuned_accuracy"],
        "original_accuracy": summary["original_accuracy"], "best_checkpoint": best_checkpoint,
        "steps": int(state.get("global_step", 0)),
        "seconds": round(float(best_state.get("train_seconds", wall_seconds)), 2),
        "best_step": best_step, "data": str(cfg.data.name),
        "higher_is_better": bool(cfg.metric.higher_is_better), "min_agreement": float(cfg.finetune.min_agreement),
        "validation_images": len(val_loader.dataset),
        "processes": int(max((r.get("val/processes", 1) for r in history), default=1)),
    }
    _write_json(run_dir / METRICS_FILE, metrics)
    finetune_figure(module, val_loader.dataset, history, metrics, run_dir / FIGURE_FILE,
                    n_images=int(cfg.finetune.get("plot_images", 8)))
    return metrics


__all__ = ["BestAgreeingCheckpoint", "FinetuneModule", "METRICS_KEYS", "agreement_loss", "build_module",
           "check_combination", "evaluate", "explainer_factory_of", "is_better", "load_finetuned_weights",
           "read_history", "resolve_ckpt_path", "run_finetune", "validation_subset"]
