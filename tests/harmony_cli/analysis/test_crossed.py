"""The crossed inference ("for people", harmony_cli/analysis/crossed.py and clustered.crossed_shares) against
independent computations: a balanced two-way ANOVA worked out with loops, statsmodels' REML (MixedLM with crossed
variance components) on an unbalanced design, and simulated studies whose population value is known in closed form.

The data-generating process of the simulations (one study = one cell, all studies in one vectorized call):
annotator i has a leaning a_i ~ N(0, tau_a^2), example j a leaning b_j ~ N(0, tau_b^2); annotator i looking at
example j sees l = mu + a_i + b_j + e, e ~ N(0, 1), and answers fine-tuned when l > c, original when l < -c,
Neither otherwise. Over the population of annotators and examples l ~ N(mu, s^2), s^2 = 1 + tau_a^2 + tau_b^2, so
the population net preference is Phi((mu - c) / s) - Phi((-mu - c) / s), and the decisive fine-tuned share is
Phi((mu - c) / s) / (Phi((mu - c) / s) + Phi((-mu - c) / s)).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm, t as student

from harmony_cli.analysis import AnalysisSettings, analyze_labels
from harmony_cli.analysis.clustered import clustered_shares, crossed_shares
from harmony_cli.analysis.crossed import CrossedVariance, crossed_variance

THRESHOLD = 0.5
NET = np.array([[-1.0, 0.0, 1.0]])


def population(mu: float, tau_a: float, tau_b: float) -> tuple[float, float]:
    """(net preference, decisive fine-tuned share) of the whole population of annotators and examples."""
    s = np.sqrt(1 + tau_a ** 2 + tau_b ** 2)
    fin, orig = norm.cdf((mu - THRESHOLD) / s), norm.cdf((-mu - THRESHOLD) / s)
    return fin - orig, fin / (fin + orig)


def simulate(studies: int, annotators: int, examples: int, tau_a: float, tau_b: float, mu: float, seed: int,
             seen: float = 1.0):
    """Both inferences of ``studies`` simulated studies (one cell each); ``seen``: the chance that an annotator
    labels a given example (below 1: an unbalanced design, annotators seeing different subsets)."""
    rng = np.random.default_rng(seed)
    latent = (mu + rng.normal(0, tau_a, (studies, annotators, 1)) + rng.normal(0, tau_b, (studies, 1, examples))
              + rng.normal(0, 1, (studies, annotators, examples)))
    choice = np.where(latent > THRESHOLD, 2, np.where(latent < -THRESHOLD, 0, 1))
    mask = rng.random(choice.shape) < seen
    study, annotator, example = np.nonzero(mask)
    ch = choice[mask]
    ex_counts = np.bincount((study * examples + example) * 3 + ch, minlength=studies * examples * 3).reshape(-1, 3)
    an_counts = np.bincount((study * annotators + annotator) * 3 + ch,
                            minlength=studies * annotators * 3).reshape(-1, 3)
    ex_used, an_used = ex_counts.sum(1) > 0, an_counts.sum(1) > 0
    ex_cell, an_cell = np.arange(len(ex_counts)) // examples, np.arange(len(an_counts)) // annotators
    people = crossed_shares(ex_counts[ex_used], ex_cell[ex_used], an_counts[an_used], an_cell[an_used], studies,
                            0.95, 0.1)
    these = clustered_shares(ex_counts[ex_used], ex_cell[ex_used], studies, 0.95, 0.1)
    return people, these


def coverage(fig, truth: float) -> float:
    return float(np.mean((fig.delta_low <= truth) & (truth <= fig.delta_high)))


def test_balanced_two_way_example_by_hand():
    """4 annotators x 5 examples: the variance of the mean is (MS_annotator + MS_example - MS_residual) / (A G),
    its df Satterthwaite's, both worked out here with plain loops over the table."""
    y = [[1, 0, 1, -1, 1],      # annotator 0's net choices on examples 0..4
         [0, -1, 1, 0, -1],
         [1, 1, 0, 1, 1],
         [-1, 0, 0, -1, 0]]
    A, G = 4, 5
    grand = sum(map(sum, y)) / (A * G)
    row = [sum(r) / G for r in y]
    col = [sum(y[i][j] for i in range(A)) / A for j in range(G)]
    ms_a = G * sum((r - grand) ** 2 for r in row) / (A - 1)
    ms_b = A * sum((c - grand) ** 2 for c in col) / (G - 1)
    ms_e = sum((y[i][j] - row[i] - col[j] + grand) ** 2 for i in range(A) for j in range(G)) / ((A - 1) * (G - 1))
    variance = (ms_a + ms_b - ms_e) / (A * G)
    df = (ms_a + ms_b - ms_e) ** 2 / (ms_a ** 2 / (A - 1) + ms_b ** 2 / (G - 1) + ms_e ** 2 / ((A - 1) * (G - 1)))
    assert (grand, ms_a, ms_b, ms_e) == pytest.approx((3 / 20, 91 / 60, 13 / 40, 67 / 120))  # by hand, for the record
    assert df < min(A, G) - 1  # below the cap (annotators - 1): Satterthwaite's df as computed
    choice = np.array(y) + 1
    ex_counts = np.stack([np.bincount(choice[:, j], minlength=3) for j in range(G)])
    an_counts = np.stack([np.bincount(choice[i], minlength=3) for i in range(A)])
    got = crossed_variance(NET, ex_counts, np.zeros(G, int), an_counts, np.zeros(A, int), 1)
    assert got.mean[0] == pytest.approx(grand) and got.variance[0] == pytest.approx(variance, rel=1e-12)
    assert got.df[0] == pytest.approx(df, rel=1e-12)
    assert list(got.components[0]) == pytest.approx([(ms_a - ms_e) / G, (ms_b - ms_e) / A, ms_e])
    assert (got.n_annotators[0], got.n_examples[0]) == (A, G)
    # The same table through the analysis: the cell's "for people" interval is t on those df.
    frame = pd.DataFrame([{"example_id": j, "dataset": "d", "metric": "m", "backbone": "b", "attribution": "a",
                           "annotator": f"a{i}", "choice": ("original", "neither", "finetuned")[choice[i, j]]}
                          for i in range(A) for j in range(G)])
    cell = analyze_labels(frame, AnalysisSettings.defaults(bootstrap_resamples=0, min_examples=2))["cells"][0]
    people = cell["inferences"]["people"]
    half = student.ppf(0.975, df) * np.sqrt(variance)  # clipped to [-1, 1], the range of the net preference
    assert people["net_preference_interval"] == pytest.approx([max(grand - half, -1), min(grand + half, 1)], rel=1e-9)
    assert people["direction_test"]["p_value"] == pytest.approx(2 * student.sf(grand / np.sqrt(variance), df))
    assert people["net_preference_se"] == pytest.approx(np.sqrt(variance)) and people["df"] == pytest.approx(df)
    # and its decisive rate: the same rule on the decisive indicator |y|, Wilson at labels / design effect with t
    # on that variable's own df as the critical value
    from statsmodels.stats.proportion import proportion_confint

    decisive = np.abs(np.array(y, dtype=float))
    d_variance, d_df, _, case = anova_rule(decisive)
    d = decisive.mean()
    assert case != "tie" and d == pytest.approx(13 / 20)
    n_eff = A * G / max(d_variance / (d * (1 - d) / (A * G)), 1.0)
    level = 2 * norm.cdf(student.ppf(0.975, d_df)) - 1
    assert people["decisive_rate"] == pytest.approx(d) and people["decisive_rate_df"] == pytest.approx(d_df)
    assert people["decisive_rate_interval"] == pytest.approx(
        list(proportion_confint(d * n_eff, n_eff, alpha=1 - level, method="wilson")), rel=1e-9)
    # and pi, the fine-tuned share of decisive labels (8 of 13): the rule on its linearization F - pi D, over d^2
    table = np.array(y, dtype=float)
    pi = (table == 1).sum() / decisive.sum()
    u_variance, u_df, _, case = anova_rule((table == 1) - pi * decisive)
    assert case != "tie" and pi == pytest.approx(8 / 13) and people["preference"] == pytest.approx(pi)
    assert people["preference_se"] == pytest.approx(np.sqrt(u_variance) / d, rel=1e-9)
    assert people["preference_df"] == pytest.approx(u_df, rel=1e-9)


def crossed_of(y) -> CrossedVariance:
    choice = np.array(y) + 1
    A, G = choice.shape
    ex_counts = np.stack([np.bincount(choice[:, j], minlength=3) for j in range(G)])
    an_counts = np.stack([np.bincount(choice[i], minlength=3) for i in range(A)])
    return crossed_variance(NET, ex_counts, np.zeros(G, int), an_counts, np.zeros(A, int), 1)


def test_the_df_are_capped_and_the_variance_floored():
    # 3 x 4: MS 1/12, 14/9, 11/36; Satterthwaite's df 2.15 > annotators - 1 = 2: capped at 2
    got = crossed_of([[1, 1, 0, -1], [1, 0, 0, 0], [1, 1, 1, -1]])
    assert got.variance[0] == pytest.approx((1 / 12 + 14 / 9 - 11 / 36) / 12) and got.df[0] == 2
    # 2 x 2 [[1, 0], [0, 1]]: MS 0, 0, 1: the ANOVA variance is negative; floored at independent labels'
    # (sample variance 1/3 over 4 labels), on min(4 - 1, 2 - 1) df
    got = crossed_of([[1, 0], [0, 1]])
    assert got.variance[0] == pytest.approx(1 / 12) and got.df[0] == 1
    assert list(got.components[0]) == pytest.approx([-0.5, -0.5, 1.0])  # (MS_a - MS_e) / G, (MS_b - MS_e) / A, MS_e


def test_a_satterthwaite_df_below_one_is_the_t_reference():
    """2 annotators who disagree: Satterthwaite's df is 0.41, below the cap of 1, and the interval is t on 0.41 df."""
    y = np.array([[0, 1, 0, 1], [1, -1, -1, 0]])
    variance, df, _, case = anova_rule(y.astype(float))
    assert case == "as is" and 0 < df < 1
    choice = y + 1
    ex_counts = np.stack([np.bincount(choice[:, j], minlength=3) for j in range(4)])
    an_counts = np.stack([np.bincount(choice[i], minlength=3) for i in range(2)])
    people = crossed_shares(ex_counts, np.zeros(4, int), an_counts, np.zeros(2, int), 1, 0.5, 0.1)
    half = student.ppf(0.75, df) * np.sqrt(variance)  # at confidence 0.5 the interval stays inside [-1, 1]
    assert people.df[0] == pytest.approx(df) and people.delta[0] == pytest.approx(1 / 8)
    assert (people.delta_low[0], people.delta_high[0]) == pytest.approx((1 / 8 - half, 1 / 8 + half))


def test_one_annotator_says_nothing_about_people():
    ex_counts = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    got = crossed_variance(NET, ex_counts, np.zeros(3, int), ex_counts.sum(0, keepdims=True), np.zeros(1, int), 1)
    assert np.isnan(got.variance[0]) and np.isnan(got.df[0]) and got.mean[0] == 0.0
    one_example = crossed_of([[1], [0], [-1]])  # three annotators, one example: nothing either
    assert np.isnan(one_example.variance[0]) and np.isnan(one_example.components[0]).all()
    assert (one_example.n_annotators[0], one_example.n_examples[0]) == (3, 1)


def test_unbalanced_design_matches_statsmodels_mixedlm():
    """Annotators see about half of the examples each: the variance components and the variance of the mean
    agree with REML's (statsmodels MixedLM with crossed variance components) on the same labels."""
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(3)
    A, G = 15, 80
    latent = 0.3 + rng.normal(0, 0.6, (A, 1)) + rng.normal(0, 0.8, (1, G)) + rng.normal(0, 1, (A, G))
    choice = np.where(latent > THRESHOLD, 2, np.where(latent < -THRESHOLD, 0, 1))
    annotator, example = np.nonzero(rng.random((A, G)) < 0.5)
    ch = choice[annotator, example]
    labels = pd.DataFrame({"y": NET[0][ch], "a": annotator, "e": example, "one": 1})
    fit = smf.mixedlm("y ~ 1", labels, groups="one", re_formula="0",
                      vc_formula={"a": "0 + C(a)", "e": "0 + C(e)"}).fit(reml=True)
    n_i, n_j, n = np.bincount(annotator), np.bincount(example), len(labels)
    reml = (fit.vcomp[0] * (n_i ** 2).sum() + fit.vcomp[1] * (n_j ** 2).sum() + fit.scale * n) / n ** 2
    ex_counts = np.bincount(example * 3 + ch, minlength=G * 3).reshape(G, 3)
    an_counts = np.bincount(annotator * 3 + ch, minlength=A * 3).reshape(A, 3)
    got = crossed_variance(NET, ex_counts, np.zeros(G, int), an_counts, np.zeros(A, int), 1)
    assert got.mean[0] == pytest.approx(labels.y.mean())
    assert got.variance[0] == pytest.approx(reml, rel=0.10)
    assert list(got.components[0]) == pytest.approx([*fit.vcomp, fit.scale], rel=0.15)


def test_people_interval_covers_the_population_and_the_example_only_one_does_not():
    """1,000 studies of 8 annotators x 50 examples whose annotators differ: the crossed 95% interval covers the
    population net preference in >= 93% of them; the example-clustered one (these annotators) visibly less."""
    truth, _ = population(0.3, 0.5, 0.5)
    people, these = simulate(1000, 8, 50, tau_a=0.5, tau_b=0.5, mu=0.3, seed=11)
    assert coverage(people, truth) >= 0.93
    assert coverage(these, truth) < 0.80
    unbalanced, _ = simulate(1000, 8, 50, tau_a=0.5, tau_b=0.5, mu=0.3, seed=12, seen=0.6)
    assert coverage(unbalanced, truth) >= 0.93


def test_without_annotator_variance_both_inferences_agree():
    """Annotators who do not differ: both variances estimate the same thing (their means agree within Monte Carlo
    error, and both match the spread of the estimates over the studies). The example-clustered interval covers at
    95%; the crossed one at least that: t on at most annotators - 1 df (6 annotators: 5), since nothing tells it
    that the annotator variance is zero."""
    truth, _ = population(0.3, 0.0, 0.6)
    people, these = simulate(1000, 6, 50, tau_a=0.0, tau_b=0.6, mu=0.3, seed=13)
    ratio = people.delta_se ** 2 / these.delta_se ** 2
    assert abs(np.mean(people.delta_se ** 2) / np.mean(these.delta_se ** 2) - 1) < 3 * np.std(ratio) / np.sqrt(1000)
    spread = np.var(people.delta, ddof=1)  # the estimates' own variance over the studies (its SE: 4.5%)
    for fig in (people, these):
        assert np.mean(fig.delta_se ** 2) == pytest.approx(spread, rel=0.14)
    assert 0.93 <= coverage(these, truth) <= 0.97  # Monte Carlo standard error 0.007
    assert coverage(people, truth) >= coverage(these, truth) and np.nanmax(people.df) <= 5


@pytest.mark.parametrize("examples", [10, 25])
def test_small_cells_do_not_reject_more_often_than_alpha(examples):
    """4,000 null studies with 5 annotators: the direction test (at mu = 0, no preference) and the equivalence test
    (at the margin's edge, pi = 0.6) reject at most alpha plus three Monte Carlo standard errors (0.0035)."""
    tolerance = 0.05 + 3 * np.sqrt(0.05 * 0.95 / 4000)
    people, these = simulate(4000, 5, examples, tau_a=0.0, tau_b=0.7, mu=0.0, seed=examples)
    assert np.mean(people.p_direction < 0.05) <= tolerance and np.mean(these.p_direction < 0.05) <= tolerance
    # With annotators who differ only the crossed test keeps its level (the example-clustered one is about them),
    # a large annotator variance included: there a Satterthwaite df not capped at annotators - 1 rejects 7%.
    for tau_a in (0.5, 1.0):
        people, these = simulate(4000, 5, examples, tau_a=tau_a, tau_b=0.7, mu=0.0, seed=examples + int(10 * tau_a))
        assert np.mean(people.p_direction < 0.05) <= tolerance < np.mean(these.p_direction < 0.05)
    edge = brentq(lambda mu: population(mu, 0.5, 0.7)[1] - 0.6, 0.0, 3.0)
    people, these = simulate(4000, 5, examples, tau_a=0.5, tau_b=0.7, mu=edge, seed=examples + 2)
    assert np.mean(people.p_equivalence < 0.05) <= tolerance


def anova_rule(y: np.ndarray) -> tuple[float, float, float, str]:
    """The documented rule on a balanced table, written out: (variance, df, Satterthwaite's df, which case)."""
    A, G = y.shape
    grand, rows, cols = y.mean(), y.mean(1), y.mean(0)
    ms_a = G * ((rows - grand) ** 2).sum() / (A - 1)
    ms_b = A * ((cols - grand) ** 2).sum() / (G - 1)
    residual_df = (A - 1) * (G - 1)
    ms_e = ((y - rows[:, None] - cols[None, :] + grand) ** 2).sum() / residual_df
    combined = ms_a + ms_b - ms_e
    spread = ms_a ** 2 / (A - 1) + ms_b ** 2 / (G - 1) + ms_e ** 2 / residual_df
    satterthwaite = combined ** 2 / spread if spread > 0 else np.nan
    floor, cap = y.var(ddof=1) / y.size, min(A, G) - 1
    if np.isclose(combined / y.size, floor, rtol=1e-9, atol=0):
        return floor, np.nan, satterthwaite, "tie"  # the two computations may round either way
    if not combined / y.size > floor or not np.isfinite(satterthwaite):
        return floor, cap, satterthwaite, "floored"
    return combined / y.size, min(satterthwaite, cap), satterthwaite, "capped" if satterthwaite > cap else "as is"


def test_balanced_tables_of_every_shape_follow_the_rule():
    """70 random balanced tables (2 to 6 annotators, 2 to 6 examples): the variance and df are the two-way ANOVA's
    with the floor and the cap, written out above, in each of its cases."""
    rng = np.random.default_rng(4)
    cases = {}
    for A, G in [(2, 3), (2, 6), (3, 3), (3, 5), (4, 4), (5, 2), (6, 3)]:
        for _ in range(10):
            y = rng.integers(-1, 2, (A, G)) * (rng.random((A, 1)) < 0.8)  # some annotators answer only Neither
            variance, df, satterthwaite, case = anova_rule(y.astype(float))
            got = crossed_of(y)
            assert got.variance[0] == pytest.approx(variance, rel=1e-9, abs=1e-15), (y, case)
            assert case == "tie" or got.df[0] == pytest.approx(df, rel=1e-9), (y, case)
            cases[case] = cases.get(case, 0) + 1
            if case == "floored" and np.isfinite(satterthwaite) and satterthwaite < df:
                cases["floored below the cap"] = cases.get("floored below the cap", 0) + 1
    assert min(cases.get(c, 0) for c in ("floored", "capped", "as is", "floored below the cap")) > 0, cases
