"""Clustered inference on label shares: the figures the verdict is made of, for two populations.

Three headline figures per cell, all from label-level means:

- the decisive rate d = (fine-tuned + original labels) / labels (is a difference perceptible?),
- the net preference delta = (fine-tuned - original labels) / labels (which way?), and
- the preference pi = fine-tuned / decisive labels (how one-sided are those who see a difference?).

Two inferences, both computed for every report:

- *these annotators* (``clustered_shares``): each example's labels are one cluster; the variance is
  the cluster-robust (sandwich) variance of a mean with the G / (G - 1) factor, exactly statsmodels'
  ``OLS(y, 1).fit(cov_type="cluster", cov_kwds={"groups": example}, use_t=True)``, with a t reference
  on G - 1 degrees of freedom. It generalizes to new examples seen by the same annotators.
- *people* (``crossed_shares``): examples and annotators are both samples; the variance and its
  Satterthwaite degrees of freedom come from ``crossed.py``. It generalizes to new annotators too.

Per figure: delta has a t interval and a two-sided t test of delta = 0 (direction). pi (a ratio of
means, linearized: Var(pi) = Var(mean of F - pi D) / d^2) has a t interval and two one-sided t tests
(TOST) of |pi - 1/2| < margin (equivalence: people who see a difference split it evenly), so a
cell with few decisive labels is not "equivalent" by its small delta alone. d has a Wilson interval
at the effective sample size labels / design effect (Korn & Graubard) with the t quantile as its
critical value; the design effect is the clustered variance over the binomial one, floored at 1.
Near 0, where the imperceptibility decision lives, a Wald interval collapses to a point; Wilson
does not. Where every label agrees (d = 0 or 1, no variance to estimate) the design effect is its
largest value, sum(n_i^2) / N, as if each example's labels were one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import stdtr, stdtrit

from .crossed import crossed_variance
from .encoding import FINETUNED, NEITHER, ORIGINAL


@dataclass
class ClusteredShares:
    """Per cell (all arrays (C,)): labels, examples and the clustered figures; NaN where undefined.

    df, decisive_df, preference_df: the t reference's degrees of freedom of delta, d and pi;
    preference*: pi, the fine-tuned share of decisive labels.
    """

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
    preference: np.ndarray
    preference_se: np.ndarray
    preference_low: np.ndarray
    preference_high: np.ndarray
    p_equivalence: np.ndarray
    df: np.ndarray
    decisive_df: np.ndarray
    preference_df: np.ndarray


# Each figure as the value of each choice (REPORT_ORDER: original, neither, fine-tuned).
DECISIVE = np.array([1.0, 0.0, 1.0])
NET = np.array([-1.0, 0.0, 1.0])


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


def t_quantile(confidence: float, df: np.ndarray) -> np.ndarray:
    """The two-sided ``confidence`` quantile of t with ``df`` (NaN df: NaN)."""
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(df > 0, stdtrit(np.where(df > 0, df, 1.0), 0.5 + confidence / 2), np.nan)


def t_sf(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Upper tail of t with ``df`` at ``t``."""
    with np.errstate(invalid="ignore"):
        return stdtr(df, -np.asarray(t, dtype=float))


def wilson_at(count: np.ndarray, nobs: np.ndarray, crit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of count / nobs with critical value ``crit`` (arrays); NaN where nobs is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = count / nobs
        c2 = crit ** 2
        center = (p + c2 / (2 * nobs)) / (1 + c2 / nobs)
        half = crit * np.sqrt(p * (1 - p) / nobs + c2 / (4 * nobs ** 2)) / (1 + c2 / nobs)
    ok = nobs > 0
    return np.where(ok, center - half, np.nan), np.where(ok, center + half, np.nan)


def decisive_figures(d, variance, df, n, largest, confidence: float):
    """d's (low, high, design effect): Wilson at labels / design effect with the t critical value."""
    with np.errstate(invalid="ignore", divide="ignore"):
        binomial = d * (1 - d) / n
        deff = np.where((binomial > 0) & np.isfinite(variance), variance / binomial, largest / n)
        deff = np.maximum(deff, 1.0)
        n_eff = n / deff
    low, high = wilson_at(d * n_eff, n_eff, t_quantile(confidence, df))
    return low, high, deff


def direction_figures(delta, variance, df, defined, confidence: float):
    """delta's (se, low, high (clipped to [-1, 1], delta's range), two-sided t p of delta = 0); a zero se gives
    p 0 (delta != 0) or 1."""
    se = np.sqrt(np.where(defined, variance, np.nan))
    half = t_quantile(confidence, df) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(se > 0, 2 * t_sf(np.abs(delta) / se, df), np.where(delta != 0, 0.0, 1.0))
    nan = np.where(defined, 1.0, np.nan)
    return se, np.clip(delta - half, -1, 1) * nan, np.clip(delta + half, -1, 1) * nan, p * nan


def equivalence_figures(pi, variance, df, defined, confidence: float, margin: float):
    """pi's (se, low, high, TOST p of |pi - 1/2| < margin); a zero se: p 0 inside the margin, else 1."""
    se = np.sqrt(np.where(defined, variance, np.nan))
    half = t_quantile(confidence, df) * se
    with np.errstate(invalid="ignore", divide="ignore"):
        below = t_sf((pi - 0.5 + margin) / se, df)      # H0: pi <= 1/2 - margin
        above = t_sf((0.5 + margin - pi) / se, df)      # H0: pi >= 1/2 + margin
        p = np.where(se > 0, np.maximum(below, above), np.where(np.abs(pi - 0.5) < margin, 0.0, 1.0))
    nan = np.where(defined, 1.0, np.nan)
    return se, np.clip(pi - half, 0, 1) * nan, np.clip(pi + half, 0, 1) * nan, p * nan


def preference_values(counts: np.ndarray, example_cell: np.ndarray, n_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """(pi (C,), values (C, 3)): pi per cell and the choice values of its linearization F - pi D."""
    fin = np.bincount(example_cell, weights=counts[:, FINETUNED], minlength=n_cells)
    dec = fin + np.bincount(example_cell, weights=counts[:, ORIGINAL], minlength=n_cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        pi = fin / dec
    safe = np.where(np.isfinite(pi), pi, 0.0)
    return pi, np.stack([-safe, np.zeros(n_cells), 1 - safe], 1)


def assemble(counts, example_cell, n_cells, confidence, margin, variances, dfs) -> ClusteredShares:
    """The figures from (d, delta, pi) with the variances of (d, delta, mean of F - pi D) and their t df (each (C,))."""
    (d, var_d), (delta, var_delta), (pi, var_u) = variances
    df_d, df, df_pi = dfs
    sizes = counts.sum(1)
    n = np.bincount(example_cell, weights=sizes, minlength=n_cells)
    groups = np.bincount(example_cell, weights=sizes > 0, minlength=n_cells)
    largest = np.bincount(example_cell, weights=sizes.astype(float) ** 2, minlength=n_cells)
    d_low, d_high, deff = decisive_figures(d, var_d, df_d, n, largest, confidence)
    decisive = np.bincount(example_cell, weights=sizes - counts[:, NEITHER], minlength=n_cells)
    defined = (decisive > 0) & np.isfinite(var_delta) & np.isfinite(df)
    se, low, high, p = direction_figures(delta, var_delta, df, defined, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_pi = var_u / d ** 2
    pi_se, pi_low, pi_high, p_tost = equivalence_figures(pi, var_pi, df_pi, defined & np.isfinite(df_pi), confidence,
                                                         margin)
    nan = np.where(defined, 1.0, np.nan)
    return ClusteredShares(n_labels=n, n_examples=groups, decisive_rate=d, decisive_low=d_low, decisive_high=d_high,
                           design_effect=deff, delta=delta * nan, delta_se=se, delta_low=low, delta_high=high,
                           p_direction=p, preference=pi * nan, preference_se=pi_se, preference_low=pi_low,
                           preference_high=pi_high, p_equivalence=p_tost, df=df * nan, decisive_df=df_d,
                           preference_df=df_pi * nan)


def clustered_shares(counts: np.ndarray, example_cell: np.ndarray, n_cells: int, confidence: float,
                     margin: float) -> ClusteredShares:
    """Every figure of every cell for *these annotators* (example-clustered, t on G - 1 df) from the (E, 3)
    per-example count table."""
    sizes = counts.sum(1)
    pi, u_values = preference_values(counts, example_cell, n_cells)
    variances = []
    for values in (np.broadcast_to(DECISIVE, (n_cells, 3)), np.broadcast_to(NET, (n_cells, 3)), u_values):
        mean, variance, groups = cluster_mean_variance(np.einsum("ek,ek->e", counts, values[example_cell]), sizes,
                                                       example_cell, n_cells)
        variances.append((mean, variance))
    variances[2] = (pi, variances[2][1])
    df = np.where(groups >= 2, groups - 1, np.nan)
    return assemble(counts, example_cell, n_cells, confidence, margin, variances, (df, df, df))


def crossed_shares(counts: np.ndarray, example_cell: np.ndarray, annotator_counts: np.ndarray,
                   annotator_cell: np.ndarray, n_cells: int, confidence: float, margin: float) -> ClusteredShares:
    """Every figure of every cell for *people* (examples and annotators sampled; ``crossed.py``).

    annotator_counts: (K, 3) labels per (cell, annotator) and choice; annotator_cell: (K,).
    Each figure has its own Satterthwaite df.
    """
    pi, u_values = preference_values(counts, example_cell, n_cells)
    results = [crossed_variance(np.broadcast_to(values, (n_cells, 3)), counts, example_cell, annotator_counts,
                                annotator_cell, n_cells) for values in (DECISIVE, NET, u_values)]
    variances = [(results[0].mean, results[0].variance), (results[1].mean, results[1].variance),
                 (pi, results[2].variance)]
    return assemble(counts, example_cell, n_cells, confidence, margin, variances, tuple(r.df for r in results))
