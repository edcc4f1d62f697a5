"""Per-cell statistics (harmony_cli/analysis/cells.py) on two hand-made cells whose counts, sign test,
majority votes, Holm families and notes are worked out by hand (p-values from scipy/statsmodels)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from harmony_cli.analysis import AnalysisSettings, analyze_labels

F, O, N = "finetuned", "original", "neither"
# cell "x": 12 examples x 3 annotators (a0, a1, a2)
X = [(F, F, O)] * 4 + [(O, O, N)] * 2 + [(F, O, N)] * 2 + [(N, N, F)] * 2 + [(F, O, O), (N, F, O)]
# cell "y": 3 examples x 2 annotators, half of the labels "neither"
Y = [(F, N), (O, N), (N, F)]
SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=200, min_decisive_bootstrap=27)


def frame() -> pd.DataFrame:
    rows = []
    for attribution, examples in (("x", X), ("y", Y)):
        for e, choices in enumerate(examples):
            for a, choice in enumerate(choices):
                rows.append({"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": attribution,
                             "example_id": f"{attribution}{e}", "annotator": f"a{a}", "choice": choice,
                             "original_score": 0.5, "finetuned_score": 0.5 + 0.01 * e * (1 if e % 3 else -1)})
    return pd.DataFrame(rows)


def cells(**kwargs) -> dict:
    report = analyze_labels(frame(), kwargs.pop("settings", SETTINGS), **kwargs)
    return {c["attribution"]: c for c in report["cells"]}


def test_cells_counts_sign_test_and_majority_by_hand():
    x, y = cells()["x"], cells()["y"]
    assert x["counts"] == {"original": 13, "neither": 9, "finetuned": 14} and x["n_labels"] == 36
    assert (x["n_examples_labelled"], x["n_annotators"], x["n_decisive"]) == (12, 3, 27)
    assert x["decisive_finetuned_share"] == pytest.approx(14 / 27)
    assert x["sign_test"]["examples_finetuned"] == 6 and x["sign_test"]["examples_original"] == 3
    assert x["sign_test"]["examples_even"] == 3
    assert x["majority"] == {"original": 3, "neither": 2, "finetuned": 4, "tie": 3}
    assert y["counts"] == {"original": 1, "neither": 3, "finetuned": 2}
    assert (y["n_examples_labelled"], y["n_annotators"], y["n_decisive"]) == (3, 2, 3)
    assert y["sign_test"] == {**y["sign_test"], "examples_finetuned": 2, "examples_original": 1, "examples_even": 0}
    assert y["majority"] == {"original": 0, "neither": 0, "finetuned": 0, "tie": 3}
    assert x["neither_dominant"] is False and y["neither_dominant"] is False  # 3/6 is not above 0.5


def test_cells_holm_families():
    x, y = cells()["x"], cells()["y"]
    # direction/equivalence: only cells with >= min_examples labelled examples are tested
    assert x["direction_test"]["p_value_holm"] == pytest.approx(x["direction_test"]["p_value"])
    assert x["equivalence_test"]["p_value_holm"] == pytest.approx(x["equivalence_test"]["p_value"])
    assert y["direction_test"]["p_value"] is not None and y["direction_test"]["p_value_holm"] is None
    assert y["equivalence_test"]["p_value_holm"] is None
    # label-level binomial and sign tests: Holm over every cell
    binom = [binomtest(14, 27).pvalue, binomtest(2, 3).pvalue]
    got = [c["secondary_label_level_binomial"] for c in (x, y)]
    assert [g["p_value"] for g in got] == pytest.approx(binom)
    assert [g["p_value_holm"] for g in got] == pytest.approx(list(multipletests(binom, method="holm")[1]))
    sign = [binomtest(6, 9).pvalue, binomtest(2, 3).pvalue]
    assert [c["sign_test"]["p_value"] for c in (x, y)] == pytest.approx(sign)
    assert [c["sign_test"]["p_value_holm"] for c in (x, y)] == pytest.approx(list(multipletests(sign, method="holm")[1]))
    both = cells(settings=AnalysisSettings.defaults(bootstrap_resamples=0, min_examples=3))
    raw = [both[c]["direction_test"]["p_value"] for c in "xy"]
    assert [both[c]["direction_test"]["p_value_holm"] for c in "xy"] == pytest.approx(
        list(multipletests(raw, method="holm")[1]))


def test_cells_notes_and_the_bootstrap_threshold():
    x, y = cells()["x"], cells()["y"]
    assert x["decisive_bootstrap_interval"] is not None  # 27 decisive labels = min_decisive_bootstrap
    assert not any("bootstrap" in note for note in x["notes"])
    assert y["decisive_bootstrap_interval"] is None
    assert "no bootstrap interval: 3 decisive labels, fewer than min_decisive_bootstrap 27" in y["notes"]
    assert ("3 labelled examples (< min_examples 10): no direction or equivalence verdict; the cell is left out of "
            "their Holm families") in y["notes"]
    none = cells(settings=AnalysisSettings.defaults(bootstrap_resamples=0, min_decisive_bootstrap=1))["x"]
    assert "no bootstrap interval (analysis.settings.bootstrap_resamples is 0)" in none["notes"]
    only_neither = frame().assign(choice=N)
    cell = {c["attribution"]: c for c in analyze_labels(only_neither, SETTINGS)["cells"]}["x"]
    assert cell["notes"][0] == ("no decisive label (every label is 'neither'): the net preference and its tests "
                                "are undefined")
    assert not any("bootstrap" in note for note in cell["notes"])


def test_cells_notes_of_an_empty_cell_and_of_two_examples():
    study_cells = pd.DataFrame([{"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": a,
                                 "examples": n} for a, n in (("x", 12), ("y", 3), ("unlabelled", 5))])
    got = {c["attribution"]: c for c in analyze_labels(frame(), SETTINGS, cells=study_cells)["cells"]}
    assert got["unlabelled"]["notes"][0] == "no labels in this cell: every statistic is undefined"
    assert got["unlabelled"]["neither_dominant"] is False
    assert got["y"]["notes"][0].startswith("3 labelled examples")  # one label or more: not "no labels"
    two = frame()[lambda f: f.example_id != "y2"]
    y = {c["attribution"]: c for c in analyze_labels(two, AnalysisSettings.defaults(bootstrap_resamples=0, min_examples=2))
         ["cells"]}["y"]
    assert y["n_examples_labelled"] == 2 and not any("labelled examples (<" in note for note in y["notes"])
    assert y["direction_test"]["p_value"] is not None and y["direction_test"]["p_value_holm"] is not None
    single = frame()[lambda f: (f.attribution == "x") | (f.example_id == "y0")]
    y = {c["attribution"]: c for c in analyze_labels(single, AnalysisSettings.defaults(bootstrap_resamples=0, min_examples=1))
         ["cells"]}["y"]
    assert "1 labelled examples (< min_examples 1)" in y["notes"][0]  # never fewer than two for the tests
    assert y["n_annotators"] == 2  # each gave one label here


def test_cells_bootstrap_from_one_decisive_label_and_its_two_bounds():
    one = frame()[lambda f: (f.attribution == "x") | (f.example_id == "y0")]  # y: one decisive label
    for least in (0, 1):
        settings = AnalysisSettings.defaults(bootstrap_resamples=200, min_decisive_bootstrap=least)
        y = {c["attribution"]: c for c in analyze_labels(one, settings)["cells"]}["y"]
        assert y["n_decisive"] == 1 and y["decisive_bootstrap_interval"] is not None
    y = {c["attribution"]: c for c in analyze_labels(one, SETTINGS)["cells"]}["y"]
    assert "no bootstrap interval: 1 decisive labels, fewer than min_decisive_bootstrap 27" in y["notes"]
    low, high = cells()["x"]["decisive_bootstrap_interval"]
    assert 0 < low < 14 / 27 < high < 1


def test_cells_metric_gain_follows_the_metric_direction():
    gains = [0.01 * e * (1 if e % 3 else -1) for e in range(12)]
    higher = cells(higher_is_better={"rma": True})["x"]["gain_regression"]
    lower = cells(higher_is_better={"rma": False})["x"]["gain_regression"]
    unknown = cells()["x"]["gain_regression"]
    assert higher["mean_gain"] == pytest.approx(np.mean(gains)) and higher["higher_is_better"] is True
    assert lower["mean_gain"] == pytest.approx(-np.mean(gains)) and lower["higher_is_better"] is False
    assert unknown["higher_is_better"] is True and unknown["mean_gain"] == pytest.approx(np.mean(gains))
    assert any("records no direction for metric 'rma'" in note for note in cells()["x"]["notes"])
    assert not any("records no direction" in note for note in cells(higher_is_better={"rma": True})["x"]["notes"])
    higher_bins = [b["mean_gain"] for b in higher["bins"]]
    assert min(gains) <= min(higher_bins) and max(higher_bins) <= max(gains) and higher_bins == sorted(higher_bins)
    assert [b["mean_gain"] for b in lower["bins"]] == pytest.approx([-g for g in reversed(higher_bins)])
    if higher["coefficient"] is not None:
        assert lower["coefficient"] == pytest.approx(-higher["coefficient"], rel=1e-6)
    regressions = [c["gain_regression"] for c in cells(higher_is_better={"rma": True}).values()]
    defined = [r for r in regressions if r["p_value"] is not None]
    assert defined, "no cell has a defined gain regression: the Holm check would prove nothing"
    assert [r["p_value_holm"] for r in defined] == pytest.approx(
        list(multipletests([r["p_value"] for r in defined], method="holm")[1]))
    assert all(r["p_value_holm"] is None for r in regressions if r["p_value"] is None)
    unscored = frame().assign(original_score=np.nan)
    assert {c["attribution"]: c for c in analyze_labels(unscored, SETTINGS)["cells"]}["x"]["gain_regression"] is None
