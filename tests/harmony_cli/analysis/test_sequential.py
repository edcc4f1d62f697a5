"""The sequential verdict rule: its boundaries against gsDesign's published ones and a Brownian-motion
simulation, and its error under no effect when looked at after every 10 labels, against the fixed rule
looked at the same way (the peeking problem, shown to be real). The data-generating process is written
out here, independent of harmony's simulators."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import norm

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.analysis.clustered import clustered_shares, crossed_shares
from harmony_cli.analysis.encoding import FINETUNED, NEITHER, ORIGINAL
from harmony_cli.analysis.sequential import (UNDECIDED, SequentialDesign, cell_decision, label_tables, look_verdicts,
                                             replay, spending_boundaries)
from harmony_cli.analysis.significance import wilson_interval
from harmony_cli.analysis.verdict import verdicts
from harmony_cli.errors import UserError

SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=0)
DIRECTIONAL = ["aligned", "misaligned"]


def page_order_labels(rng, studies: int, examples: int = 60, annotators: int = 8, per_example: int = 5,
                      effect: float = 0.0, example_sd: float = 1.0, annotator_sd: float = 0.7, neither: float = 0.3):
    """Labels of ``studies`` one-cell studies, in the order the page hands them out (every example once, then
    every example a second time, ...; example j's r-th label from annotator (j + r) mod A, so never twice).

    Among decisive labels, P(fine-tuned) = expit(effect + b_j + u_i): example leaning b_j ~ N(0, example_sd^2),
    annotator leaning u_i ~ N(0, annotator_sd^2); Neither with probability ``neither``. With effect 0 neither
    map is preferred by people in general, though these annotators and examples lean one way or the other.
    Returns (study, example, annotator, choice) per label, (L,) each, examples and annotators numbered apart
    per study.
    """
    example_leaning = rng.normal(0, example_sd, (studies, examples))
    annotator_leaning = rng.normal(0, annotator_sd, (studies, annotators))
    rounds, example = np.meshgrid(np.arange(per_example), np.arange(examples), indexing="ij")
    annotator = (example + rounds) % annotators
    study = np.repeat(np.arange(studies), examples * per_example)
    example, annotator = np.tile(example.ravel(), studies), np.tile(annotator.ravel(), studies)
    p_finetuned = expit(effect + example_leaning[study, example] + annotator_leaning[study, annotator])
    u = rng.random((2, len(study)))
    choice = np.where(u[0] < neither, NEITHER, np.where(u[1] < p_finetuned, FINETUNED, ORIGINAL))
    return study, study * examples + example, study * annotators + annotator, choice


def test_boundaries_equal_gsdesigns_published_obrien_fleming_spending():
    # gsDesign(k = 5, test.type = 2, alpha = 0.025, sfu = sfLDOF)$upper$bound (gsDesign's manual): the symmetric
    # two-sided 5% boundaries of Lan-DeMets O'Brien-Fleming spending at five equally spaced looks.
    published = [4.8769, 3.3569, 2.6803, 2.2898, 2.0310]
    assert spending_boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05) == pytest.approx(published, abs=5e-4)
    assert spending_boundaries((1.0,), 0.05)[0] == pytest.approx(norm.isf(0.025), abs=1e-9)


def test_boundaries_spend_alpha_as_the_spending_function_says_on_brownian_motion():
    design = SequentialDesign(max_labels=95, look_every=10)     # ten looks, the last one shorter
    t = np.array(design.fractions())
    bounds = spending_boundaries(tuple(t), 0.05)
    rng = np.random.default_rng(0)
    increments = rng.normal(0, 1, (400_000, len(t))) * np.sqrt(np.diff(np.concatenate([[0], t])))
    z = np.cumsum(increments, 1) / np.sqrt(t)                   # Z_k of a Brownian motion at the fractions
    crossed_by = np.maximum.accumulate(np.abs(z) >= bounds, axis=1).mean(0)
    spent = 2 * (2 - 2 * norm.cdf(norm.isf(0.05 / 4) / np.sqrt(t)))    # alpha(t) on both sides, written out
    se = np.sqrt(spent * (1 - spent) / len(z))
    assert np.all(np.abs(crossed_by - spent) < 4 * se + 1e-4), (crossed_by, spent)
    assert crossed_by[-1] == pytest.approx(0.05, abs=0.002)


def test_design_counts_looks_and_labels():
    design = SequentialDesign(max_labels=95, look_every=10)
    assert design.n_looks == 10
    assert [design.look_at(n) for n in (0, 9, 10, 19, 94, 95, 500)] == [0, 0, 1, 1, 9, 10, 10]
    assert [design.labels_at(k) for k in (1, 9, 10)] == [10, 90, 95]


def test_design_from_a_study_config_and_bad_values():
    assert SequentialDesign.from_config({"design": "fixed"}, 200, 5) is None
    assert SequentialDesign.from_config({}, 200, 5) is None
    assert SequentialDesign.from_config({"design": "sequential", "sequential": {"max_labels_per_cell": None,
                                                                                 "look_every": 10}}, 200, 5) \
        == SequentialDesign(max_labels=1000, look_every=10)
    assert SequentialDesign.from_config({"design": "sequential", "sequential": {"max_labels_per_cell": 300,
                                                                                 "look_every": 25}}, 200, 5) \
        == SequentialDesign(max_labels=300, look_every=25)
    with pytest.raises(UserError, match="study.design"):
        SequentialDesign.from_config({"design": "adaptive"}, 200, 5)
    with pytest.raises(UserError, match="study.sequential.look_every"):
        SequentialDesign(max_labels=100, look_every=0)


def test_a_design_takes_any_whole_number_from_one_and_nothing_else():
    assert SequentialDesign(max_labels=1, look_every=1).n_looks == 1  # the smallest design: one label, one look
    assert SequentialDesign(max_labels=np.int64(20), look_every=np.int64(5)).n_looks == 4  # counts from NumPy
    for name in ("max_labels", "look_every"):
        for bad in (0, -3, True, 2.5, "10"):
            sizes = {"max_labels": 100, "look_every": 10, name: bad}
            with pytest.raises(UserError, match=f"study.sequential.{name}"):
                SequentialDesign(**sizes)


def test_one_look_at_the_end_is_the_fixed_rule():
    """A design with a single look spends all of alpha there: its verdicts are the fixed rule's (one cell each)."""
    rng = np.random.default_rng(3)
    study, example, annotator, choice = page_order_labels(rng, 300, examples=30, effect=0.4)
    design = SequentialDesign(max_labels=150, look_every=150)
    got = look_verdicts(study, example, annotator, choice, 300, 1, design, SETTINGS, family=1)
    e, ec, a, ac = label_tables(study, example, annotator, choice, 300)
    fig = crossed_shares(e, ec, a, ac, 300, SETTINGS.confidence, SETTINGS.equivalence_margin)
    fixed = verdicts(fig.decisive_low, fig.decisive_high, fig.delta, fig.p_direction, fig.p_equivalence,
                     fig.n_examples, SETTINGS)
    assert len(set(fixed)) >= 2 and list(got) == list(fixed)


def error_rates(generalize: str, annotator_sd: float, studies: int = 1000, per_study: int = 300):
    """Under no effect, the share of studies declared aligned or misaligned: (sequential, the fixed rule looked at
    after every 10 labels, the fixed rule looked at once at the end), and the number of studies."""
    settings = AnalysisSettings.defaults(bootstrap_resamples=0, generalize=generalize)
    study, example, annotator, choice = page_order_labels(np.random.default_rng(7), studies,
                                                          annotator_sd=annotator_sd)
    stops = replay(study, example, annotator, choice, studies, SequentialDesign(per_study, 10), settings, family=1)
    rank = np.tile(np.arange(per_study), studies)
    ever = np.zeros(studies, dtype=bool)
    for seen_labels in range(10, per_study + 1, 10):
        seen = rank < seen_labels
        e, ec, a, ac = label_tables(study[seen], example[seen], annotator[seen], choice[seen], studies)
        fig = (crossed_shares(e, ec, a, ac, studies, settings.confidence, settings.equivalence_margin)
               if generalize == "people" else
               clustered_shares(e, ec, studies, settings.confidence, settings.equivalence_margin))
        fixed = np.isin(verdicts(fig.decisive_low, fig.decisive_high, fig.delta, fig.p_direction, fig.p_equivalence,
                                 fig.n_examples, settings), DIRECTIONAL)
        ever |= fixed
    rates = np.array([np.isin(stops.verdict, DIRECTIONAL).sum(), ever.sum(), fixed.sum()])
    low, high = wilson_interval(rates, np.full(3, studies), 0.95)
    print(f"\n{generalize}, no effect, looks every 10 labels, P(ever aligned or misaligned) (Monte Carlo 95% Wilson, "
          f"{studies} studies): " + ", ".join(f"{name} {r / studies:.3f} [{lo:.3f}, {hi:.3f}]" for name, r, lo, hi in
                                              zip(("sequential", "fixed rule peeking", "fixed rule at the end"),
                                                  rates, low, high)))
    return rates / studies, low, high


def test_no_effect_with_annotator_and_example_variation_sequential_keeps_alpha_and_peeking_at_fixed_does_not():
    rate, low, _ = error_rates("people", annotator_sd=0.7)
    assert rate[0] <= SETTINGS.alpha
    assert low[1] > SETTINGS.alpha       # the problem is real: peeking at the fixed rule inflates its error


def test_no_effect_for_these_annotators_sequential_adds_no_error_to_one_final_look():
    """The example-clustered t test is itself a little liberal on these binary labels (about 5.5% at one look),
    so the claim here is relative: monitoring adds nothing to the inference's own error; peeking does."""
    rate, low, high = error_rates("these_annotators", annotator_sd=0.0)
    assert rate[0] <= high[2]            # within Monte Carlo error of one final look
    assert low[1] > high[2]


def test_a_clear_effect_stops_early_in_its_direction():
    studies = 300
    study, example, annotator, choice = page_order_labels(np.random.default_rng(11), studies, effect=2.0)
    design = SequentialDesign(300, 10)
    stops = replay(study, example, annotator, choice, studies, design, SETTINGS, family=1)
    assert np.mean(stops.verdict == "aligned") > 0.95
    assert not np.any(stops.verdict == "misaligned")
    assert stops.labels.mean() < 0.6 * design.max_labels
    assert set(stops.labels[stops.verdict == "aligned"] % 10) == {0}   # decided at looks only


def test_replay_follows_the_order_labels_were_given_in():
    """A cell whose first half says fine-tuned and second half original stops aligned; reversed, misaligned."""
    n = 100
    example, annotator = np.arange(n) // 2, np.arange(n) % 10
    choice = np.where(example < n // 4, FINETUNED, ORIGINAL)          # the first 50 labels (25 examples)
    design = SequentialDesign(n, 10)
    forward = replay(np.zeros(n, int), example, annotator, choice, 1, design, SETTINGS, family=1)
    backward = replay(np.zeros(n, int), example[::-1], annotator[::-1], choice[::-1], 1, design, SETTINGS, family=1)
    assert forward.verdict[0] == "aligned" and backward.verdict[0] == "misaligned"
    assert forward.labels[0] == backward.labels[0] <= n // 2


def test_a_larger_family_decides_later():
    studies = 200
    study, example, annotator, choice = page_order_labels(np.random.default_rng(5), studies, effect=1.0)
    design = SequentialDesign(300, 10)
    alone = replay(study, example, annotator, choice, studies, design, SETTINGS, family=1)
    among = replay(study, example, annotator, choice, studies, design, SETTINGS, family=20)
    assert np.all(among.labels >= alone.labels) and among.labels.mean() > alone.labels.mean()


def test_cell_decision_is_undecided_before_the_last_look_and_never_after():
    rng = np.random.default_rng(2)
    _, example, annotator, choice = page_order_labels(rng, 1, examples=20, effect=0.0, neither=0.5)
    design = SequentialDesign(100, 10)
    assert cell_decision(example[:9], annotator[:9], choice[:9], design, SETTINGS, 1) == (UNDECIDED, 0)
    for n in range(10, 100, 10):
        verdict, look = cell_decision(example[:n], annotator[:n], choice[:n], design, SETTINGS, 1)
        assert look == n // 10 and verdict != "inconclusive"
    verdict, look = cell_decision(example, annotator, choice, design, SETTINGS, 1)
    assert look == 10 and verdict != UNDECIDED
    one_cell = look_verdicts(np.zeros(100, int), example, annotator, choice, 1, 10, design, SETTINGS, 1)
    assert verdict == one_cell[0]
