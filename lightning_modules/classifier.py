"""Plain supervised training of a backbone: it makes the *original* model."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn


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

    def validation_step(self, batch, batch_idx):
        acc = (self.model(batch["image"]).argmax(1) == batch["label"]).float().mean()
        self.log("val_acc", acc, prog_bar=True)

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
