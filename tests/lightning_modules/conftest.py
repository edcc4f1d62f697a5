"""Fixtures shared by the tests of lightning_modules' packages."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.backbones import TinyCNN


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyCNN(num_classes=8).eval()
