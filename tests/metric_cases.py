"""Shared inputs of the metric tests: synthetic images, small models, hand-made maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.data.synthetic import normalized_batch
from tests.gradient_checks import assert_gradients_match_differences


def synthetic_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n normalized synthetic test images (n,3,size,size), labels, object masks (n,1,size,size)."""
    return normalized_batch(n, size, seed)


def gray_model(classes: int = 4) -> nn.Module:
    """A small random CNN on single-channel images (where Quantus' ROAD and IROF run unpatched)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, stride=2, bias=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes, bias=False)).eval()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


class LeftTexture(nn.Module):
    """Two classes; the evidence for class 0 is the fine detail (horizontal steps) of the left half."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2]
        texture = (left[..., 1:] - left[..., :-1]).abs().mean(dim=(1, 2, 3)) * 10
        return torch.stack([texture, -texture], 1)


def half_maps(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    left = torch.zeros(n, 1, size, size)
    left[..., : size // 2] = 1
    return left + 0.01 * torch.rand(n, 1, size, size), 1 - left + 0.01 * torch.rand(n, 1, size, size)


class LeNet(nn.Module):
    """LeNet-5 as in Quantus' test fixtures: flattens with ``.view`` (fails on channels-last
    tensors) and takes 32x32 input only."""

    def __init__(self, channels: int = 3, classes: int = 8):
        super().__init__()
        self.conv_1 = nn.Conv2d(channels, 6, 5)
        self.pool_1 = nn.MaxPool2d(2, 2)
        self.relu_1 = nn.ReLU()
        self.conv_2 = nn.Conv2d(6, 16, 5)
        self.pool_2 = nn.MaxPool2d(2, 2)
        self.relu_2 = nn.ReLU()
        self.fc_1 = nn.Linear(16 * 5 * 5, 120)
        self.relu_3 = nn.ReLU()
        self.fc_2 = nn.Linear(120, 84)
        self.relu_4 = nn.ReLU()
        self.fc_3 = nn.Linear(84, classes)

    def forward(self, x):
        x = self.pool_1(self.relu_1(self.conv_1(x)))
        x = self.pool_2(self.relu_2(self.conv_2(x)))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc_3(self.relu_4(self.fc_2(self.relu_3(self.fc_1(x)))))


def plain_cnn(classes: int = 8) -> nn.Module:
    """A CNN with no BatchNorm (nothing to fold) that accepts any input size."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, classes))


def quantus_imputation(*args, **kwargs):
    """Quantus' noisy linear imputation, the reference for ROAD's (imported here: quantus is a dev extra)."""
    from quantus.functions.perturb_func import noisy_linear_imputation as reference
    return reference(*args, **kwargs)


def loss_gradient_check(metric, make_explain, masks: bool = False, entries: int = 2):
    """A metric's training loss: autograd d loss / d weights against a float64 central difference, through
    the maps of ``make_explain(model)`` on a small TinyCNN (the largest-gradient entries of three layers)."""
    from lightning_modules.backbones import TinyCNN

    torch.manual_seed(3)
    model = TinyCNN(8, width=4).double().eval()
    x, _, object_masks = synthetic_batch(2, 32)
    x = x.double()
    with torch.no_grad():
        y = model(x).argmax(1)  # the predicted class: a GradCAM map of another class is often all zero
    explain = make_explain(model)
    given = object_masks.double() if masks else None

    def loss() -> torch.Tensor:
        return metric.loss(model, x, y, explain, given)

    params = {name: model.get_parameter(name) for name in ("features.0.weight", "features.14.weight",
                                                          "classifier.weight")}
    assert_gradients_match_differences(loss, params, entries, allow_unused=True)


def finetuning_moves(original, datamodule, metric_name: str, direction: int, attribution: str = "gradcam",
                     lr: float = 1e-3, steps: int = 6, images: int = 8, floor: float = 0.9, extra=(),
                     margin: float | None = None):
    """A few steps of the real FinetuneModule on one fixed batch of the embedded default move the metric's
    mean score by more than ``margin`` (default 5% of its value) in ``direction`` (+1 up, -1 down), and the
    held-out agreement stays >= floor."""
    from harmony_cli.hydra_app import compose_config
    from lightning_modules.data import collate_skip_none
    from lightning_modules.finetune import build_module

    torch.manual_seed(0)
    cfg = compose_config([f"metric={metric_name}", f"attribution={attribution}", f"finetune.lr={lr}", *extra])
    module = build_module(cfg, original=original)
    train, val = datamodule.split("train"), datamodule.split("val")
    batch = collate_skip_none([train[i] for i in range(images)])
    x, y, masks = batch["image"], batch["label"], batch.get("mask")

    def score(which: str) -> float:
        torch.manual_seed(1)
        return float(module.metric.score(getattr(module, which), x, y, module.explainer(which), masks=masks).nanmean())

    before = score("original")
    optimizer = module.configure_optimizers()
    module.train()
    for _ in range(steps):
        loss = module.objective(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = score("finetuned")
    held = collate_skip_none([val[i] for i in range(32)])["image"]
    with torch.no_grad():
        agreement = float((module.finetuned(held).argmax(1) == module.original(held).argmax(1)).float().mean())
    margin = 0.05 * abs(before) if margin is None else margin
    assert direction * (after - before) > margin, (metric_name, before, after)
    assert agreement >= floor, agreement


def quantus_sampling(explain, x: torch.Tensor, n_samples: int, low: float, high: float, seed: int = 7):
    """For a sampling metric compared with Quantus on the same draws: the draws Quantus' batch_uniform_noise
    makes after ``np.random.seed(seed)`` (one (B, C*H*W) draw in [low, high) per sample), as
    (n_samples,B,C,H,W) perturbations, and Quantus' ``explain_func`` for ``explain``. NumPy's global generator
    is seeded again on return, so the Quantus call that follows draws the same noise."""
    np.random.seed(seed)
    draws = np.stack([np.random.uniform(low, high, size=(x.shape[0], x[0].numel())) for _ in range(n_samples)])
    np.random.seed(seed)

    def quantus_explain(model, inputs, targets, **kwargs):
        return explain(torch.from_numpy(inputs).float(), torch.from_numpy(np.asarray(targets)).long()).numpy()

    return torch.from_numpy(draws).view(n_samples, *x.shape), quantus_explain
