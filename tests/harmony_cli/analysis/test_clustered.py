"""The example-clustered inference ("for these annotators", harmony_cli/analysis/clustered.py) and the
pre-registered verdict rule, each figure against an independent computation (statsmodels' cluster-robust
OLS with t on G - 1 df, scipy, multipletests) on small hand-made studies; then on count tables small
enough to work out by hand: the sandwich variance, the design effect and its floor, the zero-variance
tests, and what is undefined. t quantiles and Wilson intervals come from scipy/statsmodels directly
(a Wilson interval with a t critical value is statsmodels' at the normal level with the same quantile)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, t as student
from statsmodels.stats.proportion import proportion_confint

from harmony_cli.analysis import AnalysisSettings, analyze_labels, verdicts
from harmony_cli.analysis.clustered import clustered_shares
from tests.helpers import CELL
from tests.label_frames import boundary_frame

NO_BOOT = AnalysisSettings.defaults(bootstrap_resamples=0, generalize="these_annotators")
NET = {"finetuned": 1.0, "neither": 0.0, "original": -1.0}


def clustered_frame(seed: int, examples: int = 60, probs=(0.25, 0.35, 0.4), concentration: float = 3.0,
                    attribution: str = "gradcam", ragged: bool = True) -> pd.DataFrame:
    """Labels whose examples lean their own way (correlated within an example); 2-7 labels per example."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(examples):
        lean = rng.dirichlet(np.array(probs) * concentration)
        for a in range(int(rng.integers(2, 8)) if ragged else 5):
            rows.append({**CELL, "attribution": attribution, "example_id": f"{attribution}-{e}",
                         "annotator": f"a{a}", "choice": ("original", "neither", "finetuned")[rng.choice(3, p=lean)]})
    return pd.DataFrame(rows)


def ols_cluster(values: np.ndarray, groups: np.ndarray):
    import statsmodels.api as sm

    return sm.OLS(values, np.ones(len(values))).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)


def t_level(confidence: float, df: float) -> float:
    """The normal confidence level whose quantile is t's at ``confidence`` (Wilson with a t critical value)."""
    return 2 * norm.cdf(student.ppf(0.5 + confidence / 2, df)) - 1


def test_clustered_figures_match_statsmodels_cluster_robust_ols():
    frame = clustered_frame(seed=4)
    cell = analyze_labels(frame, NO_BOOT)["cells"][0]
    groups = pd.factorize(frame.example_id)[0]
    G = len(set(groups))
    net = ols_cluster(frame.choice.map(NET).to_numpy(), groups)
    assert net.df_resid_inference == G - 1 and cell["df"] == G - 1
    assert cell["net_preference"] == pytest.approx(net.params[0], rel=1e-12)
    assert cell["net_preference_se"] == pytest.approx(net.bse[0], rel=1e-9)
    assert cell["net_preference_interval"] == pytest.approx(list(net.conf_int(alpha=0.05)[0]), rel=1e-9)
    assert cell["direction_test"]["p_value"] == pytest.approx(net.pvalues[0], rel=1e-9)
    # Equivalence on pi = F / D: the ratio's linearization F - pi D, clustered, over d^2; TOST with t on G - 1 df.
    fin = (frame.choice == "finetuned").to_numpy(dtype=float)
    decisive = (frame.choice != "neither").to_numpy(dtype=float)
    pi = fin.sum() / decisive.sum()
    pi_se = ols_cluster(fin - pi * decisive, groups).bse[0] / decisive.mean()
    assert cell["preference"] == pytest.approx(pi) and cell["preference_se"] == pytest.approx(pi_se, rel=1e-9)
    margin = 0.10
    tost = max(student.sf((pi - 0.5 + margin) / pi_se, G - 1), student.sf((0.5 + margin - pi) / pi_se, G - 1))
    assert cell["equivalence_test"]["p_value"] == pytest.approx(tost, rel=1e-9)
    # Decisive rate: Wilson at the effective sample size N / design effect (cluster-robust over binomial variance).
    fit = ols_cluster(decisive, groups)
    d, n = decisive.mean(), len(decisive)
    deff = fit.bse[0] ** 2 / (d * (1 - d) / n)
    assert deff > 1.2  # the examples' leaning makes their labels agree more than chance
    assert cell["design_effect"] == pytest.approx(deff, rel=1e-9)
    assert cell["decisive_rate_interval"] == pytest.approx(
        list(proportion_confint(d * n / deff, n / deff, alpha=1 - t_level(0.95, G - 1), method="wilson")), rel=1e-9)


def test_perfectly_correlated_labels_count_as_one_per_example():
    """Every label of an example is the same: the clustered test is the one-sample t test on example values."""
    from scipy.stats import binomtest, sem, ttest_1samp

    rng = np.random.default_rng(6)
    per_example = rng.choice(["finetuned", "original", "neither"], p=[0.45, 0.3, 0.25], size=40)
    frame = pd.DataFrame([{**CELL, "example_id": e, "annotator": f"a{a}", "choice": c}
                          for e, c in enumerate(per_example) for a in range(5)])
    cell = analyze_labels(frame, NO_BOOT)["cells"][0]
    values = pd.Series(per_example).map(NET).to_numpy()
    assert cell["net_preference"] == pytest.approx(values.mean())
    assert cell["net_preference_se"] == pytest.approx(sem(values), rel=1e-9)
    assert cell["direction_test"]["p_value"] == pytest.approx(ttest_1samp(values, 0).pvalue, rel=1e-9)
    # Five identical labels carry one label's information: design effect 5 * G / (G - 1).
    assert cell["design_effect"] == pytest.approx(5 * 40 / 39, rel=1e-9)
    # The label-level test counts 5x the evidence: significant where the clustered test is not.
    fin, orig = (per_example == "finetuned").sum() * 5, (per_example == "original").sum() * 5
    label_p = cell["secondary_label_level_binomial"]["p_value"]
    assert label_p == pytest.approx(binomtest(fin, fin + orig).pvalue)
    assert label_p < 0.001 and cell["direction_test"]["p_value"] > 0.05


def test_verdict_rule_on_arrays():
    s = AnalysisSettings.defaults()
    got = verdicts(decisive_low=np.array([0.0, 0.2, 0.2, 0.2, 0.05, 0.2, 0.2]),
                   decisive_high=np.array([0.09, 0.4, 0.4, 0.4, 0.3, 0.4, 0.4]),
                   delta=np.array([0.0, 0.2, -0.2, 0.01, 0.2, 0.2, 0.2]),
                   p_direction_holm=np.array([np.nan, 0.01, 0.01, 0.9, 0.001, 0.06, 0.01]),
                   p_equivalence_holm=np.array([np.nan, 1, 1, 0.01, 1, 1, 1]),
                   n_examples=np.array([50, 50, 50, 50, 50, 50, 9]), settings=s)
    assert list(got) == ["imperceptible", "aligned", "misaligned", "no_preference",
                         "inconclusive",   # direction significant, but d not shown above the margin
                         "inconclusive",   # Holm p 0.06 >= alpha
                         "inconclusive"]   # fewer than min_examples


def test_verdict_at_a_holm_boundary_is_not_directional_and_alpha_changes_it():
    from statsmodels.stats.multitest import multipletests

    frame = boundary_frame()
    report = analyze_labels(frame, NO_BOOT)
    cells = {c["attribution"]: c for c in report["cells"]}
    raw = [c["direction_test"]["p_value"] for c in report["cells"]]
    holm = multipletests(raw, method="holm")[1]
    assert [c["direction_test"]["p_value_holm"] for c in report["cells"]] == pytest.approx(list(holm))
    b = cells["boundary"]
    assert b["direction_test"]["p_value"] < 0.05 < b["direction_test"]["p_value_holm"]  # the precondition
    assert b["decisive_rate_interval"][0] > 0.10 and b["net_preference"] > 0
    assert b["verdict"] == "inconclusive"
    loose_settings = AnalysisSettings.defaults(alpha=0.1, bootstrap_resamples=0, generalize="these_annotators")
    loose = {c["attribution"]: c for c in analyze_labels(frame, loose_settings)
             ["cells"]}
    assert loose["boundary"]["verdict"] == "aligned"


def test_a_p_value_of_zero_stays_in_the_holm_family():
    from statsmodels.stats.multitest import multipletests

    unanimous = pd.DataFrame([{**CELL, "attribution": "unanimous", "example_id": f"u{e}", "annotator": f"a{a}",
                               "choice": "finetuned"} for e in range(20) for a in range(3)])
    frame = pd.concat([unanimous, boundary_frame()], ignore_index=True)
    report = analyze_labels(frame, NO_BOOT)
    cells = {c["attribution"]: c for c in report["cells"]}
    assert cells["unanimous"]["direction_test"]["p_value"] == 0.0
    assert cells["unanimous"]["verdict"] == "aligned"
    raw = [c["direction_test"]["p_value"] for c in report["cells"]]
    # Three tests in the family: the boundary cell's p is multiplied by 3 - 1 = 2 ranks after the zero.
    assert [c["direction_test"]["p_value_holm"] for c in report["cells"]] == pytest.approx(
        list(multipletests(raw, method="holm")[1]))
    boundary = cells["boundary"]["direction_test"]
    assert boundary["p_value_holm"] == pytest.approx(max(2 * boundary["p_value"], 0.0))
    json.loads(json.dumps(report, allow_nan=False))


def test_few_decisive_labels_get_no_bootstrap_interval():
    frame = pd.DataFrame([{**CELL, "example_id": e, "annotator": f"a{a}",
                           "choice": "finetuned" if (e, a) in {(0, 0), (1, 1), (2, 0)} else "neither"}
                          for e in range(30) for a in range(3)])
    cell = analyze_labels(frame, AnalysisSettings.defaults(bootstrap_resamples=500))["cells"][0]
    assert cell["n_decisive"] == 3 and cell["decisive_bootstrap_interval"] is None
    assert any("no bootstrap interval: 3 decisive labels" in n for n in cell["notes"])
    many = clustered_frame(seed=1)
    assert analyze_labels(many, AnalysisSettings.defaults(bootstrap_resamples=500))["cells"][0][
        "decisive_bootstrap_interval"] is not None


def test_metric_direction_comes_from_the_study():
    rng = np.random.default_rng(2)
    frame = clustered_frame(seed=2, ragged=False)
    gains = {e: rng.normal() for e in frame.example_id.unique()}
    frame["original_score"] = 0.5
    frame["finetuned_score"] = 0.5 + frame.example_id.map(gains)
    up = analyze_labels(frame, NO_BOOT, higher_is_better={"rma": True})
    down = analyze_labels(frame, NO_BOOT, higher_is_better={"rma": False})
    missing = analyze_labels(frame, NO_BOOT)
    assert up["cells"][0]["gain_regression"]["mean_gain"] == pytest.approx(
        -down["cells"][0]["gain_regression"]["mean_gain"])
    assert not down["cells"][0]["gain_regression"]["higher_is_better"]
    assert missing["cells"][0]["gain_regression"]["higher_is_better"]
    assert any("records no direction for metric(s) rma" in n for n in missing["notes"]) and not up["notes"]


def holm_families(report: dict, settings: AnalysisSettings) -> list[tuple[str, list, list, list]]:
    """(name, raw p, reported Holm p, in family) of every Holm-corrected family in a report."""
    cells = report["cells"]
    tested = [c["n_examples_labelled"] >= settings.min_examples for c in cells]
    families = []
    for key in ("direction_test", "equivalence_test"):
        families.append((key, [c[key]["p_value"] for c in cells], [c[key]["p_value_holm"] for c in cells], tested))
    for key in ("secondary_label_level_binomial", "sign_test"):
        families.append((key, [c[key]["p_value"] for c in cells], [c[key]["p_value_holm"] for c in cells],
                         [True] * len(cells)))
    regs = [c["gain_regression"] or {} for c in cells]
    families.append(("gain_regression", [r.get("p_value") for r in regs], [r.get("p_value_holm") for r in regs],
                     [True] * len(cells)))
    for field, groups in report["rollups"].items():
        families.append((f"rollup {field}", [g["p_value"] for g in groups], [g["p_value_holm"] for g in groups],
                         [True] * len(groups)))
    return families


def test_every_holm_figure_in_the_report_equals_multipletests():
    from statsmodels.stats.multitest import multipletests

    frames = [clustered_frame(seed=s, examples=30 if s else 6, probs=p, attribution=f"m{s}")
              for s, p in enumerate([(0.3, 0.4, 0.3), (0.2, 0.4, 0.4), (0.4, 0.4, 0.2), (0.3, 0.3, 0.4)])]
    frame = pd.concat(frames, ignore_index=True)
    frame.loc[frame.attribution == "m3", "metric"] = "focus"
    rng = np.random.default_rng(9)
    gains = {e: rng.normal() for e in frame.example_id.unique()}
    frame["original_score"] = 0.5
    frame["finetuned_score"] = 0.5 + frame.example_id.map(gains)
    settings = AnalysisSettings.defaults(bootstrap_resamples=0)
    report = analyze_labels(frame, settings, higher_is_better={"rma": True, "focus": True})
    small = next(c for c in report["cells"] if c["attribution"] == "m0")
    assert small["n_examples_labelled"] < settings.min_examples  # out of the direction family
    checked = 0
    for name, raw, reported, member in holm_families(report, settings):
        keep = [m and p is not None for p, m in zip(raw, member)]
        expected = iter(multipletests([p for p, k in zip(raw, keep) if k], method="holm")[1]) if any(keep) else None
        for p_holm, k in zip(reported, keep):
            if k:
                assert p_holm == pytest.approx(next(expected), rel=1e-12), name
                checked += 1
            else:
                assert p_holm is None, name
    assert checked >= 20


# count columns: original, neither, finetuned (harmony_cli.cells.REPORT_ORDER)
# cell 0: A 2 fine-tuned; B 1 original + 1 fine-tuned; C 2 neither
HAND = np.array([[0, 0, 2], [1, 0, 1], [0, 2, 0]])


def one_cell(counts, confidence=0.95, margin=0.1, cells=None):
    cells = np.zeros(len(counts), int) if cells is None else cells
    return clustered_shares(np.asarray(counts), cells, int(cells.max()) + 1, confidence, margin)


def test_clustered_net_preference_by_hand():
    # delta = 2 / 6; residuals per example 4/3, -2/3, -2/3; variance = 3/2 * (24/9) / 36 = 1/9; 3 examples: t on 2 df
    f = one_cell(HAND)
    assert f.delta[0] == pytest.approx(1 / 3) and f.delta_se[0] == pytest.approx(1 / 3) and f.df[0] == 2
    assert f.p_direction[0] == pytest.approx(2 * student.sf(1.0, 2))
    # 1/3 -+ t * 1/3, clipped to [-1, 1], delta's range: t(0.975, 2) = 4.30 clips both ends, t(0.95, 2) = 2.92 one
    q95, q90 = student.ppf(0.975, 2), student.ppf(0.95, 2)
    assert 1 / 3 - q95 / 3 < -1 and (f.delta_low[0], f.delta_high[0]) == (-1.0, 1.0)
    f90 = one_cell(HAND, confidence=0.90)
    assert (f90.delta_low[0], f90.delta_high[0]) == pytest.approx((1 / 3 - q90 / 3, 1.0))


def test_clustered_preference_and_its_equivalence_test_by_hand():
    # pi = 3 fine-tuned / 4 decisive; F - pi D per example: 2 - 1.5, 1 - 1.5, 0; variance 3/2 * (1/2) / 36 = 1/48;
    # over d^2 = 4/9: 3/64. TOST of |pi - 0.5| < 0.1: H0 pi >= 0.6 gives sf((0.6 - 0.75) / se), the larger.
    f = one_cell(HAND, margin=0.1)
    se = math.sqrt(3 / 64)
    assert f.preference[0] == pytest.approx(0.75) and f.preference_se[0] == pytest.approx(se)
    assert f.p_equivalence[0] == pytest.approx(student.sf((0.6 - 0.75) / se, 2))
    q = student.ppf(0.975, 2)
    assert 0.75 - q * se < 0 and 0.75 + q * se > 1  # clipped to [0, 1]
    assert (f.preference_low[0], f.preference_high[0]) == (0.0, 1.0)
    # the mirror image (fine-tuned and original swapped): pi = 1/4, the same se, now H0 pi <= 0.4 is the larger p
    mirror = one_cell(HAND[:, ::-1], margin=0.1)
    assert mirror.preference[0] == pytest.approx(0.25) and mirror.preference_se[0] == pytest.approx(se)
    assert mirror.p_equivalence[0] == pytest.approx(student.sf((0.25 - 0.4) / se, 2))
    wide = one_cell(HAND, margin=0.49)
    assert wide.p_equivalence[0] == pytest.approx(max(student.sf((0.25 + 0.49) / se, 2),
                                                      student.sf((0.49 - 0.25) / se, 2)))


def test_clustered_zero_variance_and_undefined_cells():
    counts = np.array([[0, 0, 2], [0, 0, 2],      # cell 0: every label fine-tuned: delta 1, pi 1, se 0
                       [1, 0, 1], [1, 0, 1],      # cell 1: every example nets 0: delta 0, pi 1/2, se 0
                       [0, 0, 1], [0, 1, 0],      # cell 2: delta 1/2 with se > 0; pi 1 with se 0
                       [0, 2, 0], [0, 1, 0],      # cell 3: no decisive label
                       [0, 0, 3],                 # cell 4: one example
                       [1, 0, 0], [1, 0, 0]])     # cell 5: every label original: delta -1, se 0
    cells = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5])
    f = one_cell(counts, margin=0.3, cells=cells)
    assert list(f.delta[[0, 1, 5]]) == [1.0, 0.0, -1.0] and list(f.delta_se[[0, 1, 5]]) == [0.0, 0.0, 0.0]
    assert list(f.p_direction[[0, 1, 5]]) == [0.0, 1.0, 0.0]   # a zero p stays a number (it is in the Holm family)
    assert list(f.p_equivalence[[0, 1, 2, 5]]) == [1.0, 0.0, 1.0, 1.0]  # |pi - 1/2| < margin only in cell 1
    assert list(f.delta_low[[0, 1]]) == [1.0, 0.0] and list(f.delta_high[[0, 1]]) == [1.0, 0.0]
    assert (f.delta_low[5], f.delta_high[5]) == (-1.0, -1.0)  # no spread: the interval is the point, at either end
    assert list(f.preference_low[[0, 1]]) == [1.0, 0.5] and list(f.preference_high[[0, 1]]) == [1.0, 0.5]
    # cell 2: net 1 over 2 labels; residuals 1 - 1/2, 0 - 1/2; variance = 2 * (1/2) / 4 = 1/4; 2 examples: 1 df
    assert (f.delta[2], f.delta_se[2]) == pytest.approx((0.5, 0.5))
    assert f.p_direction[2] == pytest.approx(2 * student.sf(1.0, 1))
    for figure in (f.delta, f.delta_se, f.delta_low, f.delta_high, f.p_direction, f.p_equivalence, f.preference):
        assert np.isnan(figure[3]) and np.isnan(figure[4])
    at_margin = one_cell(counts, margin=0.5, cells=cells)
    assert at_margin.p_equivalence[0] == 1.0 and at_margin.p_equivalence[1] == 0.0  # |pi - 1/2| = margin is not within


def test_clustered_decisive_rate_design_effect_by_hand():
    # d = 4/6; residuals 2/3, 2/3, -4/3; variance = 3/2 * (24/9) / 36 = 1/9; binomial = (2/9) / 6 = 1/27
    f = one_cell(HAND)
    assert (f.decisive_rate[0], f.design_effect[0], f.n_labels[0], f.n_examples[0]) == pytest.approx((2 / 3, 3.0, 6, 3))
    # Wilson at the effective sample size 6 / 3 = 2 with 2/3 of it decisive, critical value t on 2 df
    assert (f.decisive_low[0], f.decisive_high[0]) == pytest.approx(
        proportion_confint(4 / 3, 2, alpha=1 - t_level(0.95, 2), method="wilson"))


def test_clustered_decisive_interval_at_an_effective_sample_size_of_one():
    # one example all decisive, one all Neither (3 labels each): d = 1/2; residuals 3/2, -3/2: variance
    # 2 * (9/2) / 36 = 1/4 against the binomial 1/24: design effect 6, 6 labels count as one
    # (at confidence 0.5: t(0.75, 1) = 1, a level statsmodels can take; at 0.95, t on 1 df is 12.7)
    f = one_cell(np.array([[0, 0, 3], [0, 3, 0]]), confidence=0.5)
    assert (f.decisive_rate[0], f.design_effect[0]) == pytest.approx((0.5, 6.0))
    assert (f.decisive_low[0], f.decisive_high[0]) == pytest.approx(
        proportion_confint(0.5, 1, alpha=1 - t_level(0.5, 1), method="wilson"))


def test_clustered_design_effect_floor_and_the_agreeing_case():
    counts = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0],   # cell 0: every example half decisive: variance 0
                       [0, 0, 3], [1, 0, 0],              # cell 1: every label decisive (d = 1): sizes 3, 1
                       [0, 2, 2]])                        # cell 2: one example
    cells = np.array([0, 0, 0, 1, 1, 2])
    f = one_cell(counts, confidence=0.9, cells=cells)
    assert f.design_effect[0] == 1.0  # the sandwich variance is 0 here: floored at 1, the binomial case
    assert (f.decisive_low[0], f.decisive_high[0]) == pytest.approx(
        proportion_confint(3, 6, alpha=1 - t_level(0.9, 2), method="wilson"))
    assert f.decisive_rate[1] == 1.0 and f.design_effect[1] == pytest.approx((9 + 1) / 4)  # sum(n_i^2) / N
    assert (f.decisive_low[1], f.decisive_high[1]) == pytest.approx(
        proportion_confint(1.6, 1.6, alpha=1 - t_level(0.9, 1), method="wilson"))
    # one example: t on 0 df has no quantile: no interval, so no verdict either way
    assert f.decisive_rate[2] == 0.5 and np.isnan(f.decisive_low[2]) and np.isnan(f.df[2])
    assert np.isnan(f.decisive_df[2])  # not 0: one example gives no df at all
    assert list(f.n_examples) == [3, 2, 1] and list(f.n_labels) == [6, 4, 4]


def test_clustered_shares_carry_every_figure_of_every_cell():
    counts = np.vstack([HAND, [[0, 0, 2], [0, 0, 2]]])
    cells = np.array([0, 0, 0, 1, 1])
    shares = clustered_shares(counts, cells, 2, 0.95, margin=0.1)
    assert list(shares.n_labels) == [6, 4] and list(shares.n_examples) == [3, 2] and list(shares.df) == [2, 1]
    assert shares.decisive_rate[0] == pytest.approx(2 / 3) and shares.delta[0] == pytest.approx(1 / 3)
    assert shares.delta_se[0] == pytest.approx(1 / 3) and shares.design_effect[0] == pytest.approx(3.0)
    assert shares.p_direction[0] == pytest.approx(2 * student.sf(1.0, 2)) and shares.p_direction[1] == 0.0
    assert shares.p_equivalence[1] == 1.0 and shares.delta_low[1] == 1.0 and shares.delta_high[1] == 1.0
    assert shares.decisive_low[0] < 2 / 3 < shares.decisive_high[0]
    assert not math.isnan(shares.decisive_high[1])


def test_the_analysis_imports_neither_torch_nor_lightning_modules():
    """Only the torch-free ``lightning_modules.errors`` (the one UserError both packages raise) may load."""
    import subprocess
    import sys

    code = ("import sys, harmony_cli.analysis, harmony_cli.analysis.power, harmony_cli.analysis.plot; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning_modules', 'lightning')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['lightning_modules', 'lightning_modules.errors']"
