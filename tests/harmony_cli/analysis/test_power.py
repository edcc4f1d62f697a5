"""harmony power: the share of simulated studies reaching each verdict, checked against an independent
simulation analyzed with statsmodels, the false-positive rate of the rule under no effect, and the command."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.analysis.power import PowerModel, power_grid

SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=0)


def independent_verdict(labels: np.ndarray, example: np.ndarray, family: int, s: AnalysisSettings) -> str:
    """The rule written out by hand on one simulated study: statsmodels' cluster-robust OLS for both means."""
    import statsmodels.api as sm
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    def fit(values):
        return sm.OLS(values, np.ones(len(values))).fit(cov_type="cluster", cov_kwds={"groups": example})

    decisive = (labels != 0).astype(float)
    d, n = decisive.mean(), len(decisive)
    if 0 < d < 1:
        deff = max(fit(decisive).bse[0] ** 2 / (d * (1 - d) / n), 1.0)
    else:
        deff = (np.bincount(example) ** 2).sum() / n  # no variance to estimate: as if each example were one label
    low, high = proportion_confint(d * n / deff, n / deff, alpha=1 - s.confidence, method="wilson")
    if high < s.perceptibility_margin:
        return "imperceptible"
    if low < s.perceptibility_margin or d == 0:
        return "inconclusive"
    net = labels.astype(float)
    if np.all(net == net[0]):
        return "aligned" if net[0] > 0 else ("misaligned" if net[0] < 0 else "inconclusive")
    result = fit(net)
    delta, se = result.params[0], result.bse[0]
    if min(result.pvalues[0] * family, 1) < s.alpha and delta != 0:
        return "aligned" if delta > 0 else "misaligned"
    tost = max(norm.sf((delta + s.equivalence_margin) / se), norm.sf((s.equivalence_margin - delta) / se))
    return "no_preference" if min(tost * family, 1) < s.alpha else "inconclusive"


def independent_shares(model: PowerModel, examples: int, annotators: int, studies: int, family: int,
                       seed: int) -> dict[str, float]:
    """Simulate with numpy's Dirichlet and per-label categorical draws (not the code under test)."""
    rng = np.random.default_rng(seed)
    alpha = model.rates * (1 - model.correlation) / model.correlation
    tally = {}
    example = np.repeat(np.arange(examples), annotators)
    for _ in range(studies):
        probs = rng.dirichlet(alpha, size=examples)
        labels = np.concatenate([rng.choice([-1, 0, 1], size=annotators, p=p) for p in probs])
        verdict = independent_verdict(labels, example, family, SETTINGS)
        tally[verdict] = tally.get(verdict, 0) + 1
    return {v: n / studies for v, n in tally.items()}


@pytest.mark.parametrize("family", [1, 6])
def test_power_matches_an_independent_simulation(family):
    model = PowerModel(neither=0.4, preference=0.64, correlation=0.3)
    (row,) = power_grid(model, [40], [5], simulations=1500, settings=SETTINGS, family=family, seed=1)
    reference = independent_shares(model, 40, 5, studies=300, family=family, seed=2)
    assert 0.15 < row["aligned"] < 0.85  # an effect the test can tell apart from a wrong computation
    for verdict in ("aligned", "inconclusive", "no_preference"):
        p = (row[verdict] + reference.get(verdict, 0.0)) / 2
        tolerance = 4 * np.sqrt(p * (1 - p) * (1 / 1500 + 1 / 300)) + 0.01
        assert row[verdict] == pytest.approx(reference.get(verdict, 0.0), abs=tolerance), verdict
    assert sum(row[v] for v in ("aligned", "misaligned", "no_preference", "imperceptible", "inconclusive")) == \
        pytest.approx(1.0)


def test_no_effect_is_rarely_called_directional_and_power_grows_with_size():
    null = power_grid(PowerModel(neither=0.3, preference=0.5, correlation=0.2), [200], [5], simulations=2000,
                      settings=SETTINGS, family=1, seed=3)[0]
    assert null["aligned"] + null["misaligned"] == pytest.approx(0.05, abs=0.02)  # the test's level
    rows = power_grid(PowerModel(neither=0.5, preference=0.65, correlation=0.2), [25, 100, 400], [3], simulations=400,
                      settings=SETTINGS, family=30, seed=4)
    powers = [r["aligned"] for r in rows]
    assert powers[0] < powers[1] < powers[2] and powers[2] > 0.9
    nothing = power_grid(PowerModel(neither=1.0, preference=0.5, correlation=0.0), [100], [3], simulations=50,
                         settings=SETTINGS, seed=5)[0]
    assert nothing["imperceptible"] == 1.0


def test_power_command_writes_table_and_figure(tmp_path, sqlite_url):
    from harmony_cli.main import app

    from tests.harmony_cli.analysis.test_clustered import boundary_frame
    from tests.harmony_cli.commands.test_analyze import store_from_frame

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
    shares = counts.sum(0) / counts.sum()
    expected = 0.7 * np.array([0.8 * 0.1, 0.2, 0.8 * 0.9]) + 0.3 / 3  # hand-computed mixture
    assert shares == pytest.approx(expected, abs=0.005)
