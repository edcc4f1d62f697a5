"""Annotators inside each cell (harmony_cli/analysis/annotator_cells.py): their own net preference against scipy's
t interval, the leave-one-annotator-out verdicts against the analysis run again without that annotator, the cap on
leave-one-out, and admins marked."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harmony_cli.analysis import AnalysisSettings, analyze_labels

THESE = AnalysisSettings.defaults(bootstrap_resamples=0, generalize="these_annotators")
NET = {"finetuned": 1.0, "neither": 0.0, "original": -1.0}


def frame_with_a_contrarian(seed: int = 5) -> pd.DataFrame:
    """Two cells, 4 annotators x 40 examples: in 'split' a0-a2 lean fine-tuned and a3 strongly original; in
    'plain' everyone answers alike."""
    rng = np.random.default_rng(seed)
    lean = {"split": {"a0": (0.2, 0.3, 0.5), "a1": (0.2, 0.3, 0.5), "a2": (0.2, 0.3, 0.5), "a3": (0.9, 0.1, 0.0)},
            "plain": {a: (0.3, 0.4, 0.3) for a in ("a0", "a1", "a2", "a3")},
            "clear": {a: (0.02, 0.08, 0.9) for a in ("a0", "a1", "a2", "a3")}}
    rows = [{"example_id": f"{cell}{e}", "dataset": "d", "metric": "rma", "backbone": "b", "attribution": cell,
             "annotator": a, "choice": ("original", "neither", "finetuned")[rng.choice(3, p=p)]}
            for cell, by in lean.items() for e in range(40) for a, p in by.items()]
    # one example only a3 labelled, one only a0 and a3: left out, a3 leaves none and one label there
    rows += [{**rows[0], "example_id": "only-a3", "annotator": "a3", "choice": "original"},
             {**rows[0], "example_id": "a0-a3", "annotator": "a0", "choice": "finetuned"},
             {**rows[0], "example_id": "a0-a3", "annotator": "a3", "choice": "original"}]
    return pd.DataFrame(rows)


def test_each_annotators_net_preference_is_a_t_interval_over_their_examples():
    frame = frame_with_a_contrarian()
    report = analyze_labels(frame, THESE)
    for cell in report["cells"]:
        assert [a["annotator"] for a in cell["annotators"]] == ["a0", "a1", "a2", "a3"]
        for row in cell["annotators"]:
            mine = frame[(frame.attribution == cell["attribution"]) & (frame.annotator == row["annotator"])]
            y = mine.choice.map(NET).to_numpy()
            assert row["n_labels"] == len(y) >= 40
            assert row["net_preference"] == pytest.approx(y.mean())
            assert row["net_preference_interval"] == pytest.approx(
                list(stats.t.interval(0.95, len(y) - 1, loc=y.mean(), scale=stats.sem(y))), rel=1e-9)
            assert row["shares"]["neither"] == pytest.approx((mine.choice == "neither").mean())
            assert row["admin"] is False


def test_leave_one_out_verdicts_are_the_analysis_without_that_annotator():
    frame = frame_with_a_contrarian()
    report = analyze_labels(frame, THESE)
    cells = {c["attribution"]: c for c in report["cells"]}
    for name in ("a0", "a1", "a2", "a3"):
        without = {c["attribution"]: c for c in analyze_labels(frame[frame.annotator != name], THESE)["cells"]}
        for key, cell in cells.items():
            row = next(r for r in cell["annotators"] if r["annotator"] == name)
            assert row["verdicts_without"] == without[key]["verdicts"], (key, name)
    # four annotators who agree: for people the cell stays aligned whoever is left out
    assert cells["clear"]["verdicts"]["people"] == "aligned"
    assert all(r["verdicts_without"]["people"] == "aligned" for r in cells["clear"]["annotators"])
    split = cells["split"]
    assert split["verdict"] == "inconclusive"        # the precondition: a3 pulls the cell to no verdict
    assert "a3" in split["verdict_changed_without"]  # without a3 the other three prefer the fine-tuned maps
    assert split["verdict_changed_without"] == [r["annotator"] for r in split["annotators"]
                                                if r["verdicts_without"]["these_annotators"] != split["verdict"]]
    assert next(r for r in split["annotators"] if r["annotator"] == "a3")["verdicts_without"]["these_annotators"] \
        == "aligned"


def test_leave_one_out_is_capped_and_says_so():
    report = analyze_labels(frame_with_a_contrarian(), AnalysisSettings.defaults(bootstrap_resamples=0,
                                                                                 leave_one_out_max=3))
    assert all(c["verdict_changed_without"] is None for c in report["cells"])
    assert all("verdicts_without" not in a for c in report["cells"] for a in c["annotators"])
    assert any("more than leave_one_out_max 3" in n for n in report["notes"])
    at_the_cap = analyze_labels(frame_with_a_contrarian(), AnalysisSettings.defaults(bootstrap_resamples=0,
                                                                                     leave_one_out_max=4))
    assert all(c["verdict_changed_without"] is not None for c in at_the_cap["cells"])


def test_admins_are_marked():
    frame = frame_with_a_contrarian().assign(admin=lambda f: f.annotator == "a1")
    report = analyze_labels(frame, THESE)
    assert [a["annotator"] for a in report["annotators"] if a["admin"]] == ["a1"]
    assert [a["annotator"] for a in report["cells"][0]["annotators"] if a["admin"]] == ["a1"]
    assert any(n.startswith("annotator(s) a1 administer the store") for n in report["notes"])
    assert not any("administer" in n for n in analyze_labels(frame_with_a_contrarian(), THESE)["notes"])
