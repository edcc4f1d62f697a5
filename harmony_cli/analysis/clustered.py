"""Example-clustered inference on label shares: the figures the verdict is made of.

The labels of one example are correlated (same image, same pair of maps), so each example's labels
form one cluster. Both headline figures are label-level means:

- the decisive rate d = (fine-tuned + original labels) / labels, and
- the net preference delta = (fine-tuned - original labels) / labels.

Their variance is the cluster-robust (sandwich) variance of a mean, with the G / (G - 1) small-sample
factor: exactly statsmodels' ``OLS(y, 1).fit(cov_type="cluster", cov_kwds={"groups": example})``
(equivalently GEE with an independence working correlation and robust errors). Why this and not GEE
with an exchangeable correlation: it is valid for any correlation within examples, keeps the
estimand the label share the tables show (exchangeable GEE reweights examples by their number of
labels when that differs), and is closed form, so it is vectorized over all cells at once.

- delta: Wald interval and two-sided z test of delta = 0 (direction), and two one-sided tests
  (TOST) of |delta| < margin (equivalence).
- d: the Wilson interval at the effective sample size labels / design effect (Korn & Graubard),
  the design effect being the sandwich variance over the binomial one, floored at 1. Near 0, where
  the imperceptibility decision lives, a Wald interval collapses to a point; Wilson does not. Where
  every label agrees (d = 0 or 1, no variance to estimate) the design effect is its largest value,
  sum(n_i^2) / N, as if each example's labels were one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encoding import FINETUNED, NEITHER, ORIGINAL
from .significance import wilson_interval


@dataclass
class ClusteredShares:
    """Per cell (all arrays (C,)): labels, examples and the clustered figures; NaN where undefined."""

    n_labels: np.ndarray
    n_examples: np.ndarray
    decisive_rate: np.ndarray
    decisive_low: np.ndarray
    decisive_high: np.ndarray
    design_effect: np.ndarray
    delta: np.ndarray
    delta_se: np.ndarray
    delta_low: np.ndarray
    delta_high: np.ndarray
    p_direction: np.ndarray
    p_equivalence: np.ndarray


def cluster_mean_variance(totals: np.ndarray, sizes: np.ndarray, example_cell: np.ndarray, n_cells: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and cluster-robust variance of a label-level variable, per cell.

    totals: (E,) the variable summed over each example's labels; sizes: (E,) labels per example.
    Returns (mean, variance, examples), each (C,); variance NaN below two labelled examples.
    """
    n = np.bincount(example_cell, weights=sizes, minlength=n_cells)
    total = np.bincount(example_cell, weights=totals, minlength=n_cells)
    groups = np.bincount(example_cell, weights=sizes > 0, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / n
        residual = totals - mean[example_cell] * sizes
        meat = np.bincount(example_cell, weights=residual ** 2, minlength=n_cells)
        variance = np.where(groups >= 2, groups / (groups - 1) * meat / n ** 2, np.nan)
    return mean, variance, groups


def _normal_sf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(-z)


def decisive_rate_interval(counts: np.ndarray, example_cell: np.ndarray, n_cells: int, confidence: float):
    """d per cell with its design-effect Wilson interval: (d, low, high, design effect, labels, examples)."""
    sizes = counts.sum(1)
    decisive = counts[:, FINETUNED] + counts[:, ORIGINAL]
    d, variance, groups = cluster_mean_variance(decisive, sizes, example_cell, n_cells)
    n = np.bincount(example_cell, weights=sizes, minlength=n_cells)
    largest = np.bincount(example_cell, weights=sizes.astype(float) ** 2, minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        largest = largest / n
        binomial = d * (1 - d) / n
        deff = np.where((binomial > 0) & np.isfinite(variance), variance / binomial, largest)
        deff = np.maximum(deff, 1.0)
        n_eff = n / deff
    low, high = wilson_interval(d * n_eff, n_eff, confidence)
    return d, low, high, deff, n, groups


def net_preference_tests(counts: np.ndarray, example_cell: np.ndarray, n_cells: int, confidence: float,
                         margin: float) -> tuple[np.ndarray, ...]:
    """Delta per cell with its Wald interval, the direction p and the TOST p: (delta, se, low, high, p, p_tost).

    A zero standard error (every example's labels net the same) gives p = 0 for a non-zero delta
    and p = 1 for delta = 0: a p of exactly 0 is a valid result and stays in the Holm family.
    Undefined (NaN) without a decisive label or below two labelled examples.
    """
    from scipy.special import ndtri

    sizes = counts.sum(1)
    net = counts[:, FINETUNED] - counts[:, ORIGINAL]
    delta, variance, _ = cluster_mean_variance(net, sizes, example_cell, n_cells)
    decisive = np.bincount(example_cell, weights=sizes - counts[:, NEITHER], minlength=n_cells)
    defined = (decisive > 0) & np.isfinite(variance)
    se = np.sqrt(np.where(defined, variance, np.nan))
    half = ndtri(0.5 + confidence / 2) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(se > 0, 2 * _normal_sf(np.abs(delta) / se), np.where(delta != 0, 0.0, 1.0))
        below = _normal_sf((delta + margin) / se)      # H0: delta <= -margin
        above = _normal_sf((margin - delta) / se)      # H0: delta >= +margin
        p_tost = np.where(se > 0, np.maximum(below, above), np.where(np.abs(delta) < margin, 0.0, 1.0))
    nan = np.where(defined, 1.0, np.nan)
    return delta * nan, se, (delta - half) * nan, (delta + half) * nan, p * nan, p_tost * nan


def clustered_shares(counts: np.ndarray, example_cell: np.ndarray, n_cells: int, confidence: float,
                     margin: float) -> ClusteredShares:
    """Every clustered figure of every cell from the (E, 3) per-example count table."""
    d, d_low, d_high, deff, n, groups = decisive_rate_interval(counts, example_cell, n_cells, confidence)
    delta, se, low, high, p, p_tost = net_preference_tests(counts, example_cell, n_cells, confidence, margin)
    return ClusteredShares(n_labels=n, n_examples=groups, decisive_rate=d, decisive_low=d_low, decisive_high=d_high,
                           design_effect=deff, delta=delta, delta_se=se, delta_low=low, delta_high=high,
                           p_direction=p, p_equivalence=p_tost)
