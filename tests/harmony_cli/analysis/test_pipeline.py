"""harmony analyze: the statistics on hand-made label sets with known answers, checked against the
libraries (scipy, statsmodels, krippendorff) through independent code paths, the report files,
the command, and the published study."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harmony_cli.analysis import (AnalysisSettings, analyze_labels, cluster_bootstrap_share, cells_frame, to_json,
                                  write_report)
from harmony_cli.analysis import select_label_source
from harmony_cli.errors import UserError
from tests.helpers import CELL

FAST = AnalysisSettings.defaults(bootstrap_resamples=300)


def labels(rows, cell=CELL, **columns) -> pd.DataFrame:
    """A labels frame from (example_id, annotator, choice) rows, all in ``cell``."""
    frame = pd.DataFrame(rows, columns=["example_id", "annotator", "choice"])
    for key, value in {**cell, **columns}.items():
        frame[key] = value
    return frame


def one_cell(report: dict) -> dict:
    assert len(report["cells"]) == 1
    return report["cells"][0]


def random_labels(seed=0, cells=2, examples=40, annotators=5, drop=0.0, probs=((0.2, 0.5, 0.3), (0.4, 0.4, 0.2))):
    """Random labels in ``cells`` cells; ``drop``: share of (annotator, example) pairs without a label."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(cells):
        for e in range(examples):
            example_bias = rng.dirichlet(np.array(probs[c % len(probs)]) * 6)
            for a in range(annotators):
                if rng.random() < drop:
                    continue
                choice = ("original", "neither", "finetuned")[rng.choice(3, p=example_bias)]
                rows.append({"example_id": c * 1000 + e, "annotator": f"a{a}", "choice": choice,
                             **CELL, "attribution": f"method{c}"})
    return pd.DataFrame(rows)


# --- hand-made sets with known answers ---------------------------------------------------


def test_perfect_agreement_gives_kappa_and_alpha_one():
    truth = {1: "original", 2: "finetuned", 3: "neither", 4: "finetuned", 5: "finetuned", 6: "original"}
    frame = labels([(e, f"a{a}", c) for e, c in truth.items() for a in range(4)])
    cell = one_cell(analyze_labels(frame, FAST))
    assert cell["fleiss_kappa"] == pytest.approx(1.0)
    assert cell["krippendorff_alpha"] == pytest.approx(1.0)
    assert (cell["n_examples"], cell["n_annotators"], cell["n_labels"]) == (6, 4, 24)
    assert cell["counts"] == {"original": 8, "neither": 4, "finetuned": 12}
    assert cell["majority"] == {"original": 2, "neither": 1, "finetuned": 3, "tie": 0}
    assert cell["decisive_finetuned_share"] == pytest.approx(12 / 20)
    assert cell["sign_test"]["examples_finetuned"] == 3 and cell["sign_test"]["examples_original"] == 2


def test_all_neither_is_imperceptible_with_undefined_agreement_and_no_nan():
    frame = labels([(e, f"a{a}", "neither") for e in range(100) for a in range(3)])
    report = analyze_labels(frame, FAST)
    cell = one_cell(report)
    for key in ("fleiss_kappa", "krippendorff_alpha", "net_preference", "net_preference_interval",
                "decisive_finetuned_share", "decisive_bootstrap_interval"):
        assert cell[key] is None, key
    for test in ("direction_test", "equivalence_test", "secondary_label_level_binomial", "sign_test"):
        assert cell[test]["p_value"] is None, test
    assert any("every label is 'neither'" in n for n in cell["notes"])
    # 100 examples as 100 labels (each example's labels as one): Wilson's upper bound c^2 / (100 + c^2), c the t
    # quantile: on 100 - 1 df for these annotators (4%: imperceptible); for people on 3 - 1 (16%: three unanimous
    # annotators cannot show that people see no difference)
    from scipy.stats import t as student

    for name, df, verdict in (("these_annotators", 99, "imperceptible"), ("people", 2, "inconclusive")):
        c2 = student.ppf(0.975, df) ** 2
        assert cell["inferences"][name]["decisive_rate_interval"][1] == pytest.approx(c2 / (100 + c2), rel=1e-9)
        assert cell["verdicts"][name] == verdict
    assert cell["verdict"] == "inconclusive" and cell["neither_dominant"]
    assert "Neither dominant" in cell["verdict_detail"]
    assert cell["shares"]["neither"] == 1.0
    # 10 examples of 3 Neither labels cannot show d < 10%: the upper bound of 0/10 (one label per
    # example, as if perfectly correlated) is Wilson's c^2 / (10 + c^2), c the t quantile: on 10 - 1 df for
    # these annotators; for people on 3 - 1 (a zero crossed variance is floored at independent labels' variance,
    # on 30 - 1 df, capped at annotators - 1).
    few = one_cell(analyze_labels(frame[frame.example_id < 10], FAST))
    for name, df in (("these_annotators", 9), ("people", 2)):
        c2 = student.ppf(0.975, df) ** 2
        assert few["inferences"][name]["decisive_rate_interval"][1] == pytest.approx(c2 / (10 + c2), rel=1e-9)
        assert few["verdicts"][name] == "inconclusive"
    json.loads(to_json(report))  # allow_nan=False: raises on any NaN


def test_one_annotator_has_tests_but_no_agreement():
    from scipy.stats import binomtest

    frame = labels([(e, "solo", c) for e, c in enumerate(["finetuned"] * 9 + ["original"] * 2 + ["neither"] * 4)])
    report = analyze_labels(frame, FAST)
    cell = one_cell(report)
    assert cell["n_annotators"] == 1
    assert cell["fleiss_kappa"] is None and cell["krippendorff_alpha"] is None
    assert any("no example has two or more labels" in n for n in cell["notes"])
    assert cell["secondary_label_level_binomial"]["p_value"] == pytest.approx(binomtest(9, 11, 0.5).pvalue)
    assert report["annotators"][0]["agreement_with_majority"] is None
    json.loads(to_json(report))


def test_ties_in_majority_vote_and_sign_test():
    rows = [(1, "a", "original"), (1, "b", "finetuned"),                     # tie, even
            (2, "a", "finetuned"), (2, "b", "finetuned"),                    # finetuned
            (3, "a", "neither"), (3, "b", "original"),                       # tie, original side
            (4, "a", "neither"), (4, "b", "neither"), (4, "c", "finetuned")]  # neither, finetuned side
    cell = one_cell(analyze_labels(labels(rows), FAST))
    assert cell["majority"] == {"original": 0, "neither": 1, "finetuned": 1, "tie": 2}
    assert cell["sign_test"] | {"p_value": None, "p_value_holm": None} == {
        "examples_finetuned": 2, "examples_original": 1, "examples_even": 1, "p_value": None, "p_value_holm": None}


def test_empty_cell_is_reported_as_such():
    frame = labels([(e, f"a{a}", "finetuned" if (e + a) % 3 else "original") for e in range(8) for a in range(3)])
    cells = pd.DataFrame([{**CELL, "examples": 8}, {**CELL, "attribution": "unlabelled_method", "examples": 12}])
    report = analyze_labels(frame, FAST, cells=cells)
    by_attr = {c["attribution"]: c for c in report["cells"]}
    empty = by_attr["unlabelled_method"]
    assert (empty["n_examples"], empty["n_labels"], empty["n_annotators"]) == (12, 0, 0)
    assert empty["verdict"] == "inconclusive"
    assert empty["counts"] == {"original": 0, "neither": 0, "finetuned": 0}
    assert empty["shares"]["original"] is None and empty["direction_test"]["p_value"] is None
    assert empty["fleiss_kappa"] is None and empty["decisive_rate"] is None
    assert empty["notes"]
    assert by_attr["gradcam"]["n_labels"] == 24
    # Holm counts only the defined test: the labelled cell's corrected p equals its raw p.
    second = by_attr["gradcam"]["secondary_label_level_binomial"]
    assert second["p_value_holm"] == pytest.approx(second["p_value"])
    json.loads(to_json(report))
    assert len(cells_frame(report)) == 2


def test_verdicts_follow_holm_corrected_tests():
    from statsmodels.stats.multitest import multipletests

    rows = []
    plans = {"prefers_ft": ["finetuned"] * 4 + ["original"], "prefers_orig": ["original"] * 4 + ["neither"],
             "balanced": ["original", "finetuned", "neither", "neither", "original", "finetuned"]}
    for c, (attr, pattern) in enumerate(plans.items()):
        for e in range(40):
            for a in range(5):
                rows.append({**CELL, "attribution": attr, "example_id": c * 100 + e, "annotator": f"a{a}",
                             "choice": pattern[(a + e) % len(pattern)]})
    # annotators who cycle through one pattern: a design about these five, not a sample of people
    report = analyze_labels(pd.DataFrame(rows), AnalysisSettings.defaults(bootstrap_resamples=300,
                                                                          generalize="these_annotators"))
    cells = {c["attribution"]: c for c in report["cells"]}
    assert cells["prefers_ft"]["verdict"] == "aligned"
    assert cells["prefers_orig"]["verdict"] == "misaligned"
    assert cells["balanced"]["verdict"] == "no_preference"  # 67% decisive, split evenly
    for family in ("direction_test", "equivalence_test", "secondary_label_level_binomial", "sign_test"):
        raw = [c[family]["p_value"] for c in report["cells"]]
        assert [c[family]["p_value_holm"] for c in report["cells"]] == pytest.approx(
            list(multipletests(raw, method="holm")[1])), family
    assert report["rollups"]["attribution"][0]["verdicts"]["no_preference"] == 1


def test_annotator_agreement_with_majority_and_position_bias():
    # a and b always agree; c always picks another answer: leave-one-out majority of the others.
    rows, choices = [], ["original", "neither", "finetuned"]
    for e in range(6):
        main = choices[e % 3]
        other = choices[(e + 1) % 3]
        left = "finetuned" if e % 2 else "original"
        rows += [(e, "a", main, left), (e, "b", main, left), (e, "c", other, left)]
    frame = pd.DataFrame(rows, columns=["example_id", "annotator", "choice", "left_map"]).assign(**CELL)
    report = analyze_labels(frame, FAST)
    agreement = {a["annotator"]: a["agreement_with_majority"] for a in report["annotators"]}
    # For a: the others (b, c) tie on every example -> not compared. For c: a and b agree -> 0 %.
    assert agreement["c"] == 0.0
    assert agreement["a"] is None and agreement["b"] is None
    by_name = {a["annotator"]: a for a in report["annotators"]}
    assert by_name["c"]["n_compared_with_majority"] == 6
    # Position: decisive labels choose the left map when choice == left_map.
    frame_dec = frame[frame.choice != "neither"]
    expected_left = (frame_dec.choice == frame_dec.left_map).sum()
    bias = report["position_bias"]
    assert bias["n_decisive_with_side"] == len(frame_dec)
    assert bias["chose_left"] == expected_left
    left_ft = frame_dec[frame_dec.left_map == "finetuned"]
    assert bias["finetuned_share_by_side"]["finetuned_left"]["decisive_finetuned_share"] == pytest.approx(
        (left_ft.choice == "finetuned").mean())


def test_real_and_simulated_labels_are_never_mixed():
    frame = labels([(1, "r", "finetuned"), (2, "r", "original"), (1, "s", "neither")])
    frame["simulated"] = frame["annotator"] == "s"
    real, source = select_label_source(frame)
    assert source == "real" and set(real.annotator) == {"r"}
    sim, source = select_label_source(frame, simulated=True)
    assert source == "simulated" and set(sim.annotator) == {"s"}
    only_sim, source = select_label_source(frame[frame.simulated])
    assert source == "simulated" and len(only_sim) == 1
    with pytest.raises(UserError, match="no real labels"):
        select_label_source(frame[frame.simulated], simulated=False)
    with pytest.raises(UserError, match="no simulated labels"):
        select_label_source(frame[~frame.simulated], simulated=True)


def test_bad_labels_are_user_errors():
    with pytest.raises(UserError, match="unknown choice"):
        analyze_labels(labels([(1, "a", "learn")]))
    with pytest.raises(UserError, match="lack column"):
        analyze_labels(pd.DataFrame({"example_id": [1], "choice": ["original"]}))


# --- figures against the libraries, through independent code paths -----------------------


def test_statistics_match_scipy_statsmodels_krippendorff():
    import krippendorff
    from scipy.stats import binomtest
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa
    from statsmodels.stats.proportion import proportion_confint

    frame = random_labels(seed=3, examples=60, drop=0.12)  # some examples with 4 or fewer labels
    report = analyze_labels(frame, FAST)
    for cell in report["cells"]:
        part = frame[frame.attribution == cell["attribution"]]
        counts = part.choice.value_counts()
        assert cell["counts"] == {k: int(counts.get(k, 0)) for k in ("original", "neither", "finetuned")}
        n = len(part)
        for k in ("original", "neither", "finetuned"):
            low, high = proportion_confint(counts.get(k, 0), n, alpha=0.05, method="wilson")
            assert cell["share_intervals"][k] == pytest.approx([low, high])
        fin, orig = counts.get("finetuned", 0), counts.get("original", 0)
        second = cell["secondary_label_level_binomial"]
        assert second["p_value"] == pytest.approx(binomtest(fin, fin + orig, 0.5).pvalue)
        assert second["decisive_wilson_interval"] == pytest.approx(
            list(proportion_confint(fin, fin + orig, method="wilson")))

        # Krippendorff: annotators x examples matrix of category codes, NaN where missing.
        wide = part.pivot(index="annotator", columns="example_id", values="choice")
        codes = wide.replace({"original": 0, "neither": 1, "finetuned": 2}).astype(float).to_numpy()
        assert cell["krippendorff_alpha"] == pytest.approx(
            krippendorff.alpha(reliability_data=codes, level_of_measurement="nominal"))
        # Fleiss: examples rated by every annotator (the most common count here), via aggregate_raters.
        full = wide.T.dropna().replace({"original": 0, "neither": 1, "finetuned": 2}).astype(int).to_numpy()
        table, _ = aggregate_raters(full, n_cat=3)
        assert cell["fleiss_n_examples"] == len(full)
        assert cell["fleiss_kappa"] == pytest.approx(fleiss_kappa(table, method="fleiss"))
        assert any("Fleiss' kappa over the" in note for note in cell["notes"])

        # Sign test over per-example majorities of the decisive labels.
        per = part.groupby("example_id").choice.agg(lambda s: (s == "finetuned").sum() - (s == "original").sum())
        plus, minus = int((per > 0).sum()), int((per < 0).sum())
        assert (cell["sign_test"]["examples_finetuned"], cell["sign_test"]["examples_original"]) == (plus, minus)
        assert cell["sign_test"]["p_value"] == pytest.approx(binomtest(plus, plus + minus, 0.5).pvalue)

        # Majority vote with ties.
        def vote(s):
            top = s.value_counts()
            return "tie" if (top == top.max()).sum() > 1 else top.idxmax()
        votes = part.groupby("example_id").choice.agg(vote).value_counts()
        assert cell["majority"] == {k: int(votes.get(k, 0)) for k in ("original", "neither", "finetuned", "tie")}


def test_gain_regression_matches_label_level_logit():
    import statsmodels.api as sm

    rng = np.random.default_rng(7)
    rows = []
    for e in range(120):
        original, gain = rng.uniform(0.2, 0.6), rng.normal(0.05, 0.1)
        p_ft = 1 / (1 + np.exp(-(0.2 + 12 * gain)))
        for a in range(5):
            u = rng.random()
            choice = "neither" if u < 0.3 else ("finetuned" if rng.random() < p_ft else "original")
            rows.append({**CELL, "example_id": e, "annotator": f"a{a}", "choice": choice,
                         "original_score": original, "finetuned_score": original + gain})
    frame = pd.DataFrame(rows)
    cell = one_cell(analyze_labels(frame, FAST, higher_is_better={"rma": True}))
    decisive = frame[frame.choice != "neither"]
    y = (decisive.choice == "finetuned").astype(float).to_numpy()
    x = sm.add_constant((decisive.finetuned_score - decisive.original_score).to_numpy())
    fit = sm.Logit(y, x).fit(disp=0, cov_type="cluster", cov_kwds={"groups": decisive.example_id.to_numpy()})
    naive = sm.Logit(y, x).fit(disp=0)
    reg = cell["gain_regression"]
    assert reg["n_labels"] == len(decisive)
    assert reg["coefficient"] == pytest.approx(fit.params[1], rel=1e-5)
    assert reg["intercept"] == pytest.approx(fit.params[0], rel=1e-5)
    assert reg["std_error"] == pytest.approx(fit.bse[1], rel=1e-4)  # clustered by example
    assert reg["p_value"] == pytest.approx(fit.pvalues[1], rel=1e-3)
    assert reg["std_error_independent"] == pytest.approx(naive.bse[1], rel=1e-4)
    assert reg["std_error"] != pytest.approx(naive.bse[1], rel=1e-2)
    assert reg["coefficient"] > 0 and reg["p_value"] < 0.05
    # A lower-is-better metric: the same scores mean the opposite gain.
    flipped = one_cell(analyze_labels(frame, FAST, higher_is_better={"rma": False}))["gain_regression"]
    assert flipped["coefficient"] == pytest.approx(-reg["coefficient"], rel=1e-6)
    # No scores (an imported study): no regression at all.
    assert one_cell(analyze_labels(frame.drop(columns=["original_score", "finetuned_score"]), FAST))[
        "gain_regression"] is None


def test_gain_regression_undefined_cases_are_notes():
    frame = labels([(e, f"a{a}", "finetuned" if a else "original") for e in range(5) for a in range(3)],
                   original_score=0.5, finetuned_score=0.7)  # every example has the same gain
    cell = one_cell(analyze_labels(frame, FAST, higher_is_better={"rma": True}))
    assert cell["gain_regression"]["coefficient"] is None
    assert any("same metric gain" in n for n in cell["notes"])
    two = frame[frame.example_id < 2].assign(finetuned_score=lambda f: 0.5 + 0.1 * f.example_id)
    cell = one_cell(analyze_labels(two, FAST, higher_is_better={"rma": True}))
    assert cell["gain_regression"]["p_value"] is None
    assert any("clustered errors need at least 3" in n for n in cell["notes"])


def test_gain_regression_with_a_huge_odds_ratio_still_writes_valid_json():
    """One example with a gain far from the rest, all its labels fine-tuned, one opposite: the slope
    stays finite (about 10.9) but exp(slope * SD of the gain) overflows float64. The regression must
    stay valid JSON (no inf) and say why the odds ratio is missing; the slope is still reported."""
    from harmony_cli.analysis.regression import gain_regression

    gain = np.array([0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 1000.0, -0.5])
    finetuned = np.array([2, 3, 2, 3, 2, 3, 5, 0])
    original = np.array([3, 2, 3, 2, 3, 2, 0, 5])
    reg = gain_regression(gain, finetuned, original)
    json.dumps(reg, allow_nan=False)  # raises on inf / nan
    assert reg["coefficient"] > 0 and np.isfinite(reg["coefficient"])
    assert reg["odds_ratio_per_sd"] is None and any("too large" in n for n in reg["notes"])
    small = gain_regression(gain[:6], finetuned[:6], original[:6])  # no outlier: an odds ratio is reported
    assert small["odds_ratio_per_sd"] is not None and np.isfinite(small["odds_ratio_per_sd"])


@pytest.mark.parametrize("n_examples, annotators", [(150, 6), (3000, 3)])  # index draws / pattern draws
def test_cluster_bootstrap_equals_resampling_examples(n_examples, annotators):
    """Each cell's interval has the distribution of resampling the cell's examples with replacement."""
    rng = np.random.default_rng(1)
    n_ex = 2 * n_examples  # two cells of the same size (they share index draws)
    fin = rng.binomial(annotators, np.repeat([0.3, 0.6], n_examples) * rng.uniform(0.5, 1, n_ex))
    dec = fin + rng.binomial(annotators - fin, 0.4)
    cell = np.repeat([0, 1], n_examples)
    low, high = cluster_bootstrap_share(fin, dec, cell, 2, resamples=3000, confidence=0.9, seed=0)
    for c in range(2):
        f, d = fin[cell == c], dec[cell == c]
        idx = rng.integers(0, n_examples, size=(3000, n_examples))  # textbook: resample example indices
        ref_low, ref_high = np.quantile(f[idx].sum(1) / d[idx].sum(1), [0.05, 0.95])
        width = ref_high - ref_low
        assert low[c] == pytest.approx(ref_low, abs=0.1 * width) and high[c] == pytest.approx(ref_high, abs=0.1 * width)
        assert low[c] < f.sum() / d.sum() < high[c]
    again = cluster_bootstrap_share(fin, dec, cell, 2, resamples=3000, confidence=0.9, seed=0)
    assert np.array_equal(again[0], low) and np.array_equal(again[1], high)  # seeded


# --- report files and the command -------------------------------------------------------


def _report(frame, **kw) -> dict:
    return {"study": "s", "label_source": "real", "labels_left_out": 0, **analyze_labels(frame, FAST, **kw)}


def test_report_files_are_complete(tmp_path):
    from PIL import Image

    frame = random_labels(seed=5, examples=30)
    frame.loc[frame.attribution == "method0", "choice"] = "neither"  # an all-neither cell among others
    report = _report(frame)
    written = write_report(report, tmp_path / "rep")
    assert sorted(written) == ["cells.csv", "preferences.pdf", "preferences.png", "report.json", "report.md",
                               "report.tex"]  # no gain figure: these labels carry no metric scores
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["cells"][0]["fleiss_kappa"] is None and data["cells"][0]["notes"]
    csv = pd.read_csv(tmp_path / "rep" / "cells.csv")
    assert list(csv.attribution) == ["method0", "method1"]
    assert {"share_intervals_original_low", "decisive_bootstrap_interval_high", "majority_tie"} <= set(csv.columns)
    assert "| rma | tiny | method1 |" in (tmp_path / "rep" / "report.md").read_text()
    with Image.open(tmp_path / "rep" / "preferences.png") as image:
        assert image.size[0] > 600 and image.size[1] > 200
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_report_json_refuses_nan(tmp_path):
    report = _report(labels([(1, "a", "finetuned"), (1, "b", "original")]))
    report["cells"][0]["fleiss_kappa"] = float("nan")
    with pytest.raises(ValueError):
        write_report(report, tmp_path / "rep")
    assert not (tmp_path / "rep").exists()
