"""JSON-ready values: no NaN or infinity leaves the analysis (undefined is None)."""
from __future__ import annotations

import math

import numpy as np

from ..cells import REPORT_ORDER
from .significance import wilson_interval


def finite(value) -> float | None:
    """``value`` as a float, None when it is None, NaN or infinite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def pair(low, high) -> list | None:
    """[low, high] as finite floats, None when undefined."""
    low, high = finite(low), finite(high)
    return None if low is None or high is None else [low, high]


def shares_with_intervals(counts: np.ndarray, confidence: float) -> tuple[dict, dict]:
    """Label shares of each choice and their label-level Wilson intervals (None without labels)."""
    total = counts.sum()
    low, high = wilson_interval(counts, np.full(3, total), confidence)
    shares = {c: finite(counts[i] / total) if total else None for i, c in enumerate(REPORT_ORDER)}
    intervals = {c: pair(low[i], high[i]) if total else None for i, c in enumerate(REPORT_ORDER)}
    return shares, intervals
