"""Tests and intervals from the libraries (scipy, statsmodels), vectorized where they allow.

The label-level ones (Wilson, exact binomial) treat labels as independent: they are kept as
secondary figures. The verdict uses the example-clustered statistics of ``clustered.py``.
"""
from __future__ import annotations

import gc
import math

import numpy as np
from scipy.stats import binom, binomtest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint


def wilson_interval(count, nobs, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals of ``count / nobs`` (arrays); NaN where ``nobs == 0``."""
    count = np.asarray(count, dtype=float)
    nobs = np.asarray(nobs, dtype=float)
    safe = np.where(nobs > 0, nobs, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = proportion_confint(count, safe, alpha=1 - confidence, method="wilson")
    low = np.where(nobs > 0, low, np.nan)
    high = np.where(nobs > 0, high, np.nan)
    return low, high


def binomial_p(successes: int, trials: int) -> float:
    """Two-sided exact binomial test of ``successes / trials`` against 0.5; NaN when no trials."""
    if trials <= 0:
        return math.nan
    return float(binomtest(int(successes), int(trials), 0.5, alternative="two-sided").pvalue)


def binomial_p_many(successes, trials) -> np.ndarray:
    """Vectorized :func:`binomial_p`: against 0.5 the distribution is symmetric, so the two-sided exact
    p-value (scipy's ``binomtest``) is 2 * P(X <= min(k, n - k)), capped at 1. NaN where no trials."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2 * binom.cdf(np.minimum(k, n - k), np.maximum(n, 1), 0.5))
    return np.where(n > 0, p, np.nan)


def holm(p_values) -> np.ndarray:
    """Holm-corrected p-values; NaN entries stay NaN and do not count as tests."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    defined = np.isfinite(p)
    if defined.any():
        # multipletests(method="holm") runs gc.collect(): freezing the objects that exist already
        # keeps that from walking the whole heap (0.1 s per call in a loaded process).
        gc.freeze()
        try:
            out[defined] = multipletests(p[defined], method="holm")[1]
        finally:
            gc.unfreeze()
    return out

