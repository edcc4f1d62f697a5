"""Plain supervised training of a backbone: it makes the *original* model."""
from __future__ import annotations

import copy
import logging
import time

import lightning.pytorch as pl
import torch
from torch import nn

from .logs import ProgressLines, minutes


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of ``model`` with AdamW and a one-cycle schedule."""

    def __init__(self, model: nn.Module, lr: float = 3e-3, weight_decay: float = 1e-4, total_steps: int = 1000):
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.total_steps = lr, weight_decay, total_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        loss = nn.functional.cross_entropy(self.model(batch["image"]), batch["label"])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=self.total_steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


@torch.no_grad()
def accuracy(model: nn.Module, loader) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) over a loader of dict batches."""
    was_training = model.training
    model.eval()
    correct = total = 0
    for batch in loader:
        if batch is None:
            continue
        correct += (model(batch["image"]).argmax(1) == batch["label"]).sum().item()
        total += len(batch["label"])
    model.train(was_training)
    return correct / max(total, 1)


class TrainingProgress(pl.Callback):
    """A log line at most every few seconds while ``what`` trains: epoch, step, loss, time left."""

    def __init__(self, what: str, logger: logging.Logger, total_steps: int):
        self.what, self.total_steps = what, total_steps
        self.lines = ProgressLines(logger)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.lines.due():
            return
        step = trainer.global_step
        left = self.lines.elapsed() / max(step, 1) * (self.total_steps - step)
        loss = float(trainer.callback_metrics.get("train_loss", float("nan")))
        self.lines.log("training %s: epoch %d, step %d/%d, loss %.3f, %s left", self.what,
                       trainer.current_epoch + 1, step, self.total_steps, loss, minutes(left))


def seconds_per_step(model: nn.Module, batch: dict, repeats: int = 1) -> float:
    """Seconds of one training step (forward and backward) of ``model`` on ``batch``, the fastest of
    ``repeats`` after a warm-up, measured on a copy (``model`` is left as it was)."""
    trial = copy.deepcopy(model).train()
    seconds = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        nn.functional.cross_entropy(trial(batch["image"]), batch["label"]).backward()
        seconds.append(time.perf_counter() - started)
    return min(seconds[1:])
