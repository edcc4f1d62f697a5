"""Crossed inference: examples *and* annotators are samples, so a figure generalizes to people.

A label-level mean (the decisive rate d, the net preference delta) estimated from A annotators who
label G examples varies with both samples. Its variance under the crossed random-effects model

    y_ij = mu + a_i + b_j + e_ij    (annotator i, example j; a, b, e independent, variances sa, sb, se)

is ``Var(mean) = (sa * sum_i N_i^2 + sb * sum_j N_j^2 + se * N) / N^2`` (N_i labels of annotator i,
N_j of example j, N in all; e_ij holds the annotator-by-example interaction). The components come
from Henderson's method 1 (method of moments on the between-annotator, between-example and total
sums of squares), which handles unbalanced designs (annotators seeing different examples, as
assignments make) in closed form, and for a balanced design is the two-way ANOVA estimator:
``Var(mean) = (MS_annotator + MS_example - MS_residual) / (A G)``, unbiased. The t reference has
Satterthwaite's degrees of freedom for that linear combination of sums of squares (df A - 1,
G - 1 and N - A - G + 1), capped at min(A, G) - 1: the df rise when the annotator mean square
comes out small by chance, which with few annotators would reject more often than alpha (with A = 5
and a large annotator variance, 6.9% at alpha 5% uncapped). So with five annotators whose preferences
differ the interval is honestly wide; with annotators who agree it is a little wider than the
example-clustered one (t on at most A - 1 df): nothing tells it that they agree.

Why this and not REML (statsmodels MixedLM with variance components) or a two-way bootstrap: it is
closed form from sums per example and per annotator, so it runs on every cell at once (3,000,000
labels in a fraction of a second), is unbiased without normality, and its degrees of freedom are
explicit. Why not Cameron-Gelbach-Miller two-way clustering: with few annotators its intersection
term removes the main effects' variance once more, biasing the variance down by (sa + sb) / N.

The estimate is floored at the variance of a mean of independent labels (SS_total / (N (N - 1))):
a crossed design never claims more precision than independent labels would give. Undefined (NaN)
below two annotators or two examples in a cell: nothing can be said about people from one person.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CrossedVariance:
    """Per cell (C,): the mean, its crossed variance and Satterthwaite df, the design's sizes and the
    variance components (C, 3): annotator, example, residual (method of moments, may be negative)."""

    mean: np.ndarray
    variance: np.ndarray
    df: np.ndarray
    n_annotators: np.ndarray
    n_examples: np.ndarray
    components: np.ndarray


def _sums(values: np.ndarray, counts: np.ndarray, group_cell: np.ndarray, n_cells: int):
    """Per cell: sum over groups of (group total)^2 / group size, sum of group size^2, number of groups."""
    size = counts.sum(1).astype(float)
    total = np.einsum("gk,gk->g", counts, values[group_cell])
    return (np.bincount(group_cell, weights=total ** 2 / size, minlength=n_cells),
            np.bincount(group_cell, weights=size ** 2, minlength=n_cells), np.bincount(group_cell, minlength=n_cells))


def crossed_variance(values: np.ndarray, example_counts: np.ndarray, example_cell: np.ndarray,
                     annotator_counts: np.ndarray, annotator_cell: np.ndarray, n_cells: int) -> CrossedVariance:
    """The label-level mean of a choice-valued variable and its crossed variance, per cell.

    values: (C, 3) the variable's value for each choice (REPORT_ORDER) in each cell, e.g. (-1, 0, 1)
    for the net preference. example_counts: (E, 3) labels per example and choice, example_cell: (E,).
    annotator_counts: (K, 3) labels per (cell, annotator) and choice, annotator_cell: (K,). Every row
    has a label; each annotator labels an example at most once.
    """
    values = np.asarray(values, dtype=float)
    cell_counts = np.stack([np.bincount(example_cell, weights=example_counts[:, k], minlength=n_cells)
                            for k in range(3)], 1)
    n = cell_counts.sum(1)
    total = (cell_counts * values).sum(1)
    squares = (cell_counts * values ** 2).sum(1)
    t_annotator, k_annotator, n_annotators = _sums(values, annotator_counts, annotator_cell, n_cells)
    t_example, k_example, n_examples = _sums(values, example_counts, example_cell, n_cells)
    defined = (n_annotators >= 2) & (n_examples >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean, t_mean = total / n, total ** 2 / n
        ka, kb = k_annotator / n, k_example / n
        # Rows: E[Q_annotator], E[Q_example], E[SS_total] as multiples of (sa, sb, se) (Henderson's method 1).
        moments = np.stack([np.stack([n - ka, n_annotators - kb, n_annotators - 1], 1),
                            np.stack([n_examples - ka, n - kb, n_examples - 1], 1),
                            np.stack([n - ka, n - kb, n - 1], 1)], 1)
        q = np.stack([t_annotator - t_mean, t_example - t_mean, squares - t_mean], 1)
        weights = np.stack([k_annotator, k_example, n], 1) / n[:, None] ** 2
        inverse = np.linalg.pinv(np.where(defined[:, None, None], moments, np.eye(3)))    # (C, 3, 3)
        components = np.einsum("cij,cj->ci", inverse, q)
        h = np.einsum("cji,cj->ci", inverse, weights)                                   # variance = h . q
        raw = (h * q).sum(1)
        # On (Q_annotator, Q_example, SS_residual = SS_total - both): the pieces and their df.
        pieces = np.stack([(h[:, 0] + h[:, 2]) * q[:, 0], (h[:, 1] + h[:, 2]) * q[:, 1],
                           h[:, 2] * (q[:, 2] - q[:, 0] - q[:, 1])], 1)
        dfs = np.stack([n_annotators - 1, n_examples - 1, n - n_annotators - n_examples + 1], 1)
        satterthwaite = raw ** 2 / (pieces ** 2 / np.maximum(dfs, 1)).sum(1)
        floor = (squares - t_mean) / (n * (n - 1))
    # Never more df than the fewer of annotators and examples give: a Satterthwaite df that rises because the
    # annotator mean square came out small by chance rejects too often with few annotators.
    cap = np.minimum(n_annotators, n_examples) - 1
    kept = (raw > floor) & np.isfinite(satterthwaite)
    return CrossedVariance(mean=mean, variance=np.where(defined, np.maximum(raw, floor), np.nan),
                           df=np.where(defined, np.where(kept, np.minimum(satterthwaite, cap), cap), np.nan),
                           n_annotators=n_annotators, n_examples=n_examples,
                           components=np.where(defined[:, None], components, np.nan))
