"""The report's figures (harmony_cli/analysis/plot.py) as a journal takes them: TrueType fonts embedded (no Type 3),
preferences.pdf exactly a double column wide, both verdicts on it; gain bins with their clustered intervals."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from harmony_cli.analysis import AnalysisSettings, analyze_labels
from harmony_cli.analysis.plot import gain_plot, preferences_plot
from harmony_cli.analysis.regression import gain_bins


def small_report() -> dict:
    rng = np.random.default_rng(0)
    rows = [{"example_id": f"{m}{e}", "dataset": "d", "metric": m, "backbone": "b", "attribution": "gradcam",
             "annotator": f"a{a}", "choice": ("original", "neither", "finetuned")[rng.choice(3, p=(0.2, 0.4, 0.4))],
             "original_score": 0.5, "finetuned_score": 0.5 + e / 100}
            for m in ("rma", "focus") for e in range(30) for a in range(4)]
    return analyze_labels(pd.DataFrame(rows), AnalysisSettings.defaults(bootstrap_resamples=0))


def test_preferences_pdf_embeds_truetype_fonts_at_double_column_width(tmp_path):
    report = small_report()
    preferences_plot(report, tmp_path / "preferences.png")
    gain_plot(report, tmp_path / "gain.png")
    for name in ("preferences.pdf", "gain.pdf"):
        pdf = (tmp_path / name).read_bytes()
        assert b"/Type3" not in pdf and b"/FontFile2" in pdf, name  # TrueType programs embedded
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", (tmp_path / "preferences.pdf").read_bytes())
    assert float(box.group(1)) == pytest.approx(7.0 * 72)  # 7 in: a double column, as drawn


def test_gain_bins_carry_counts_and_an_interval_clustered_by_example():
    import statsmodels.api as sm
    from scipy.stats import t as student

    rng = np.random.default_rng(1)
    gain = rng.normal(size=60)
    decisive = rng.integers(1, 5, 60)
    finetuned = rng.binomial(decisive, 0.6)
    bins = gain_bins(gain, finetuned, decisive - finetuned, n_bins=3)
    edges = np.quantile(gain, [0, 1 / 3, 2 / 3, 1])
    for b, (low, high) in zip(bins, zip(edges[:-1], edges[1:])):
        inside = (gain >= low) & ((gain < high) | (high == edges[-1]))
        assert b["n_examples"] == inside.sum() and b["n_decisive"] == decisive[inside].sum()
        share = finetuned[inside].sum() / decisive[inside].sum()
        # one row per decisive label: fine-tuned minus the share, clustered by example (t on G - 1 df)
        example = np.repeat(np.arange(inside.sum()), decisive[inside])
        chose = np.concatenate([np.r_[np.ones(f), np.zeros(d - f)] for f, d in zip(finetuned[inside],
                                                                                     decisive[inside])])
        fit = sm.OLS(chose - share, np.ones(len(chose))).fit(cov_type="cluster", cov_kwds={"groups": example})
        half = student.ppf(0.975, inside.sum() - 1) * fit.bse[0]
        assert b["interval"] == pytest.approx([max(share - half, 0), min(share + half, 1)], rel=1e-9)
