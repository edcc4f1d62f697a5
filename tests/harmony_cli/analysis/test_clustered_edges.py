"""The example-clustered figures (harmony_cli/analysis/clustered.py) on count tables small enough to
work out by hand: the sandwich variance, the design effect and its floor, the zero-variance tests,
and what is undefined. Normal quantiles and Wilson intervals come from scipy/statsmodels directly."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from harmony_cli.analysis.clustered import clustered_shares, decisive_rate_interval, net_preference_tests

# count columns: original, neither, finetuned (harmony_cli.cells.REPORT_ORDER)
# cell 0: A 2 fine-tuned; B 1 original + 1 fine-tuned; C 2 neither
HAND = np.array([[0, 0, 2], [1, 0, 1], [0, 2, 0]])


def test_clustered_net_preference_by_hand():
    # delta = 2 / 6; residuals per example 4/3, -2/3, -2/3; variance = 3/2 * (24/9) / 36 = 1/9
    delta, se, low, high, p, p_tost = net_preference_tests(HAND, np.zeros(3, int), 1, 0.95, margin=0.1)
    assert delta[0] == pytest.approx(1 / 3) and se[0] == pytest.approx(1 / 3)
    z = norm.ppf(0.975)
    assert (low[0], high[0]) == pytest.approx((1 / 3 - z / 3, 1 / 3 + z / 3))
    assert p[0] == pytest.approx(2 * norm.sf(1.0))
    # TOST: H0 delta <= -0.1 gives sf((1/3 + 0.1) * 3); H0 delta >= 0.1 gives sf((0.1 - 1/3) * 3): the larger
    assert p_tost[0] == pytest.approx(max(norm.sf(1.3), norm.sf(-0.7)))
    _, _, low90, high90, _, _ = net_preference_tests(HAND, np.zeros(3, int), 1, 0.90, margin=0.1)
    assert high90[0] - low90[0] == pytest.approx(2 * norm.ppf(0.95) / 3)


def test_clustered_net_preference_with_zero_variance_and_undefined_cells():
    counts = np.array([[0, 0, 2], [0, 0, 2],      # cell 0: every label fine-tuned: delta 1, se 0
                       [1, 0, 1], [1, 0, 1],      # cell 1: every example nets 0: delta 0, se 0
                       [0, 0, 1], [0, 1, 0],      # cell 2: delta 1/2 within margin 0.6 ... with se > 0
                       [0, 2, 0], [0, 1, 0],      # cell 3: no decisive label
                       [0, 0, 3],                 # cell 4: one example
                       [1, 0, 0], [1, 0, 0]])     # cell 5: every label original: delta -1, se 0
    cells = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5])
    delta, se, low, high, p, p_tost = net_preference_tests(counts, cells, 6, 0.95, margin=0.6)
    assert list(delta[[0, 1, 5]]) == [1.0, 0.0, -1.0] and list(se[[0, 1, 5]]) == [0.0, 0.0, 0.0]
    assert list(p[[0, 1, 5]]) == [0.0, 1.0, 0.0]          # a zero p stays a number (it is in the Holm family)
    assert list(p_tost[[0, 1, 5]]) == [1.0, 0.0, 1.0]     # |delta| < margin only in cell 1
    assert list(low[[0, 1]]) == [1.0, 0.0] and list(high[[0, 1]]) == [1.0, 0.0]
    # cell 2: net 1 over 2 labels; residuals 1 - 1/2, 0 - 1/2; variance = 2 * (1/2) / 4 = 1/4
    assert (delta[2], se[2]) == pytest.approx((0.5, 0.5))
    assert p[2] == pytest.approx(2 * norm.sf(1.0))
    assert p_tost[2] == pytest.approx(max(norm.sf((0.5 + 0.6) / 0.5), norm.sf((0.6 - 0.5) / 0.5)))
    for figure in (delta, se, low, high, p, p_tost):
        assert np.isnan(figure[3]) and np.isnan(figure[4])
    _, _, _, _, _, tost_at_margin = net_preference_tests(counts, cells, 6, 0.95, margin=1.0)
    assert tost_at_margin[0] == 1.0 and tost_at_margin[1] == 0.0  # |delta| = margin is not within it


def test_clustered_decisive_rate_design_effect_by_hand():
    # d = 4/6; residuals 2/3, 2/3, -4/3; variance = 3/2 * (24/9) / 36 = 1/9; binomial = (2/9) / 6 = 1/27
    d, low, high, deff, n, groups = decisive_rate_interval(HAND, np.zeros(3, int), 1, 0.95)
    assert (d[0], deff[0], n[0], groups[0]) == pytest.approx((2 / 3, 3.0, 6, 3))
    # Wilson at the effective sample size 6 / 3 = 2 with 2/3 of it decisive
    assert (low[0], high[0]) == pytest.approx(proportion_confint(4 / 3, 2, alpha=0.05, method="wilson"))


def test_clustered_design_effect_floor_and_the_agreeing_case():
    counts = np.array([[1, 1, 0], [0, 1, 1], [1, 1, 0],   # cell 0: every example half decisive: variance 0
                       [0, 0, 3], [1, 0, 0],              # cell 1: every label decisive (d = 1): sizes 3, 1
                       [0, 2, 2]])                        # cell 2: one example
    cells = np.array([0, 0, 0, 1, 1, 2])
    d, low, high, deff, n, groups = decisive_rate_interval(counts, cells, 3, 0.9)
    assert deff[0] == 1.0  # the sandwich variance is 0 here: floored at 1, the binomial case
    assert (low[0], high[0]) == pytest.approx(proportion_confint(3, 6, alpha=0.1, method="wilson"))
    assert d[1] == 1.0 and deff[1] == pytest.approx((9 + 1) / 4)  # sum(n_i^2) / N
    assert (low[1], high[1]) == pytest.approx(proportion_confint(1.6, 1.6, alpha=0.1, method="wilson"))
    assert d[2] == 0.5 and deff[2] == 4.0  # one example: no variance estimate, its labels count as one
    assert (low[2], high[2]) == pytest.approx(proportion_confint(0.5, 1, alpha=0.1, method="wilson"))
    assert list(groups) == [3, 2, 1] and list(n) == [6, 4, 4]


def test_clustered_shares_carry_every_figure_of_every_cell():
    counts = np.vstack([HAND, [[0, 0, 2], [0, 0, 2]]])
    cells = np.array([0, 0, 0, 1, 1])
    shares = clustered_shares(counts, cells, 2, 0.95, margin=0.1)
    assert list(shares.n_labels) == [6, 4] and list(shares.n_examples) == [3, 2]
    assert shares.decisive_rate[0] == pytest.approx(2 / 3) and shares.delta[0] == pytest.approx(1 / 3)
    assert shares.delta_se[0] == pytest.approx(1 / 3) and shares.design_effect[0] == pytest.approx(3.0)
    assert shares.p_direction[0] == pytest.approx(2 * norm.sf(1.0)) and shares.p_direction[1] == 0.0
    assert shares.p_equivalence[1] == 1.0 and shares.delta_low[1] == 1.0 and shares.delta_high[1] == 1.0
    assert shares.decisive_low[0] < 2 / 3 < shares.decisive_high[0]
    assert not math.isnan(shares.decisive_high[1])
