"""harmony power: the share of simulated studies reaching each verdict, checked against an independent
simulation analyzed with statsmodels, the false-positive rate of the rule under no effect, and the command."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.analysis.power import PowerModel, power_grid
from tests.label_frames import boundary_frame, store_from_frame

SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=0)


def t_wilson(d: float, n: float, deff: float, df: float, confidence: float) -> tuple[float, float]:
    """statsmodels' Wilson interval at labels / design effect, its critical value t's quantile on ``df``."""
    from scipy.stats import norm, t as student
    from statsmodels.stats.proportion import proportion_confint

    level = 2 * norm.cdf(student.ppf(0.5 + confidence / 2, df)) - 1
    return proportion_confint(d * n / deff, n / deff, alpha=1 - level, method="wilson")


def example_clustered(z: np.ndarray) -> tuple[float, float, float]:
    """(mean, variance, df) of the mean of a (G, A) table, clustered by example: statsmodels' OLS, t on G - 1."""
    import statsmodels.api as sm

    G, A = z.shape
    fit = sm.OLS(z.ravel(), np.ones(z.size)).fit(cov_type="cluster", use_t=True,
                                                  cov_kwds={"groups": np.repeat(np.arange(G), A)})
    return float(fit.params[0]), float(fit.bse[0] ** 2), G - 1


def crossed_anova(z: np.ndarray) -> tuple[float, float, float]:
    """(mean, variance, df) of the mean of a (G, A) table, examples and annotators sampled: the two-way ANOVA
    (MS_annotator + MS_example - MS_residual) / N with Satterthwaite df (at most min(A, G) - 1), floored at
    independent labels' variance."""
    G, A = z.shape
    if A < 2:
        return float(z.mean()), np.nan, np.nan
    grand, by_example, by_annotator = z.mean(), z.mean(1), z.mean(0)
    ms_b = A * ((by_example - grand) ** 2).sum() / (G - 1)
    ms_a = G * ((by_annotator - grand) ** 2).sum() / (A - 1)
    ms_e = ((z - by_example[:, None] - by_annotator[None, :] + grand) ** 2).sum() / ((A - 1) * (G - 1))
    combined = ms_a + ms_b - ms_e
    floor, cap = z.var(ddof=1) / z.size, min(A, G) - 1
    if combined / z.size <= floor:
        return float(grand), floor, min(z.size - 1, cap)
    df = combined ** 2 / (ms_a ** 2 / (A - 1) + ms_b ** 2 / (G - 1) + ms_e ** 2 / ((A - 1) * (G - 1)))
    return float(grand), combined / z.size, min(df, cap)


def independent_verdict(y: np.ndarray, family: int, s: AnalysisSettings) -> str:
    """The rule written out by hand on one simulated study, y: (G, A) choices -1 original, 0 Neither, +1 fine-tuned."""
    from scipy.stats import t as student

    moments = crossed_anova if s.generalize == "people" else example_clustered
    decisive, n = (y != 0).astype(float), y.size
    d, var_d, df_d = moments(decisive)
    if not np.isfinite(var_d):
        return "inconclusive"  # one annotator: nothing about people
    deff = max(var_d / (d * (1 - d) / n), 1.0) if 0 < d < 1 else y.shape[1]  # all agree: an example's labels as one
    low, high = t_wilson(d, n, deff, df_d, s.confidence)
    if high < s.perceptibility_margin:
        return "imperceptible"
    if low < s.perceptibility_margin or d == 0:
        return "inconclusive"
    delta, var, df = moments(y.astype(float))
    p = (2 * student.sf(abs(delta) / np.sqrt(var), df)) if var > 0 else (0.0 if delta != 0 else 1.0)
    if min(p * family, 1) < s.alpha and delta != 0:
        return "aligned" if delta > 0 else "misaligned"
    pi = (y == 1).sum() / decisive.sum()
    _, var_u, df_pi = moments((y == 1) - pi * decisive)
    se, m = np.sqrt(var_u) / d, s.equivalence_margin
    tost = max(student.sf((pi - 0.5 + m) / se, df_pi), student.sf((0.5 + m - pi) / se, df_pi)) if se > 0 else \
        float(abs(pi - 0.5) >= m)
    return "no_preference" if min(tost * family, 1) < s.alpha else "inconclusive"


def independent_shares(model: PowerModel, examples: int, annotators: int, studies: int, family: int,
                       seed: int, settings: AnalysisSettings) -> dict[str, float]:
    """Simulate with numpy's Dirichlet, each annotator's logit shifts and per-label categorical draws (not the code
    under test)."""
    rng = np.random.default_rng(seed)
    alpha = model.rates * (1 - model.correlation) / model.correlation
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    tally = {}
    for _ in range(studies):
        probs = rng.dirichlet(alpha, size=examples)
        u, v = rng.normal(0, model.annotator_spread, annotators), rng.normal(0, model.neither_spread, annotators)
        y = np.empty((examples, annotators), dtype=int)
        for j, (p_orig, p_neither, p_fin) in enumerate(probs):
            neither = expit(logit(p_neither) + v)
            fin = expit(logit(p_fin / (p_fin + p_orig)) + u)
            for i in range(annotators):
                y[j, i] = rng.choice([-1, 0, 1], p=[(1 - neither[i]) * (1 - fin[i]), neither[i],
                                                    (1 - neither[i]) * fin[i]])
        verdict = independent_verdict(y, family, settings)
        tally[verdict] = tally.get(verdict, 0) + 1
    return {v: n / studies for v, n in tally.items()}


@pytest.mark.parametrize("generalize, spread, annotators, family", [("these_annotators", 0.0, 5, 6),
                                                                    ("people", 0.8, 8, 1)])
def test_power_matches_an_independent_simulation(generalize, spread, annotators, family):
    """The grid's probabilities against studies simulated and judged independently (with annotators who differ,
    for people)."""
    settings = AnalysisSettings.defaults(bootstrap_resamples=0, generalize=generalize)
    model = PowerModel(neither=0.4, preference=0.66, correlation=0.3, annotator_spread=spread,
                       neither_spread=spread / 2)
    (row,) = power_grid(model, [40], [annotators], simulations=1500, settings=settings, family=family, seed=1)
    reference = independent_shares(model, 40, annotators, studies=300, family=family, seed=2, settings=settings)
    assert 0.15 < row["aligned"] < 0.85  # an effect the test can tell apart from a wrong computation
    for verdict in ("aligned", "inconclusive", "no_preference"):
        p = (row[verdict] + reference.get(verdict, 0.0)) / 2
        tolerance = 4 * np.sqrt(p * (1 - p) * (1 / 1500 + 1 / 300)) + 0.01
        assert row[verdict] == pytest.approx(reference.get(verdict, 0.0), abs=tolerance), verdict
        low, high = row[f"{verdict}_interval"]  # its Monte Carlo interval: Wilson over the 1,500 studies
        assert low <= row[verdict] <= high and high - low < 2 * 2.0 * np.sqrt(0.25 / 1500) + 0.01
    assert sum(row[v] for v in ("aligned", "misaligned", "no_preference", "imperceptible", "inconclusive")) == \
        pytest.approx(1.0)


def test_no_effect_is_rarely_called_directional_and_power_grows_with_size():
    these = AnalysisSettings.defaults(bootstrap_resamples=0, generalize="these_annotators")
    null = power_grid(PowerModel(neither=0.3, preference=0.5, correlation=0.2), [200], [5], simulations=2000,
                      settings=these, family=1, seed=3)[0]
    assert null["aligned"] + null["misaligned"] == pytest.approx(0.05, abs=0.02)  # the test's level
    # for people, with annotators who differ: at most the level (t on at most annotators - 1 df)
    null = power_grid(PowerModel(neither=0.3, preference=0.5, correlation=0.2, annotator_spread=1.0), [200], [5],
                      simulations=2000, settings=SETTINGS, family=1, seed=3)[0]
    assert null["aligned"] + null["misaligned"] <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 2000)
    rows = power_grid(PowerModel(neither=0.5, preference=0.65, correlation=0.2), [25, 100, 400], [3], simulations=400,
                      settings=these, family=30, seed=4)
    powers = [r["aligned"] for r in rows]
    assert powers[0] < powers[1] < powers[2] and powers[2] > 0.9
    # For people, with annotators who differ: more images do not help past a point, more annotators do.
    varied = PowerModel(neither=0.4, preference=0.7, correlation=0.2, annotator_spread=1.0)
    rows = power_grid(varied, [50, 400], [5, 20], simulations=300, settings=SETTINGS, family=30, seed=6)
    power = {(r["examples"], r["annotators"]): r["aligned"] for r in rows}
    assert power[(50, 20)] > power[(400, 5)] + 0.3
    # every label Neither: 100 examples as 100 labels, t on 5 - 1 df: Wilson's upper bound 2.78^2 / (100 + 2.78^2) = 7%
    nothing = power_grid(PowerModel(neither=1.0, preference=0.5, correlation=0.0), [100], [5], simulations=50,
                         settings=SETTINGS, seed=5)[0]
    assert nothing["imperceptible"] == 1.0


def test_power_command_writes_table_and_figure(tmp_path, sqlite_url):
    from harmony_cli.main import app


    result = CliRunner().invoke(app, ["power", "--examples", "20,40", "--annotators", "3,5", "--simulations", "50",
                                      "--out", str(tmp_path / "p"), "--cells", "4"])
    assert result.exit_code == 0, result.output
    assert "P(aligned)" in result.stdout and "family of 4 cells" in result.stdout
    saved = json.loads((tmp_path / "p" / "power.json").read_text())
    assert len(saved["rows"]) == 4 and saved["family"] == 4
    assert {"power.csv", "power.png", "power.pdf"} <= {p.name for p in (tmp_path / "p").iterdir()}
    store_from_frame(sqlite_url, "planned", boundary_frame())
    estimated = CliRunner().invoke(app, ["power", "--from-study", "planned", "--db", sqlite_url, "--cell",
                                         "rma/tiny/boundary", "--examples", "30", "--annotators", "5",
                                         "--simulations", "20", "--out", str(tmp_path / "q")])
    assert estimated.exit_code == 0, estimated.output
    model = json.loads((tmp_path / "q" / "power.json").read_text())["model"]
    frame = boundary_frame()
    counts = frame[frame.attribution == "boundary"].choice.value_counts()
    assert model["neither"] == pytest.approx(counts["neither"] / counts.sum())
    assert model["preference"] == pytest.approx(counts["finetuned"] / (counts["finetuned"] + counts["original"]))
    assert 0 < model["correlation"] < 0.95
    bad = CliRunner().invoke(app, ["power", "--examples", "ten", "--out", str(tmp_path / "r")])
    assert bad.exit_code != 0


def test_noise_dilutes_the_rates_as_simulate_annotators_does():
    from harmony_cli.analysis.power import simulate_counts

    model = PowerModel(neither=0.2, preference=0.9, correlation=0.0, noise=0.3)
    counts = simulate_counts(model, 20000, 4, 1, np.random.default_rng(0))
    assert counts.shape == (20000, 3) and (counts.sum(1) == 4).all()  # one row per example, one label per annotator
    shares = counts.sum(0) / counts.sum()
    expected = 0.7 * np.array([0.8 * 0.1, 0.2, 0.8 * 0.9]) + 0.3 / 3  # hand-computed mixture
    assert shares == pytest.approx(expected, abs=0.005)


def test_annotator_spread_is_estimated_from_their_own_shares():
    """30 annotators whose true logit preference has SD 1.0 (2,000 decisive labels each): the moment estimate
    finds about 1.0; exchangeable annotators give about 0."""
    from harmony_cli.analysis.power import annotator_spreads, logit_spread

    rng = np.random.default_rng(0)
    true = 1 / (1 + np.exp(-(0.8 + rng.normal(0, 1.0, 30))))
    assert logit_spread(rng.binomial(2000, true), np.full(30, 2000)) == pytest.approx(1.0, abs=0.3)
    assert logit_spread(rng.binomial(2000, np.full(30, 0.7)), np.full(30, 2000)) < 0.1
    assert logit_spread(np.array([5]), np.array([9])) == 0.0  # one annotator: no spread to see
    counts = np.array([[10, 50, 40], [30, 40, 30], [5, 80, 15]])  # original, neither, fine-tuned
    spread, neither_spread = annotator_spreads(counts)
    assert spread == pytest.approx(logit_spread(counts[:, 2], counts[:, 0] + counts[:, 2]))
    assert neither_spread == pytest.approx(logit_spread(counts[:, 1], counts.sum(1)))


# ----------------------------------------------------------------------------- the model's parts, by hand


@pytest.mark.parametrize("name, high", [("neither", 1.0), ("preference", 1.0), ("correlation", 0.999),
                                        ("noise", 1.0), ("annotator_spread", 10.0), ("neither_spread", 10.0)])
def test_power_model_takes_each_bound_and_refuses_beyond_it(name, high):
    from harmony_cli.errors import UserError

    for value in (0.0, high):
        assert getattr(PowerModel(**{name: value}), name) == value
    for value in (-0.001, high + 0.001):
        with pytest.raises(UserError, match=f"--{name} must lie between 0 and {high:g}, not {value}"):
            PowerModel(**{name: value})


def test_power_model_rates_expected_verdict_and_dict():
    model = PowerModel(neither=0.2, preference=0.75, correlation=0.1, noise=0.05, annotator_spread=0.3,
                       neither_spread=0.4)
    assert model.rates == pytest.approx([0.8 * 0.25, 0.2, 0.8 * 0.75])
    assert model.to_dict() == {"neither": 0.2, "preference": 0.75, "correlation": 0.1, "noise": 0.05,
                               "annotator_spread": 0.3, "neither_spread": 0.4}
    assert [PowerModel(preference=p).expected_verdict() for p in (0.5, 0.51, 0.49)] == [
        "no_preference", "aligned", "misaligned"]


def test_example_probabilities_are_the_rates_or_a_dirichlet_around_them():
    from harmony_cli.analysis.power import example_probabilities

    rng = np.random.default_rng(0)
    fixed = example_probabilities(PowerModel(neither=0.3, preference=0.6, correlation=0.0), 4, rng)
    assert fixed == pytest.approx(np.tile([0.7 * 0.4, 0.3, 0.7 * 0.6], (4, 1)), abs=0)
    fixed[0, 0] = 1.0  # its own array, not a view of the model's rates
    # Dirichlet with concentration (1 - rho) / rho: mean the rates, Var_k = r_k (1 - r_k) / (concentration + 1)
    model = PowerModel(neither=0.3, preference=0.6, correlation=0.25)
    probs = example_probabilities(model, 40_000, rng)
    rates = np.array([0.7 * 0.4, 0.3, 0.7 * 0.6])
    assert probs.sum(1) == pytest.approx(np.ones(40_000))
    assert probs.mean(0) == pytest.approx(rates, abs=0.005)
    assert probs.var(0) == pytest.approx(rates * (1 - rates) * 0.25, rel=0.05)
    # a choice nobody makes stays exactly 0 (never Neither here), the others still vary; no numpy warning in the log
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none = example_probabilities(PowerModel(neither=0.0, preference=0.6, correlation=0.25), 1000, rng)
    assert (none[:, 1] == 0).all() and none.sum(1) == pytest.approx(np.ones(1000)) and none[:, 2].std() > 0.1
    # a correlation near 1: each example nearly one-hot, but every row is still a distribution with the rates as mean
    strong = PowerModel(neither=0.5, preference=0.7, correlation=0.999)
    probs = example_probabilities(strong, 40_000, rng)
    assert probs.sum(1) == pytest.approx(np.ones(40_000)) and (probs.max(1) > 0.99).mean() > 0.9
    assert probs.mean(0) == pytest.approx([0.5 * 0.3, 0.5, 0.5 * 0.7], abs=0.01)


def test_simulated_labels_keep_certain_answers_and_shift_each_annotator_on_the_logit_scale():
    from harmony_cli.analysis.power import simulate_labels

    rng = np.random.default_rng(1)
    # a share of exactly 0 or 1 is not moved by any annotator's shift, however wide (and no numpy warning in the log)
    sure = dict(correlation=0.0, annotator_spread=10.0, neither_spread=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (simulate_labels(PowerModel(neither=0.0, preference=1.0, **sure), 20, 50, 2, rng) == 2).all()
        assert (simulate_labels(PowerModel(neither=0.0, preference=0.0, **sure), 20, 50, 2, rng) == 0).all()
        assert (simulate_labels(PowerModel(neither=1.0, preference=0.6, **sure), 20, 50, 2, rng) == 1).all()
    assert (simulate_labels(PowerModel(neither=1.0, preference=0.6, correlation=0.3), 20, 50, 2, rng) == 1).all()
    # 300 annotators, 2,000 examples each: their empirical logits have the model's mean and SD (less sampling)
    model = PowerModel(neither=0.4, preference=0.6, correlation=0.0, annotator_spread=1.0, neither_spread=0.5)
    choice = simulate_labels(model, 2000, 300, 1, rng)[0]
    assert choice.shape == (2000, 300)
    fin, orig, neither = (choice == 2).sum(0), (choice == 0).sum(0), (choice == 1).sum(0)

    def moments(k, n):
        logits = np.log((k + 0.5) / (n - k + 0.5))
        return logits.mean(), np.sqrt(logits.var(ddof=1) - np.mean(1 / (k + 0.5) + 1 / (n - k + 0.5)))

    mean, sd = moments(fin, fin + orig)
    assert mean == pytest.approx(np.log(0.6 / 0.4), abs=0.15) and sd == pytest.approx(1.0, abs=0.12)
    mean, sd = moments(neither, np.full(300, 2000))
    assert mean == pytest.approx(np.log(0.4 / 0.6), abs=0.1) and sd == pytest.approx(0.5, abs=0.08)
    # each spread moves its own share only
    same = simulate_labels(PowerModel(neither=0.4, preference=0.6, correlation=0.0, annotator_spread=1.0), 2000, 300,
                           1, rng)[0]
    assert (same == 1).mean(0).std() < 0.02 < 0.1 < ((same == 2).sum(0) / (same != 1).sum(0)).std()
    # and the two shifts are drawn apart: an annotator's preference says nothing of their Neither rate
    assert abs(np.corrcoef(np.log((fin + 0.5) / (orig + 0.5)), np.log((neither + 0.5) / (2000 - neither + 0.5)))[0, 1]) < 0.3


def test_count_tables_by_hand():
    from harmony_cli.analysis.power import count_tables

    choice = np.array([[[0, 2, 2], [1, 1, 0]], [[2, 2, 2], [0, 1, 2]]])  # (S=2 studies, G=2 examples, A=3)
    by_example, by_annotator = count_tables(choice)
    assert by_example.tolist() == [[1, 0, 2], [1, 2, 0], [0, 0, 3], [1, 1, 1]]
    assert by_annotator.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 2]]
    # the last label not fine-tuned: the tables still have a row per example and per annotator
    by_example, by_annotator = count_tables(np.array([[[1, 0]]]))
    assert by_example.tolist() == [[1, 1, 0]] and by_annotator.tolist() == [[0, 1, 0], [1, 0, 0]]


def test_power_grid_rows_their_monte_carlo_interval_and_its_checks():
    from statsmodels.stats.proportion import proportion_confint

    from harmony_cli.errors import UserError

    calls = []
    model = PowerModel(neither=0.4, preference=0.75, correlation=0.2)
    these = AnalysisSettings.defaults(bootstrap_resamples=0, generalize="these_annotators")
    rows = power_grid(model, [12, 30], [3], simulations=40, settings=these, seed=0,
                      progress=lambda: calls.append(1))
    assert len(calls) == 2 and [(r["examples"], r["annotators"], r["labels"]) for r in rows] == [(12, 3, 36), (30, 3, 90)]
    for row in rows:
        for verdict in ("aligned", "misaligned", "no_preference", "imperceptible", "inconclusive"):
            k = round(row[verdict] * 40)
            assert row[verdict] == pytest.approx(k / 40)
            assert row[f"{verdict}_interval"] == pytest.approx(proportion_confint(k, 40, alpha=0.05, method="wilson"))
    assert rows[1]["aligned"] > 0.5
    # by default one cell (no correction) and a fixed seed: the same rows again
    alone = power_grid(model, [12], [3], simulations=40, settings=these, family=1, seed=7)
    assert power_grid(model, [12], [3], simulations=40, settings=these, seed=7) == alone
    assert power_grid(model, [12], [3], simulations=40, settings=these) == \
        power_grid(model, [12], [3], simulations=40, settings=these)
    # the smallest study it accepts: one simulation of one example seen by one annotator
    (least,) = power_grid(model, [1], [1], simulations=1, settings=these, family=1, seed=0)
    assert least["labels"] == 1 and least["inconclusive"] + least["imperceptible"] == 1.0
    for bad in (dict(simulations=0), dict(family=0), dict(examples=[]), dict(annotators=[]), dict(examples=[0, 5]),
                dict(annotators=[0])):
        args = {"examples": [10], "annotators": [3], "simulations": 5, **bad}
        with pytest.raises(UserError, match="at least one simulation"):
            power_grid(model, args.pop("examples"), args.pop("annotators"), settings=these, **args)


def test_power_grid_splits_a_large_study_into_batches_of_bounded_memory():
    """Above 4,000,000 labels a study is simulated one at a time: the shares still add up over the studies."""
    these = AnalysisSettings.defaults(bootstrap_resamples=0, generalize="these_annotators")
    (row,) = power_grid(PowerModel(neither=0.0, preference=0.9, correlation=0.0), [2001], [2000], simulations=2,
                        settings=these, seed=0)
    assert row["aligned"] == 1.0 and row["labels"] == 2001 * 2000
    # two studies per batch at 1,500,000 labels: three simulations are a batch of two and one of one
    (row,) = power_grid(PowerModel(neither=0.0, preference=0.9, correlation=0.0), [1000], [1500], simulations=3,
                        settings=these, seed=0)
    assert row["aligned"] == 1.0 and sum(row[v] for v in ("misaligned", "no_preference", "imperceptible",
                                                          "inconclusive")) == 0.0
    # the loop's step and the batch are one bound: 4,000,000 // 1,000,000 = 4 and 4,000,000 // 97,561 = 40 studies
    # per batch (one bound less or more would skip or repeat a study: 3,999,999 // 10^6 = 3, 4,000,001 // 97,561 = 41)
    for examples, annotators, simulations in ((1000, 1000, 4), (97_561, 1, 41)):
        (row,) = power_grid(PowerModel(neither=0.0, preference=0.9, correlation=0.0), [examples], [annotators],
                            simulations=simulations, settings=these, seed=0)
        assert row["aligned"] == 1.0 and row["inconclusive"] == 0.0


def test_logit_spread_by_its_formula_and_without_annotators_who_answered():
    from harmony_cli.analysis.power import logit_spread

    k, n = np.array([3, 40, 10, 25, 1, 7]), np.array([20, 50, 30, 30, 1, 0])  # the last never answered: left out
    kk, nn = k[:5].astype(float), n[:5].astype(float)
    logits = np.log((kk + 0.5) / (nn - kk + 0.5))
    expected = np.sqrt(logits.var(ddof=1) - np.mean(1 / (kk + 0.5) + 1 / (nn - kk + 0.5)))
    assert expected > 0.5 and logit_spread(k, n) == pytest.approx(expected)
    assert logit_spread(np.array([5, 0]), np.array([9, 0])) == 0.0  # one annotator who answered
    assert logit_spread(np.array([10, 11]), np.array([20, 20])) == 0.0  # sampling explains it all
    two = np.log(np.array([2.5, 18.5]) / np.array([18.5, 2.5]))  # two who differ: a spread already
    assert logit_spread(np.array([2, 18]), np.array([20, 20])) == pytest.approx(
        np.sqrt(two.var(ddof=1) - (1 / 2.5 + 1 / 18.5)))


def test_model_from_labels_by_hand():
    from harmony_cli.analysis.power import annotator_spreads, model_from_labels
    from harmony_cli.errors import UserError

    model = model_from_labels(np.array([10, 30, 60]), [(0.2, 100), (None, 50), (0.5, 300)])
    assert (model.neither, model.preference) == (pytest.approx(0.3), pytest.approx(60 / 70))
    assert model.correlation == pytest.approx((0.2 * 100 + 0.5 * 300) / 400)
    assert (model.annotator_spread, model.neither_spread) == (0.0, 0.0)
    assert model_from_labels(np.array([0, 5, 0]), [(None, 5)]).preference == 0.5  # no decisive label
    assert model_from_labels(np.array([1, 5, 1]), [(None, 5)]).correlation == 0.0  # no kappa defined
    assert model_from_labels(np.array([1, 5, 1]), [(-0.3, 5)]).correlation == 0.0
    assert model_from_labels(np.array([1, 5, 1]), [(0.99, 5)]).correlation == 0.95
    with pytest.raises(UserError, match="no labels to estimate rates from"):
        model_from_labels(np.array([0, 0, 0]), [])
    annotators = np.array([[10, 50, 40], [30, 40, 30], [5, 80, 15], [20, 25, 60]])
    spread, neither_spread = annotator_spreads(annotators)
    assert spread > 0.1 and neither_spread > 0.1
    assert round(spread, 5) != round(spread, 4) and round(neither_spread, 5) != round(neither_spread, 4)  # 4 decimals show
    model = model_from_labels(annotators.sum(0), [(0.3, 400)], annotators)
    assert (model.annotator_spread, model.neither_spread) == (round(spread, 4), round(neither_spread, 4))
