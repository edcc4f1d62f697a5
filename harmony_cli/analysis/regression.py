"""Does the metric gain predict the choice? A logistic regression with example-clustered errors."""
from __future__ import annotations

import math
import warnings

import numpy as np
import statsmodels.api as sm
from scipy.special import ndtr
from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

from .clustered import t_quantile


def clustered_covariance(exog: np.ndarray, successes: np.ndarray, trials: np.ndarray, prob: np.ndarray
                         ) -> np.ndarray:
    """Example-clustered sandwich covariance of a logistic fit on per-example counts.

    exog: (E, K) one row per example; successes, trials: (E,); prob: (E,) fitted probabilities.
    Each example is one cluster: its score is x_i (successes_i - trials_i p_i). The factor
    G / (G - 1) * (N - 1) / (N - K) over G examples and N labels is statsmodels' default
    small-sample correction for ``cov_type="cluster"`` on the label-level Logit.
    """
    weights = trials * prob * (1 - prob)
    bread = np.linalg.inv(exog.T @ (exog * weights[:, None]))
    scores = exog * (successes - trials * prob)[:, None]
    groups, n_labels, k = len(exog), trials.sum(), exog.shape[1]
    factor = groups / (groups - 1) * (n_labels - 1) / (n_labels - k) if groups > 1 and n_labels > k else np.nan
    return factor * bread @ (scores.T @ scores) @ bread


def _undefined_reason(gain: np.ndarray, fin: np.ndarray, orig: np.ndarray) -> str | None:
    """Why the regression cannot be fitted on these examples, or None."""
    if (fin + orig).sum() == 0:
        return "no decisive label on an example with both scores"
    if fin.sum() == 0 or orig.sum() == 0:
        return f"every decisive label is {'original' if fin.sum() == 0 else 'finetuned'!r}"
    if len(gain) < 3:
        return f"{len(gain)} example(s) with decisive labels and scores (clustered errors need at least 3)"
    if np.ptp(gain) <= 1e-9 * max(1.0, float(np.abs(gain).max())):  # equal up to rounding
        return "every example has the same metric gain"
    return None


def gain_regression(gain: np.ndarray, finetuned: np.ndarray, original: np.ndarray) -> dict:
    """Does the metric gain predict the choice? Logistic regression of finetuned-vs-original on the gain.

    gain: (E,) metric improvement of the fine-tuned over the original map per example (positive:
    the metric prefers the fine-tuned map); finetuned, original: (E,) decisive label counts.
    Every decisive label is one Bernoulli observation with its example's gain; the fit runs on the
    per-example counts (a binomial GLM with the logit link has the same likelihood as the
    label-level Logit, and its cost does not grow with annotators). The standard error is
    cluster-robust by example (:func:`clustered_covariance`): the labels of one example share its
    gain and its image, so they are not independent observations.
    Returns {n_labels, n_examples, intercept, coefficient, std_error, p_value, std_error_independent,
    odds_ratio_per_sd, notes}.
    """
    keep = np.isfinite(gain) & ((finetuned + original) > 0)
    gain, fin, orig = gain[keep], finetuned[keep].astype(float), original[keep].astype(float)
    n = fin + orig
    out = {"n_labels": int(n.sum()), "n_examples": int(keep.sum()), "intercept": None, "coefficient": None,
           "std_error": None, "p_value": None, "std_error_independent": None, "odds_ratio_per_sd": None, "notes": []}
    reason = _undefined_reason(gain, fin, orig)
    if reason is not None:
        out["notes"].append(f"gain regression undefined: {reason}")
        return out
    exog = sm.add_constant(gain, has_constant="add")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = sm.GLM(np.column_stack([fin, orig]), exog, family=sm.families.Binomial()).fit()
    except (PerfectSeparationError, PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError) as exc:
        out["notes"].append(f"gain regression undefined: the fit does not converge ({type(exc).__name__}: the "
                            f"gain separates the choices perfectly)")
        return out
    intercept, coefficient = (float(v) for v in fit.params)
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = float(clustered_covariance(exog, fin, n, fit.predict(exog))[1, 1])
    except np.linalg.LinAlgError:
        variance = math.nan
    std_error = math.sqrt(variance) if math.isfinite(variance) and variance >= 0 else math.nan
    p_value = float(2 * ndtr(-abs(coefficient) / std_error)) if std_error > 0 else math.nan
    if not all(math.isfinite(v) for v in (intercept, coefficient, std_error, p_value)):
        out["notes"].append("gain regression undefined: the fit gave no finite estimate")
        return out
    # Spread of the gain over the decisive labels: an effect size comparable across metrics.
    mean = np.average(gain, weights=n)
    sd = math.sqrt(np.average((gain - mean) ** 2, weights=n))
    with np.errstate(over="ignore"):
        odds_ratio = float(np.exp(coefficient * sd)) if sd > 0 else None
    if odds_ratio is not None and not math.isfinite(odds_ratio):
        # a nearly separating gain: the slope is finite, its odds ratio per SD is not (JSON has no inf)
        out["notes"].append("odds ratio per SD of gain too large to report (the gain nearly separates the choices)")
        odds_ratio = None
    out.update(intercept=intercept, coefficient=coefficient, std_error=std_error, p_value=p_value,
               std_error_independent=float(fit.bse[1]), odds_ratio_per_sd=odds_ratio)
    return out


def gain_bins(gain: np.ndarray, finetuned: np.ndarray, original: np.ndarray, n_bins: int = 5) -> list[dict]:
    """The human choice by metric gain, for the figure: examples in ``n_bins`` quantile bins of the gain.

    Per bin: mean gain, examples, decisive labels, the share of them that chose the fine-tuned map and
    its 95% interval clustered by example (the ratio's linearization fin - share * decisive, G / (G - 1),
    t on G - 1 df; None below two examples), clipped to [0, 1].
    """
    decisive = finetuned + original
    keep = np.isfinite(gain) & (decisive > 0)
    if keep.sum() < 2:
        return []
    gain, fin, dec = gain[keep], finetuned[keep], decisive[keep]
    edges = np.unique(np.quantile(gain, np.linspace(0, 1, n_bins + 1)))
    which = np.clip(np.searchsorted(edges, gain, side="right") - 1, 0, max(len(edges) - 2, 0))
    bins = []
    for b in np.unique(which):
        inside = which == b
        share, g = fin[inside].sum() / dec[inside].sum(), int(inside.sum())
        interval = None
        if g >= 2:
            residual = fin[inside] - share * dec[inside]
            half = float(t_quantile(0.95, g - 1)) * np.sqrt(g / (g - 1) * (residual ** 2).sum()) / dec[inside].sum()
            interval = [float(max(share - half, 0.0)), float(min(share + half, 1.0))]
        bins.append({"mean_gain": float(gain[inside].mean()), "n_examples": g, "n_decisive": int(dec[inside].sum()),
                     "finetuned_share": float(share), "interval": interval})
    return bins
