"""Autograd against float64 central differences: the check every second-order gradient test makes."""
from __future__ import annotations

from typing import Callable

import pytest
import torch


def assert_gradients_match_differences(loss: Callable[[], torch.Tensor], params: dict[str, torch.Tensor],
                                       entries: int = 2, step: float = 1e-7, abs_tolerance: float = 1e-9,
                                       allow_unused: bool = False) -> None:
    """d loss() / d each of ``params`` by autograd equals a float64 central difference of ``step`` (within
    1e-4 relative), on each parameter's ``entries`` largest-gradient entries; some checked gradient is not zero.

    ``allow_unused``: a parameter the loss does not reach is skipped (else autograd refuses it).
    """
    grads = torch.autograd.grad(loss(), list(params.values()), allow_unused=allow_unused)
    checked = 0
    for (name, param), grad in zip(params.items(), grads):
        if grad is None:
            continue
        for flat in grad.abs().flatten().argsort(descending=True)[:entries].tolist():
            index = tuple(torch.unravel_index(torch.tensor(flat), grad.shape))
            with torch.no_grad():
                original = param[index].item()
                param[index] = original + step
                plus = loss().item()
                param[index] = original - step
                minus = loss().item()
                param[index] = original
            numeric = (plus - minus) / (2 * step)
            assert grad[index].item() == pytest.approx(numeric, rel=1e-4, abs=abs_tolerance), f"{name}{list(index)}"
            checked += grad[index].item() != 0
    assert checked, "every checked gradient is zero: the loss is not connected to the weights"
