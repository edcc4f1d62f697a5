"""The verdict rule and the label-level statistics at their edges (each boundary of the pre-registered
rule on its exact value; NaN and empty inputs), against hand-written expectations or scipy/statsmodels
called directly."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harmony_cli.analysis.settings import AnalysisSettings
from harmony_cli.analysis.significance import binomial_p, binomial_p_many, holm, wilson_interval
from harmony_cli.analysis.verdict import verdict_detail, verdicts


def rule(settings=AnalysisSettings.defaults(), **columns):
    """verdicts() for cells given column-wise; unset columns take a clearly aligned cell's value."""
    n = max(len(v) for v in columns.values())
    base = dict(decisive_low=0.3, decisive_high=0.6, delta=0.2, p_direction_holm=0.001,
                p_equivalence_holm=0.9, n_examples=50)
    arrays = {k: np.array(columns.get(k, [v] * n), dtype=float) for k, v in base.items()}
    return list(verdicts(settings=settings, **arrays))


def test_verdict_decisive_rate_bounds_at_the_margin_exactly():
    # upper bound == margin: not below it, so not imperceptible; lower bound == margin: perceptible
    assert rule(decisive_high=[0.10, 0.0999], decisive_low=[0.05, 0.05]) == ["inconclusive", "imperceptible"]
    assert rule(decisive_low=[0.10, 0.0999]) == ["aligned", "inconclusive"]
    margin = AnalysisSettings.defaults(perceptibility_margin=0.3)
    assert rule(margin, decisive_low=[0.3, 0.29], decisive_high=[0.5, 0.5]) == ["aligned", "inconclusive"]
    assert rule(margin, decisive_low=[0.1], decisive_high=[0.29]) == ["imperceptible"]


def test_verdict_needs_min_examples_and_never_fewer_than_two():
    assert rule(n_examples=[10, 9]) == ["aligned", "inconclusive"]
    assert rule(AnalysisSettings.defaults(min_examples=1), n_examples=[1, 2]) == ["inconclusive", "aligned"]
    assert rule(AnalysisSettings.defaults(min_examples=0), n_examples=[1, 2, 0]) == ["inconclusive", "aligned", "inconclusive"]
    # fewer examples never hide imperceptibility
    assert rule(n_examples=[3], decisive_low=[0.0], decisive_high=[0.05]) == ["imperceptible"]


def test_verdict_p_at_alpha_is_not_significant():
    assert rule(p_direction_holm=[0.05, 0.0499]) == ["inconclusive", "aligned"]
    assert rule(p_direction_holm=[0.5, 0.5], p_equivalence_holm=[0.05, 0.0499]) == ["inconclusive", "no_preference"]
    assert rule(AnalysisSettings.defaults(alpha=0.2), p_direction_holm=[0.19, 0.2]) == ["aligned", "inconclusive"]


def test_verdict_sign_zero_and_undefined_figures():
    assert rule(delta=[0.2, -0.2, 0.0]) == ["aligned", "misaligned", "inconclusive"]
    # a zero net preference is never directional, even when its test passes; equivalence may still hold
    assert rule(delta=[0.0], p_equivalence_holm=[0.01]) == ["no_preference"]
    # a directional cell is not also "no preference" (both tests passing: the direction wins)
    assert rule(delta=[0.05, -0.05], p_equivalence_holm=[0.01, 0.01]) == ["aligned", "misaligned"]
    # an undefined net preference with passing tests: neither a direction nor an equivalence
    assert rule(delta=[math.nan], p_equivalence_holm=[0.01]) == ["inconclusive"]
    # undefined p-values never pass
    assert rule(p_direction_holm=[math.nan], p_equivalence_holm=[math.nan]) == ["inconclusive"]
    assert rule(decisive_low=[math.nan], decisive_high=[math.nan]) == ["inconclusive"]


def cell(**changes) -> dict:
    row = {"decisive_rate": 0.4, "net_preference": 0.25, "decisive_rate_interval": [0.3, 0.5],
           "direction_test": {"p_value_holm": 0.0123}, "equivalence_test": {"p_value_holm": 0.7},
           "n_examples_labelled": 40, "neither_dominant": False}
    return {**row, **changes}


def test_verdict_detail_says_why_for_each_verdict():
    s = AnalysisSettings.defaults()
    assert verdict_detail("aligned", cell(), s) == (
        "d = 40% [30%, 50%]; people prefer the fine-tuned maps: net preference +25%, clustered Holm p = 0.012 "
        "< 0.05.")
    assert verdict_detail("misaligned", cell(net_preference=-0.25), s) == (
        "d = 40% [30%, 50%]; people prefer the original maps: net preference -25%, clustered Holm p = 0.012 "
        "< 0.05.")
    assert verdict_detail("imperceptible", cell(decisive_rate=0.05, decisive_rate_interval=[0.01, 0.08]), s) == (
        "d = 5% [1%, 8%]: its upper bound is below the perceptibility margin 10%.")
    assert verdict_detail("inconclusive", cell(n_examples_labelled=9), s) == (
        "d = 40% [30%, 50%]; 9 labelled examples, fewer than min_examples 10.")
    assert verdict_detail("inconclusive", cell(n_examples_labelled=10), s).endswith(
        "net preference +25%: direction Holm p = 0.012, equivalence Holm p = 0.7.")
    assert verdict_detail("inconclusive", cell(n_examples_labelled=1), AnalysisSettings.defaults(min_examples=1)) == (
        "d = 40% [30%, 50%]; 1 labelled examples, fewer than min_examples 1.")
    assert "fewer than" not in verdict_detail("inconclusive", cell(n_examples_labelled=2), AnalysisSettings.defaults(min_examples=1))
    eq = cell(net_preference=0.02, preference=0.53, equivalence_test={"p_value_holm": 0.004}, neither_dominant=True)
    assert verdict_detail("no_preference", eq, s) == (
        "d = 40% [30%, 50%]; fine-tuned share of decisive labels 53% is within 50% +-10% (TOST Holm p = 0.004 "
        "< 0.05). Neither dominant.")
    assert verdict_detail("aligned", cell(), s, "these_annotators") == (
        "d = 40% [30%, 50%]; these annotators prefer the fine-tuned maps: net preference +25%, clustered Holm "
        "p = 0.012 < 0.05.")


def test_verdict_detail_names_a_faint_direction_and_too_few_annotators():
    s = AnalysisSettings.defaults()
    faint = cell(decisive_rate=0.05, decisive_rate_interval=[0.03, 0.08], net_preference=-0.04,
                 faint_direction="original")
    assert verdict_detail("imperceptible", faint, s) == (
        "d = 5% [3%, 8%]: its upper bound is below the perceptibility margin 10%; a faint preference for the "
        "original maps (net -4%, Holm p = 0.012 < 0.05).")
    alone = cell(decisive_rate_interval=None, n_annotators=1)
    assert verdict_detail("inconclusive", alone, s, "people") == (
        "1 annotator(s): too few for any verdict about people.")
    assert "too few" not in verdict_detail("inconclusive", alone, s, "these_annotators")


def test_faint_directions_only_where_imperceptible_and_significant():
    from harmony_cli.analysis.verdict import faint_directions

    got = faint_directions(np.array(["imperceptible", "imperceptible", "imperceptible", "aligned", "imperceptible"]),
                           delta=np.array([0.02, -0.03, 0.02, 0.3, np.nan]),
                           p_direction_holm=np.array([0.01, 0.001, 0.05, 0.001, np.nan]),
                           settings=AnalysisSettings.defaults())
    assert got == ["finetuned", "original", None, None, None]  # p at alpha is not significant
    # a zero net preference has no side, even when its test passes (as verdicts() never calls it directional)
    zero = faint_directions(np.array(["imperceptible"]), delta=np.array([0.0]), p_direction_holm=np.array([0.001]),
                            settings=AnalysisSettings.defaults())
    assert zero == [None]


def test_verdict_detail_of_an_inconclusive_cell_says_whether_it_was_perceptible():
    s = AnalysisSettings.defaults()
    low = cell(decisive_rate_interval=[0.05, 0.5], direction_test={"p_value_holm": None},
               net_preference=None)
    assert verdict_detail("inconclusive", low, s) == (
        "d = 40% [5%, 50%] (not shown perceptible: lower bound below 10%); net preference undefined: "
        "direction Holm p = undefined, equivalence Holm p = 0.7.")
    at_margin = cell(decisive_rate_interval=[0.10, 0.5])
    assert "not shown perceptible" not in verdict_detail("inconclusive", at_margin, s)
    none = cell(decisive_rate=None, n_examples_labelled=0)
    assert verdict_detail("inconclusive", none, s) == "no labels; 0 labelled examples, fewer than min_examples 10."


def test_wilson_intervals_match_statsmodels_and_are_undefined_without_labels():
    from statsmodels.stats.proportion import proportion_confint

    low, high = wilson_interval([3, 0, 7, 5], [10, 0, 7, 20], confidence=0.9)
    for i, (k, n) in enumerate(((3, 10), (7, 7), (5, 20))):
        j = (0, 2, 3)[i]
        assert (low[j], high[j]) == pytest.approx(proportion_confint(k, n, alpha=0.1, method="wilson"))
    assert math.isnan(low[1]) and math.isnan(high[1])
    # a design-effect-corrected (effective) sample size may be fractional, even below one
    low, high = wilson_interval([0.3, 1.2], [0.6, 1.5], confidence=0.95)
    assert (low[0], high[0]) == pytest.approx(proportion_confint(0.3, 0.6, alpha=0.05, method="wilson"))
    assert (low[1], high[1]) == pytest.approx(proportion_confint(1.2, 1.5, alpha=0.05, method="wilson"))


def test_binomial_p_values_match_scipy_binomtest():
    from scipy.stats import binomtest

    # (3, 6), (15, 30): k = n / 2, where 2 * P(X <= k) exceeds 1 and the p-value is capped at 1
    pairs = [(0, 1), (1, 1), (0, 5), (2, 5), (3, 5), (5, 5), (3, 6), (4, 9), (7, 9), (12, 30), (15, 30), (20, 30)]
    expected = [binomtest(k, n, 0.5).pvalue for k, n in pairs]
    assert [binomial_p(k, n) for k, n in pairs] == pytest.approx(expected)
    many = binomial_p_many([k for k, _ in pairs] + [0], [n for _, n in pairs] + [0])
    assert list(many[:-1]) == pytest.approx(expected) and math.isnan(many[-1])
    assert math.isnan(binomial_p(0, 0))
    assert binomial_p(1, 5) == pytest.approx(12 / 32) and binomial_p(0, 5) == pytest.approx(2 / 32)  # by hand


def test_holm_leaves_undefined_p_values_out_of_the_family():
    from statsmodels.stats.multitest import multipletests

    raw = [0.01, math.nan, 0.04, 0.03, math.nan]
    got = holm(raw)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert list(got[[0, 2, 3]]) == pytest.approx(list(expected))
    assert math.isnan(got[1]) and math.isnan(got[4])
    assert np.isnan(holm([math.nan, math.nan])).all()


# ----------------------------------------------------------------------------- agreement


def test_agreement_uses_examples_with_two_or_more_labels_against_the_libraries():
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    from harmony_cli.analysis.agreement import agreement

    # columns: original, neither, finetuned (cells.REPORT_ORDER); the last two rows have one and no label
    table = np.array([[2, 0, 0], [1, 1, 0], [0, 2, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    got = agreement(table)
    paired = table[:4]
    assert got["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(value_counts=paired, level_of_measurement="nominal"))
    assert got["fleiss_kappa"] == pytest.approx(fleiss_kappa(paired, method="fleiss"))
    assert got["fleiss_n_examples"] == 4 and got["notes"] == []
    two_choices = np.array([[2, 0, 0], [1, 1, 0], [0, 2, 0]])  # "finetuned" never chosen: kappa still defined
    assert agreement(two_choices)["fleiss_kappa"] == pytest.approx(fleiss_kappa(two_choices, method="fleiss"))


def test_agreement_fleiss_over_the_most_common_label_count():
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    from harmony_cli.analysis.agreement import agreement

    table = np.array([[3, 0, 0], [1, 2, 0], [0, 1, 2], [2, 0, 0], [1, 1, 0]])  # three with 3 labels, two with 2
    got = agreement(table)
    assert got["fleiss_kappa"] == pytest.approx(fleiss_kappa(table[:3], method="fleiss"))
    assert got["fleiss_n_examples"] == 3
    assert got["krippendorff_alpha"] == pytest.approx(
        krippendorff.alpha(value_counts=table, level_of_measurement="nominal"))
    assert got["notes"] == ["Fleiss' kappa over the 3 of 5 examples with 3 labels each (it needs equal counts); "
                            "Krippendorff's alpha uses all"]


def test_agreement_undefined_cases_say_why():
    from harmony_cli.analysis.agreement import agreement

    none = agreement(np.array([[1, 0, 0], [0, 1, 0]]))
    assert (none["fleiss_kappa"], none["krippendorff_alpha"], none["fleiss_n_examples"]) == (None, None, 0)
    assert none["notes"] == ["agreement undefined: no example has two or more labels"]
    # every paired label is "neither", but a single-label example says "original"
    one = agreement(np.array([[0, 0, 2], [0, 0, 3], [1, 0, 0]]))
    assert one["notes"] == ["agreement undefined: every label on examples with two or more labels is 'finetuned' "
                            "(no variation to agree beyond chance on)"]
    everywhere = agreement(np.array([[0, 2, 0], [0, 3, 0]]))
    assert everywhere["notes"][0].startswith("agreement undefined: every label is 'neither'")
    # the 2-label examples (the most common count) agree on one label: kappa undefined, alpha defined
    split = agreement(np.array([[2, 0, 0], [2, 0, 0], [1, 2, 0]]))
    assert split["fleiss_kappa"] is None and split["krippendorff_alpha"] is not None
    assert split["notes"][-1] == "Fleiss' kappa undefined: the 2 examples with 2 labels all carry the same label"


def test_majority_votes_by_hand():
    from harmony_cli.analysis.agreement import majority_votes

    counts = np.array([[2, 1, 0], [0, 3, 1], [0, 0, 1], [1, 1, 0], [1, 1, 1], [0, 0, 0], [0, 2, 2]])
    assert list(majority_votes(counts)) == [0, 1, 2, 3, 3, -1, 3]


def test_verdict_tally_counts_each_inference_the_chosen_first():
    from harmony_cli.analysis.verdict import VERDICTS, inference_label, verdict_tally

    assert inference_label("people", 5) == "for people"
    assert inference_label("these_annotators", 5) == "for these 5 annotators"
    pairs = [("inconclusive", "aligned"), ("inconclusive", "aligned"), ("aligned", "aligned"),
             ("imperceptible", "imperceptible"), ("no_preference", "misaligned")]  # (people, these annotators)
    report = {"settings": {"generalize": "these_annotators"}, "n_annotators": 3,
              "cells": [{"verdicts": {"people": p, "these_annotators": t}} for p, t in pairs]}
    zero = dict.fromkeys(VERDICTS, 0)
    tally = verdict_tally(report)
    assert list(tally) == ["for these 3 annotators", "for people"]
    assert tally["for these 3 annotators"] == {**zero, "aligned": 3, "imperceptible": 1, "misaligned": 1}
    assert tally["for people"] == {**zero, "inconclusive": 2, "aligned": 1, "imperceptible": 1, "no_preference": 1}
    report["settings"]["generalize"] = "people"
    assert list(verdict_tally(report)) == ["for people", "for these 3 annotators"]
