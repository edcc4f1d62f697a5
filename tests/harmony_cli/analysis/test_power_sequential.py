"""harmony power --design sequential: labels come in the page's order (each example once per round, annotators
interleaved), a large effect is decided with fewer labels and mostly the fixed design's verdict, no effect is
called directional at most alpha of the time (labels drawn by this file's own simulation), and the command."""
from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.analysis.power import PowerModel
from harmony_cli.analysis.power_sequential import page_order, sequential_power_grid, sequential_stops

SETTINGS = AnalysisSettings.defaults(bootstrap_resamples=0)


def test_the_page_order_gives_each_example_once_per_round_by_annotators_in_turn():
    G, A = 30, 5
    example, annotator = page_order(G, A, np.random.default_rng(1))
    assert example.shape == annotator.shape == (G * A,)
    for r in range(A):  # labels r*G .. (r+1)*G - 1: every example once
        assert sorted(example[r * G:(r + 1) * G]) == list(range(G))
    pairs = set(zip(example.tolist(), annotator.tolist()))
    assert len(pairs) == G * A  # each example gets each of its annotators once
    assert len(set(annotator[:G].tolist())) == A  # the first round already interleaves all annotators
    again, _ = page_order(G, A, np.random.default_rng(2))
    assert not np.array_equal(again[:G], example[:G])  # the round's order is drawn, not the examples' ids


def null_choices(studies: int, examples: int, annotators: int, rng: np.random.Generator) -> np.ndarray:
    """(S, G, A) choices with no preference, written out here (not the code under test): each example draws its
    Neither share and its fine-tuned share of decisive answers from Betas (mean 0.4 and 0.5), each annotator
    shifts both on the logit scale (SD 0.5 and 0.7, the fine-tuned share symmetrically), labels are draws."""
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    expit = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    neither = rng.beta(2.0, 3.0, (studies, examples, 1))
    finetuned = rng.beta(4.0, 4.0, (studies, examples, 1))
    neither = expit(logit(neither) + rng.normal(0, 0.5, (studies, 1, annotators)))
    finetuned = expit(logit(finetuned) + rng.normal(0, 0.7, (studies, 1, annotators)))
    u = rng.random((2, studies, examples, annotators))
    return np.where(u[0] < neither, 1, np.where(u[1] < finetuned, 2, 0))


def test_no_effect_is_called_directional_at_most_alpha_of_the_time_however_often_it_is_looked_at():
    S, G, A = 400, 20, 5
    rng = np.random.default_rng(11)
    stops = sequential_stops(null_choices(S, G, A, rng), 10, SETTINGS, 1, rng)
    directional = int(np.isin(stops.verdict, ("aligned", "misaligned")).sum())
    # at most alpha within Monte Carlo error: 2.6 standard errors of a share alpha over S studies
    bound = SETTINGS.alpha + 2.6 * np.sqrt(SETTINGS.alpha * (1 - SETTINGS.alpha) / S)
    print(f"no effect: P(aligned or misaligned) = {directional / S:.3f} over {S} studies (bound {bound:.3f})")
    assert directional / S <= bound
    assert (stops.labels % 10 == 0).all() and (stops.labels <= G * A).all()  # stops fall on looks


def test_a_large_effect_is_decided_with_fewer_labels_and_mostly_the_fixed_verdict():
    model = PowerModel(neither=0.3, preference=0.85, correlation=0.1, annotator_spread=0.3)
    row, = sequential_power_grid(model, [40], [5], 150, SETTINGS, family=1, look_every=20, seed=3)
    assert row["labels"] == 200
    low, high = row["expected_labels_interval"]
    assert low <= row["expected_labels"] <= high < 0.75 * 200  # clearly fewer labels than the fixed design
    assert row["fixed_aligned"] >= 0.9 and row["sequential_aligned"] >= 0.85
    assert row["same_verdict"] >= 0.85
    assert row["sequential_misaligned"] == 0.0
    shares = sum(row[f"sequential_{v}"] for v in ("aligned", "misaligned", "no_preference", "imperceptible",
                                                  "inconclusive"))
    assert abs(shares - 1.0) < 1e-9  # every study ends with a verdict: the last look has all the fixed labels


def test_power_design_sequential_writes_both_designs_side_by_side(tmp_path):
    from harmony_cli.main import app

    result = CliRunner().invoke(app, ["power", "--design", "sequential", "--look-every", "10", "--examples", "20",
                                      "--annotators", "3,5", "--simulations", "30", "--cells", "2",
                                      "--preference", "0.8", "--out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "labels sequential" in result.stdout and "P(aligned) fixed" in result.stdout
    assert "a look every 10 labels" in result.stdout
    saved = json.loads((tmp_path / "p" / "power.json").read_text())
    assert saved["design"] == "sequential" and saved["look_every"] == 10 and saved["family"] == 2
    assert [(r["examples"], r["annotators"], r["labels"]) for r in saved["rows"]] == [(20, 3, 60), (20, 5, 100)]
    assert all(r["expected_labels"] <= r["labels"] for r in saved["rows"])
    assert {"power.csv", "power.png", "power.pdf"} <= {p.name for p in (tmp_path / "p").iterdir()}
    fixed = CliRunner().invoke(app, ["power", "--look-every", "10", "--out", str(tmp_path / "q")])
    assert fixed.exit_code != 0 and "--design sequential" in str(fixed.exception or fixed.output)
