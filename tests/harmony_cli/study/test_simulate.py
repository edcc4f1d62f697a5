"""The annotator simulator (harmony_cli/study/simulate.py, `harmony simulate-annotators`).

Answers follow each metric's recorded direction, one transaction, reruns add nothing; the README's promises
checked against the answer model it states (the simulator's docstring: with probability ``noise`` a uniform
answer among the three; else Neither with probability ``neither``; else the fine-tuned map with probability
sigmoid(logit(preference) + w * z), z the example's gain standardized within its cell, sign-flipped for
lower-is-better metrics), with expected shares computed from that statement, never from the simulator, and
compared with a binomial test; simulated accounts never log in; and simulated labels never fill the
labels_per_example quota that real annotators fill on the page.
"""
from __future__ import annotations

import math
from contextlib import closing

import pytest
from scipy.stats import binomtest
from sqlalchemy import select

from harmony_cli.store import Annotator, Example, ExampleFull, Label, Store, StoreError
from harmony_cli.store.passwords import hash_password
from harmony_cli.study.simulate import simulate
from tests.helpers import run_main
from tests.webui_study import PASSWORD, make_study


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


N_EXAMPLES = 100


N_ANNOTATORS = 6  # 600 labels per run


def run_harmony(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`harmony ARGS` through the console entry harmony_cli.main:main, in this process."""
    code, out, err = run_main(monkeypatch, capsys, *args)
    return code, out + err


def study_with_gains(db: str, metric: str = "rma", gains: list[float] | None = None) -> None:
    """A study of N_EXAMPLES examples of one cell; per-example metric gains when ``gains`` is given."""
    with closing(Store.open(db)) as store:
        # what build-dataset records: RIS is the one metric whose gain is a decrease
        study = store.get_or_create_study("sim", config={"higher_is_better": {metric: metric != "ris"}})
        rows = []
        for i in range(N_EXAMPLES):
            scores = {}
            if gains is not None:
                scores = dict(original_score=0.5, finetuned_score=0.5 + gains[i])
            rows.append(dict(CELL, metric=metric, source_key=str(i), class_name="c", **scores))
        store.add_examples(study.id, rows)


def simulate_through_cli(monkeypatch, capsys, db: str, *options: str) -> "pd.DataFrame":
    code, out = run_harmony(monkeypatch, capsys, "simulate-annotators", "--study", "sim", "--db", db,
                            "--annotators", str(N_ANNOTATORS), *options)
    assert code == 0, out
    with closing(Store.open(db)) as store:
        return store.labels_frame("sim")


def expected_shares(preference: float, neither: float, noise: float) -> dict[str, float]:
    decisive = (1 - noise) * (1 - neither)
    return {"neither": noise / 3 + (1 - noise) * neither,
            "finetuned": noise / 3 + decisive * preference,
            "original": noise / 3 + decisive * (1 - preference)}


def assert_binomial(count: int, n: int, p: float, what: str) -> None:
    """``count`` of ``n`` is a plausible Binomial(n, p) draw (two-sided p >= 1e-4: rare false alarms if
    the simulator's random stream changes, while each model error tested here is > 4 standard errors)."""
    if p in (0.0, 1.0):
        assert count == n * p, f"{what}: {count}/{n}, the model says exactly {p}"
        return
    result = binomtest(count, n, p)
    assert result.pvalue >= 1e-4, (f"{what}: {count}/{n} = {count / n:.3f}, the model says {p:.3f} "
                                   f"(p={result.pvalue:.1e})")


@pytest.mark.parametrize("preference,neither,noise", [(0.9, 0.0, 0.0), (0.8, 0.4, 0.3), (0.2, 0.0, 1.0)])
def test_shares_follow_the_stated_model(monkeypatch, capsys, tmp_path, preference, neither, noise):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    study_with_gains(db)
    labels = simulate_through_cli(monkeypatch, capsys, db, "--preference", str(preference), "--neither", str(neither),
                      "--noise", str(noise), "--seed", "3")
    assert len(labels) == N_EXAMPLES * N_ANNOTATORS
    assert labels["simulated"].all()
    for choice, p in expected_shares(preference, neither, noise).items():
        assert_binomial(int((labels["choice"] == choice).sum()), len(labels), p, f"{choice} share")


def test_preference_moves_the_finetuned_share(monkeypatch, capsys, tmp_path):
    """--preference 0.9 vs 0.5: the decisive fine-tuned share is ~0.9 vs ~0.5 (clearly apart)."""
    shares = {}
    for preference in (0.9, 0.5):
        db = f"sqlite:///{tmp_path / f'{preference}.db'}"
        study_with_gains(db)
        labels = simulate_through_cli(monkeypatch, capsys, db, "--preference", str(preference), "--neither", "0.25",
                          "--noise", "0")
        decisive = labels[labels["choice"] != "neither"]
        finetuned = int((decisive["choice"] == "finetuned").sum())
        assert_binomial(finetuned, len(decisive), preference, f"decisive fine-tuned share at {preference}")
        shares[preference] = finetuned / len(decisive)
    assert shares[0.9] - shares[0.5] > 0.3


@pytest.mark.parametrize("metric,sign", [("rma", 1), ("ris", -1)])
def test_larger_metric_gain_raises_the_preference(monkeypatch, capsys, tmp_path, metric, sign):
    """Half the examples gain +0.1, half -0.1: z = +-1 (population std), so with --gain-weight 1.5 and
    preference 0.5 the fine-tuned probability is sigmoid(+-1.5) on the improved / worsened half; for
    RIS (lower is better) a score increase is a loss, so the halves swap."""
    gains = [0.1 if i % 2 else -0.1 for i in range(N_EXAMPLES)]
    db = f"sqlite:///{tmp_path / 'h.db'}"
    study_with_gains(db, metric=metric, gains=gains)
    labels = simulate_through_cli(monkeypatch, capsys, db, "--preference", "0.5", "--neither", "0", "--noise", "0",
                      "--gain-weight", "1.5")
    gain_of = {example_id: gain for example_id, gain in
               zip(sorted(labels["example_id"].unique()), gains)}
    improved = labels["example_id"].map(gain_of) * sign > 0
    p_up = 1 / (1 + math.exp(-1.5))
    for half, p in ((improved, p_up), (~improved, 1 - p_up)):
        picked = labels[half]
        assert_binomial(int((picked["choice"] == "finetuned").sum()), len(picked), p, f"{metric} fine-tuned share")


def test_out_of_range_probability_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    study_with_gains(db)
    code, out = run_harmony(monkeypatch, capsys, "simulate-annotators", "--study", "sim", "--db", db,
                            "--neither", "1.5")
    assert code == 2 and out.strip().startswith("error:") and "neither" in out, out
    with closing(Store.open(db)) as store:
        assert store.labels_frame("sim").empty  # nothing written


def test_simulated_accounts_never_log_in(monkeypatch, capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    study_with_gains(db)
    simulate_through_cli(monkeypatch, capsys, db, "--noise", "0")
    with closing(Store.open(db)) as store:
        names = [a.name for a in store.annotators() if a.simulated]
        assert len(names) == N_ANNOTATORS
        for name in names:
            assert store.authenticate(name, "") is None
        with pytest.raises(StoreError, match="simulated"):  # an admin sets a password by mistake: refused
            store.set_password(names[0], "a-strong-password-1")
        assert store.authenticate(names[0], "a-strong-password-1") is None


def test_simulated_account_stays_locked_even_when_activated(monkeypatch, capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    study_with_gains(db)
    simulate_through_cli(monkeypatch, capsys, db, "--annotators", "1")
    with closing(Store.open(db)) as store:
        # the CLI refuses a password for a simulated account; write a hash behind its back
        with store.write() as session:
            session.scalar(select(Annotator).where(Annotator.name == "simulated-1")).password_hash = \
                hash_password("a-strong-password-1")
        store.set_active("simulated-1", True)
        assert store.authenticate("simulated-1", "a-strong-password-1") is None


QUOTA = 2


def real_answers(store: Store, info: dict, names: list[str]) -> dict[str, list[bool]]:
    """Each name's page answers to every example, in order: whether each was stored (False: refused as full)."""
    outcome = {}
    for name in names:
        account = store.annotator_by_id(info[name])
        outcome[name] = []
        for example_id in [e for cell in info["cells"] for e in cell]:
            try:
                store.answer(account.id, example_id, "neither", left_map="original", response_ms=900,
                             session_version=account.session_version)
                outcome[name].append(True)
            except ExampleFull:
                outcome[name].append(False)
    return outcome


@pytest.fixture(params=[False, True], ids=["no-simulation", "after-simulation"])
def quota_study(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_study(url, tmp_path / "images")
    with Store.open(url) as store:
        info["dee"] = store.add_annotator("dee", PASSWORD).id
        store.assign("dee", "webui-test")
        store.update_study_config("webui-test", labels_per_example=QUOTA)
        if request.param:
            assert simulate(store, "webui-test", n_annotators=5).added == 25
        yield store, info


def test_real_annotators_fill_the_quota_exactly_as_without_simulated_labels(quota_study):
    store, info = quota_study
    cell = {"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam"}
    # before any real answer every example still wants labels from a real annotator
    assert store.next_to_label(info["ana"], info["study_id"], cell, QUOTA) == info["cells"][0][0]
    [rma] = [row for row in store.annotator_cells(info["ana"]) if row["metric"] == "rma"]
    assert (rma["labels"], rma["needed"], rma["available"], rma["complete"]) == (0, 3 * QUOTA, 3, False)
    outcome = real_answers(store, info, ["ana", "ben", "dee"])
    # two real labels per example: ana's and ben's are taken, dee's refused on every example
    assert outcome == {"ana": [True] * 5, "ben": [True] * 5, "dee": [False] * 5}
    [rma] = [row for row in store.annotator_cells(info["dee"]) if row["metric"] == "rma"]
    assert (rma["labels"], rma["available"], rma["complete"]) == (3 * QUOTA, 0, True)
    assert store.next_to_label(info["dee"], info["study_id"], cell, QUOTA) is None
