"""The LightningModule of metric fine-tuning: the frozen original and its trainable copy.

Built from ``conf/model/finetune.yaml`` with ``hydra.utils.instantiate`` (see
:func:`lightning_modules.finetune.job.build_module`). Its loss is

    (1 - cos(original logits, fine-tuned logits)) / 2  +  loss_weight * metric.loss(...)

(the metric's differentiable training term; lower is better). Both nets stay in eval mode,
as in the study, so BatchNorm statistics and Dropout never drift.
"""
from __future__ import annotations

import copy
from functools import partial
from typing import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones import weights_digest
from ..fast_forward import FastForward
from .folded import proven_twin
from .original import ORIGINAL_DIGEST_KEY
from .scoring import SUMS, batch_sums, summarize


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
    """(1 - cos(original, fine-tuned)) / 2 averaged over the batch: (B,K), (B,K) -> scalar in [0, 1].

    The cosine is taken per image, over the class axis.
    """
    return ((1 - F.cosine_similarity(finetuned_logits, original_logits.detach(), dim=1)) / 2).mean()


class FinetuneModule(pl.LightningModule):
    """The frozen ``original`` and its trainable copy ``finetuned``.

    original: the base classifier (B,3,H,W) -> (B,K); copied, then frozen.
    metric: a :class:`lightning_modules.metrics.Metric` (``score(model, x, y, explain, masks=None) -> (B,)``,
        ``loss(...) -> scalar``, lower is better; class attributes ``name``, ``higher_is_better``).
    explainer_factory: ``model -> attribution`` (e.g. ``partial(GradCAM, layer="features.20")``).
    metric_name: the name validation logs under (``val/<name>``); the metric's own name when None.
    higher_is_better: the direction of ``metric.score``; the metric class's when None.
    loss_weight, lr, weight_decay, keep_eval_mode, fold_batchnorm: conf/model/finetune.yaml's keys (their
        defaults live in conf/ only).
    Batches are dicts with ``image`` (B,3,H,W), ``label`` (B,) and optionally ``mask`` (B,1,H,W).
    """

    def __init__(self, original: nn.Module, metric, explainer_factory: Callable[[nn.Module], object], *,
                 loss_weight: float, lr: float, weight_decay: float, keep_eval_mode: bool, fold_batchnorm: bool,
                 metric_name: str | None = None, higher_is_better: bool | None = None):
        super().__init__()
        self.finetuned = copy.deepcopy(original).requires_grad_(True)
        self.original = original.requires_grad_(False).eval()
        self.metric = metric
        self.explainer_factory = explainer_factory
        self.metric_name = str(metric_name if metric_name is not None else getattr(metric, "name", "metric"))
        self.higher_is_better = bool(higher_is_better if higher_is_better is not None
                                     else getattr(metric, "higher_is_better", True))
        self.loss_weight = float(loss_weight)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.keep_eval_mode = keep_eval_mode
        self.fold_batchnorm = bool(fold_batchnorm)
        self._trainable: tuple[torch.device, nn.Module, object] | None = None
        self._explainers: dict[str, object] = {}
        # The original never changes: its validation predictions and scores are computed once.
        self._original_val: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self._val_sums: Tensor | None = None
        self._fast_original: tuple[torch.device, object] | None = None
        self._original_digest: str | None = None
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
        state["_trainable"] = None
        return state

    def original_logits(self, x: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,K) logits of the frozen original, without a graph.

        Runs a BatchNorm-folded, channels-last copy of the original (the metrics'
        ``FastForward``; same logits to ~1e-6), about 1.7x faster than the plain forward on CPU.
        """
        fast = self._fast_original
        if fast is None or fast[0] != x.device:
            fast = self._fast_original = (x.device, FastForward(self.original, batch_size=max(len(x), 1)))
        return fast[1].logits(x).clone()  # a normal tensor: inference tensors cannot enter a graph

    def trainable(self, x: Tensor, y: Tensor) -> tuple[nn.Module, object]:
        """(the net the training step runs, its attribution): the fine-tuned copy, or with ``fold_batchnorm``
        its BatchNorm-folded twin (same parameters; :mod:`.folded`), once proven equal on the first batch."""
        held = self._trainable
        if held is None or held[0] != x.device:
            if self.fold_batchnorm and not self.finetuned.training:
                model, explainer = proven_twin(self.finetuned, self.explainer_factory, x, y)
            else:
                model, explainer = self.finetuned, self.explainer("finetuned")
            held = self._trainable = (x.device, model, explainer)
        return held[1], held[2]

    def forward(self, x: Tensor) -> Tensor:
        """(B,3,H,W) -> (B,K) logits of the fine-tuned model."""
        return self.finetuned(x)

    def objective(self, batch: dict) -> dict[str, Tensor]:
        """The training loss of a batch and its two terms (``loss``, ``agreement_loss``, ``metric_loss``)."""
        x, y = batch["image"], batch["label"]
        model, explainer = self.trainable(x, y)
        explain = _LogitsRecorder(explainer)
        metric_loss = self.metric.loss(model, x, y, explain, masks=batch.get("mask"))
        # The agreement term reuses the forward pass the metric's explanation already made: on the
        # batch itself, else on what the metric explained (Focus' mosaics, RIS' perturbed copies),
        # which saves a graph-keeping forward pass per step. Validation still measures agreement
        # on the plain images, and the best checkpoint must keep it above the floor.
        inputs, logits = x, explain.logits_of(x)
        if logits is None and explain.calls:
            inputs, logits = explain.calls[0]
        if logits is None:
            logits = model(x)
        similarity = agreement_loss(self.original_logits(inputs), logits)
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

    # ---- checkpoints hold the fine-tuned weights and the digest of the original's
    # (the run keeps the original once, in original.pt: see .original)

    @property
    def original_digest(self) -> str:
        """The content digest of the frozen original's weights (computed once: they never change)."""
        if self._original_digest is None:
            self._original_digest = weights_digest(self.original.state_dict())
        return self._original_digest

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("original.")}
        checkpoint[ORIGINAL_DIGEST_KEY] = self.original_digest

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"].update({f"original.{k}": v for k, v in self.original.state_dict().items()})
