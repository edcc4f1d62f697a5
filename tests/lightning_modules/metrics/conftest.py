"""Fixtures of the metric tests: Quantus 0.6, the reference implementation the metrics are compared with."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", module="quantus")


@pytest.fixture
def quantus(monkeypatch):
    """The quantus package (this test skips without it); Quantus 0.6 calls np.trapz, which NumPy 2.4
    removed: np.trapezoid is the same function."""
    module = pytest.importorskip("quantus", reason="quantus (a dev dependency) is the reference implementation")
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return module
