"""simulate-annotators: answers follow each metric's recorded direction; one transaction; reruns add nothing."""
from __future__ import annotations

from sqlalchemy import select

from harmony_cli.store import Annotator, Example, Label, Store
from harmony_cli.study.simulate import simulate

CELL = dict(dataset="synthetic", backbone="tiny", attribution="gradcam")


def study_with_scores(db_url: str, directions: dict) -> Store:
    """Study "s": cells rma and ris, 10 examples each; even examples' fine-tuned score is 0.5 above the
    original's, odd ones 0.5 below. The study records ``directions`` as its metrics' directions."""
    store = Store.open(db_url)
    study = store.get_or_create_study("s", config={"higher_is_better": directions}, image_dir="/nowhere")
    rows = [dict(CELL, metric=metric, source_key=str(k), class_name="c", image_path=f"{metric}{k}.png",
                 original_map_path=f"{metric}{k}o.png", finetuned_map_path=f"{metric}{k}f.png",
                 original_score=0.25, finetuned_score=0.75 if k % 2 == 0 else -0.25)
            for metric in ("rma", "ris") for k in range(10)]
    store.add_examples(study.id, rows)
    return store


def choices(store: Store) -> dict[tuple[str, str], set[str]]:
    """(metric, source_key) -> the set of choices the simulated annotators made."""
    query = select(Example.metric, Example.source_key, Label.choice).join(Label, Label.example_id == Example.id)
    out: dict[tuple[str, str], set[str]] = {}
    with store.read() as session:
        for metric, key, choice in session.execute(query):
            out.setdefault((metric, key), set()).add(choice)
    return out


def test_simulated_preference_follows_each_metrics_recorded_direction(sqlite_url):
    store = study_with_scores(sqlite_url, {"rma": True, "ris": False})
    # no noise, no Neither, an indifferent base preference: the metric gain alone decides, almost surely
    result = simulate(store, "s", n_annotators=3, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0)
    assert (result.added, result.kept, result.undirected_metrics) == (60, 0, [])
    # rma: higher is better, so the fine-tuned map wins where its score rose (even examples);
    # ris: lower is better, so it wins where its score fell (odd examples)
    expected = {("rma", str(k)): {"finetuned" if k % 2 == 0 else "original"} for k in range(10)}
    expected |= {("ris", str(k)): {"original" if k % 2 == 0 else "finetuned"} for k in range(10)}
    assert choices(store) == expected
    with store.read() as session:
        accounts = list(session.scalars(select(Annotator)))
    assert sorted(a.name for a in accounts) == ["simulated-1", "simulated-2", "simulated-3"]
    assert all(a.simulated and not a.active and a.password_hash is None for a in accounts)
    again = simulate(store, "s", n_annotators=3, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0, seed=9)
    assert (again.added, again.kept) == (0, 60) and choices(store) == expected  # a rerun keeps what is there
    store.close()


def test_a_metric_without_a_recorded_direction_counts_as_higher_is_better(tmp_path):
    store = study_with_scores(f"sqlite:///{tmp_path / 'h.db'}", {"rma": True})
    result = simulate(store, "s", n_annotators=1, preference=0.5, neither=0.0, noise=0.0, gain_weight=30.0)
    assert result.undirected_metrics == ["ris"]
    assert choices(store)[("ris", "0")] == {"finetuned"}  # its score rose: read as a gain
    store.close()


def test_the_gain_is_standardized_within_each_cell():
    """A cell's standardized gains are the same whatever the other cells hold (a far larger gain elsewhere too)."""
    import numpy as np
    import pytest

    from harmony_cli.study.simulate import standardized_within

    mine = np.array([0.1, 0.3, 0.2, 0.6])
    alone = standardized_within(mine, np.array(["a"] * 4))
    expected = (mine - mine.mean()) / mine.std()  # population SD, as numpy's default
    assert list(alone) == pytest.approx(list(expected))
    mixed = standardized_within(np.concatenate([mine, [50.0, 90.0, 70.0]]), np.array(["a"] * 4 + ["b"] * 3))
    assert list(mixed[:4]) == pytest.approx(list(expected))
    assert list(mixed[4:]) == pytest.approx([-1.224744871, 1.224744871, 0.0])
    assert list(standardized_within(np.array([0.2, 0.2]), np.array(["c", "c"]))) == [0.0, 0.0]


def test_annotators_differ_by_their_spread_and_not_without_it():
    """Each annotator's decisive fine-tuned share, on the logit scale, spreads by about annotator_spread; with no
    spread the labels are exactly those of exchangeable annotators (the same seed, the same labels)."""
    import numpy as np

    from harmony_cli.study.simulate import simulated_choices

    gains = np.zeros(4000)
    kwargs = dict(n_annotators=30, preference=0.6, neither=0.3, noise=0.0, gain_weight=0.0, seed=3)
    spread = simulated_choices(gains, annotator_spread=1.0, neither_spread=0.8, **kwargs)
    none = simulated_choices(gains, **kwargs)
    assert (none == simulated_choices(gains, annotator_spread=0.0, **kwargs)).all()

    def logit_sd(choices, numerator, denominator):
        share = (choices == numerator).sum(1) / np.isin(choices, denominator).sum(1)
        return np.std(np.log(share / (1 - share)), ddof=1)

    # sampling noise alone: about sqrt(1 / (n p (1 - p))) = 0.05 on the logit scale
    assert 0.7 < logit_sd(spread, "finetuned", ["finetuned", "original"]) < 1.3
    assert logit_sd(none, "finetuned", ["finetuned", "original"]) < 0.1
    assert 0.5 < logit_sd(spread, "neither", ["finetuned", "original", "neither"]) < 1.1
    assert logit_sd(none, "neither", ["finetuned", "original", "neither"]) < 0.1


def test_annotators_who_differ_make_the_two_verdicts_disagree():
    """Five simulated annotators who differ (spread 1.5 on the logit scale) around a modest preference: for these
    five the cell is directional, for people it is not (five people cannot tell a preference from disagreement)."""
    import numpy as np
    import pandas as pd

    from harmony_cli.analysis import AnalysisSettings, analyze_labels
    from harmony_cli.study.simulate import simulated_choices

    choices = simulated_choices(np.zeros(400), 5, preference=0.65, neither=0.3, noise=0.0, gain_weight=0.0, seed=2,
                                annotator_spread=1.5)
    frame = pd.DataFrame([{"example_id": j, "dataset": "d", "metric": "m", "backbone": "b", "attribution": "a",
                           "annotator": f"sim{i}", "choice": choices[i, j]} for i in range(5) for j in range(400)])
    [cell] = analyze_labels(frame, AnalysisSettings.defaults(bootstrap_resamples=0))["cells"]
    assert cell["verdicts"]["these_annotators"] in ("aligned", "misaligned")
    assert cell["verdicts"]["people"] == "inconclusive"
    nets = [a["net_preference"] for a in cell["annotators"]]
    assert max(nets) - min(nets) > 0.3  # the annotators do differ
