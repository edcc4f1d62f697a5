"""README promises of `harmony simulate-annotators`, checked against the answer model it states.

The README: "a configurable preference for the fine-tuned map, a rate of Neither, inattentive
noise, and a stronger preference where the metric gain is larger ... Simulated annotators are
marked as such, cannot log in". The model (harmony_cli/study/simulate.py docstring): with
probability ``noise`` a uniform answer among the three; else Neither with probability
``neither``; else the fine-tuned map with probability sigmoid(logit(preference) + w * z),
z the example's standardized gain (sign-flipped for lower-is-better metrics).
The expected shares below are computed from that statement, never from the simulator, and
compared with a binomial test (labels are independent draws given the example).
"""
from __future__ import annotations

import math
from contextlib import closing

import pytest
from sqlalchemy import select
from scipy.stats import binomtest

from harmony_cli.store import Store
from harmony_cli.store import Annotator, StoreError
from harmony_cli.store.passwords import hash_password
from tests.helpers import run_main

N_EXAMPLES = 100
N_ANNOTATORS = 6  # 600 labels per run
CELL = dict(dataset="synthetic", backbone="tiny", attribution="gradcam")


def run_harmony(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`harmony ARGS` through the console entry harmony_cli.main:main, in this process."""
    code, out, err = run_main(monkeypatch, capsys, *args)
    return code, out + err


def make_study(db: str, metric: str = "rma", gains: list[float] | None = None) -> None:
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


def simulate(monkeypatch, capsys, db: str, *options: str) -> "pd.DataFrame":
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
    make_study(db)
    labels = simulate(monkeypatch, capsys, db, "--preference", str(preference), "--neither", str(neither),
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
        make_study(db)
        labels = simulate(monkeypatch, capsys, db, "--preference", str(preference), "--neither", "0.25",
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
    make_study(db, metric=metric, gains=gains)
    labels = simulate(monkeypatch, capsys, db, "--preference", "0.5", "--neither", "0", "--noise", "0",
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
    make_study(db)
    code, out = run_harmony(monkeypatch, capsys, "simulate-annotators", "--study", "sim", "--db", db,
                            "--neither", "1.5")
    assert code == 2 and out.strip().startswith("error:") and "neither" in out, out
    with closing(Store.open(db)) as store:
        assert store.labels_frame("sim").empty  # nothing written


def test_simulated_accounts_never_log_in(monkeypatch, capsys, tmp_path):
    db = f"sqlite:///{tmp_path / 'h.db'}"
    make_study(db)
    simulate(monkeypatch, capsys, db, "--noise", "0")
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
    make_study(db)
    simulate(monkeypatch, capsys, db, "--annotators", "1")
    with closing(Store.open(db)) as store:
        # the CLI refuses a password for a simulated account; write a hash behind its back
        with store.write() as session:
            session.scalar(select(Annotator).where(Annotator.name == "simulated-1")).password_hash = \
                hash_password("a-strong-password-1")
        store.set_active("simulated-1", True)
        assert store.authenticate("simulated-1", "a-strong-password-1") is None
