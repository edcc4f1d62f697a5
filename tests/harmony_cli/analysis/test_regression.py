"""The gain regression (harmony_cli/analysis/regression.py) called directly at its edges: which examples
enter, why it is undefined, the effect size per SD of gain, and the gain bins, against statsmodels on
the label-level data and hand counts."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from harmony_cli.analysis.regression import clustered_covariance, gain_bins, gain_regression

GAIN = np.array([-0.2, -0.1, 0.0, 0.05, 0.1, 0.2, 0.3, np.nan, 0.4])
FIN = np.array([1, 2, 2, 3, 2, 4, 3, 5, 0])
ORIG = np.array([3, 2, 3, 1, 2, 1, 1, 0, 0])  # the NaN-gain example and the undecided last one drop out


def label_level(gain, fin, orig):
    keep = np.isfinite(gain) & (fin + orig > 0)
    x = np.concatenate([np.repeat(gain[keep], fin[keep]), np.repeat(gain[keep], orig[keep])])
    y = np.concatenate([np.ones(fin[keep].sum()), np.zeros(orig[keep].sum())])
    groups = np.concatenate([np.repeat(np.flatnonzero(keep), fin[keep]), np.repeat(np.flatnonzero(keep), orig[keep])])
    return x, y, groups


def test_regression_against_the_label_level_logit_and_its_effect_size():
    import statsmodels.api as sm

    reg = gain_regression(GAIN, FIN, ORIG)
    x, y, groups = label_level(GAIN, FIN, ORIG)
    exog = sm.add_constant(x)
    clustered = sm.Logit(y, exog).fit(disp=0, cov_type="cluster", cov_kwds={"groups": groups})
    naive = sm.Logit(y, exog).fit(disp=0)
    assert (reg["n_labels"], reg["n_examples"]) == (len(y), 7)
    assert reg["intercept"] == pytest.approx(clustered.params[0], rel=1e-5)
    assert reg["coefficient"] == pytest.approx(clustered.params[1], rel=1e-5)
    assert reg["std_error"] == pytest.approx(clustered.bse[1], rel=1e-4)
    assert reg["p_value"] == pytest.approx(2 * norm.sf(abs(clustered.params[1]) / clustered.bse[1]), rel=1e-3)
    assert reg["std_error_independent"] == pytest.approx(naive.bse[1], rel=1e-4)
    assert reg["odds_ratio_per_sd"] == pytest.approx(math.exp(clustered.params[1] * np.std(x)), rel=1e-4)
    assert reg["notes"] == []


def test_regression_covariance_needs_two_examples_and_more_labels_than_parameters():
    one = clustered_covariance(np.ones((1, 1)), np.array([1.0]), np.array([3.0]), np.array([0.5]))
    assert np.isnan(one).all()  # one example: G / (G - 1) undefined
    exog = np.column_stack([np.ones(2), [0.0, 1.0]])
    # two examples, two labels, two parameters: N - K = 0
    assert np.isnan(clustered_covariance(exog, np.array([1.0, 0.0]), np.array([1.0, 1.0]),
                                         np.array([0.6, 0.4]))).all()
    finite = clustered_covariance(exog, np.array([1.0, 1.0]), np.array([2.0, 1.0]), np.array([0.6, 0.4]))
    assert np.isfinite(finite).all()


def test_regression_undefined_cases_say_why():
    def notes(gain, fin, orig):
        reg = gain_regression(np.array(gain, float), np.array(fin), np.array(orig))
        assert reg["coefficient"] is None and reg["p_value"] is None
        return reg["notes"]

    assert notes([0.1, 0.2, 0.3], [0, 0, 0], [0, 0, 0]) == [
        "gain regression undefined: no decisive label on an example with both scores"]
    assert notes([0.1, 0.2, 0.3], [0, 0, 0], [1, 2, 1]) == ["gain regression undefined: every decisive label is 'original'"]
    assert notes([0.1, 0.2, 0.3], [1, 2, 1], [0, 0, 0]) == [
        "gain regression undefined: every decisive label is 'finetuned'"]
    assert notes([0.1, 0.2, np.nan], [1, 2, 1], [1, 0, 1]) == [
        "gain regression undefined: 2 example(s) with decisive labels and scores (clustered errors need at least 3)"]
    assert notes([0.1, 0.1, 0.1], [1, 2, 1], [1, 1, 2]) == [
        "gain regression undefined: every example has the same metric gain"]
    big = [1e6, 1e6 + 1e-4, 1e6]  # equal up to rounding at this scale
    assert notes(big, [1, 2, 1], [1, 1, 2]) == ["gain regression undefined: every example has the same metric gain"]
    # "equal up to rounding": a spread of at most 1e-9 (of the gains' scale when above 1), inclusive
    assert notes([0.0, 1e-9, 0.0], [1, 2, 1], [1, 1, 2]) == ["gain regression undefined: every example has the same metric gain"]
    assert notes([0.0, 1e-10, 0.0], [1, 2, 1], [1, 1, 2]) == ["gain regression undefined: every example has the same metric gain"]
    spread = gain_regression(np.array([0.0, 1.5e-9, 0.0]), np.array([1, 2, 1]), np.array([1, 1, 2]))["notes"]
    assert not any("same metric gain" in note for note in spread)  # 1.5e-9 > 1e-9 for gains below 1
    # a perfectly fitting logistic curve: statsmodels warns of perfect separation
    assert notes([0.0, 0.5, 1.0], [1, 2, 3], [3, 2, 1]) == [
        "gain regression undefined: the fit does not converge (PerfectSeparationWarning: the gain separates the "
        "choices perfectly)"]
    reg = gain_regression(np.array([0.0, 0.5, 1.0]), np.array([1, 3, 3]), np.array([3, 2, 2]))
    assert reg["coefficient"] is not None and reg["n_examples"] == 3


@pytest.mark.parametrize("variance", [-1e-18, 0.0, np.inf, np.nan, "singular"])
def test_regression_without_a_usable_clustered_variance_reports_no_estimate(monkeypatch, variance):
    import harmony_cli.analysis.regression as regression

    def covariance(*args):
        if variance == "singular":
            raise np.linalg.LinAlgError("Singular matrix")
        return np.full((2, 2), variance)

    monkeypatch.setattr(regression, "clustered_covariance", covariance)
    reg = regression.gain_regression(GAIN, FIN, ORIG)
    assert reg["std_error"] is None and reg["p_value"] is None
    assert reg["notes"] == ["gain regression undefined: the fit gave no finite estimate"]


def test_regression_gain_bins_by_hand():
    gain = np.arange(10.0)
    fin = np.array([0, 1, 1, 1, 2, 2, 2, 0, 1, 2])
    orig = np.array([2, 1, 1, 1, 0, 0, 0, 2, 1, 0])
    bins = gain_bins(gain, fin, orig)
    # quantile edges 0, 1.8, 3.6, 5.4, 7.2, 9: two examples per bin, the maximum in the last
    assert [b["mean_gain"] for b in bins] == pytest.approx([0.5, 2.5, 4.5, 6.5, 8.5])
    assert [b["n_decisive"] for b in bins] == [4, 4, 4, 4, 4]
    assert [b["finetuned_share"] for b in bins] == pytest.approx([0.25, 0.5, 1.0, 0.5, 0.75])
    # two examples are enough for an interval: bin 4 (gains 6, 7) has residuals 2 - 1, 0 - 1 around its share 1/2
    # of 4 decisive labels: sqrt(2 / 1 * 2) / 4 = 1/2, t on 1 df; bin 3 (all fine-tuned) has no spread at all
    from scipy.stats import t as student

    half = student.ppf(0.975, 1) * 0.5
    assert bins[3]["interval"] == pytest.approx([max(0.5 - half, 0.0), min(0.5 + half, 1.0)])
    assert bins[2]["interval"] == [1.0, 1.0]
    one = gain_bins(gain, fin, orig, n_bins=1)
    assert [b["n_decisive"] for b in one] == [20] and one[0]["mean_gain"] == pytest.approx(4.5)
    two = gain_bins(gain, fin, orig, n_bins=2)
    assert [b["mean_gain"] for b in two] == pytest.approx([2.0, 7.0])
    assert gain_bins(np.append(gain, 50.0), np.append(fin, 0), np.append(orig, 0)) == bins  # no decisive label
    assert gain_bins(np.array([1.0, np.nan]), np.array([1, 1]), np.array([0, 0])) == []
    assert gain_bins(np.array([1.0, 2.0]), np.array([1, 0]), np.array([0, 1])) != []
    same = gain_bins(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1]), np.array([0, 1, 0]))
    # residuals 1/3, -2/3, 1/3: 3/2 * (6/9) = 1, se 1/3; t on 2 df (4.30) makes the interval all of [0, 1]
    assert same == [{"mean_gain": 0.5, "n_examples": 3, "n_decisive": 3, "finetuned_share": pytest.approx(2 / 3),
                     "interval": [0.0, 1.0]}]
