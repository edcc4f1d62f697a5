"""``harmony simulate-annotators``: a simulated annotation round, so the analysis has labels to read.

Simulated annotators answer through the store in one transaction (a failure
writes nothing), created with ``simulated=True`` (no password, inactive: they cannot log in), and
``harmony analyze`` never mixes their labels with real ones.

The answer model, per annotator and example:

- with probability ``noise`` the annotator is inattentive and picks uniformly among
  the three answers;
- otherwise with probability ``neither`` they answer Neither;
- otherwise they prefer the fine-tuned map with probability
  ``sigmoid(logit(preference) + u_i + gain_weight * z)``, where ``z`` is the example's
  metric gain (fine-tuned score minus original score, sign-flipped for lower-is-better
  metrics as the study records them in ``config["higher_is_better"]``; 0 when the study
  has no scores) standardized within its cell, so one cell's simulated preference never
  depends on the other cells. ``preference`` 0.5 simulates a metric people cannot perceive;
  above 0.5, one they agree with.
- Annotators differ (as people do): annotator i's preference is shifted by
  ``u_i ~ N(0, annotator_spread^2)`` and their Neither rate is ``sigmoid(logit(neither) + v_i)``,
  ``v_i ~ N(0, neither_spread^2)``, both on the logit scale, drawn once per annotator from their
  own random stream (with both spreads 0 the labels are those of exchangeable annotators, as
  before). With a spread, the verdict for people and the one for these annotators can disagree.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from ..cells import CELL_FIELDS
from ..store import CHOICES, Annotator, Example, Store, StoreError, Study

# Every simulated annotator labels every example: beyond this, a typo (an extra 0) not a plan.
MAX_ANNOTATORS = 100


def standardized_within(gains: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
    """(E,) each example's gain standardized within its cell (``cells``: (E,) labels; None: one cell);
    0 in a cell whose gains do not vary."""
    gains = np.nan_to_num(np.asarray(gains, dtype=float))
    if gains.size == 0:
        return gains
    _, group = np.unique(np.zeros(gains.size) if cells is None else np.asarray(cells), return_inverse=True)
    n = np.bincount(group)
    mean = np.bincount(group, weights=gains) / n
    sd = np.sqrt(np.bincount(group, weights=(gains - mean[group]) ** 2) / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd[group] > 0, (gains - mean[group]) / sd[group], 0.0)


def _logit(p: float) -> float:
    p = float(np.clip(p, 1e-6, 1 - 1e-6))
    return float(np.log(p / (1 - p)))


def annotator_rates(n_annotators: int, preference: float, neither: float, annotator_spread: float,
                    neither_spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(A,) each annotator's preference logit and Neither rate (their own stream: the label draws stay the same)."""
    if annotator_spread < 0 or neither_spread < 0:
        raise StoreError(f"--annotator-spread and --neither-spread must be >= 0, not {annotator_spread} and "
                         f"{neither_spread}")
    rng = np.random.default_rng([seed, 1])
    shift, neither_shift = rng.normal(0.0, 1.0, (2, n_annotators))
    logits = _logit(preference) + annotator_spread * shift
    rates = (np.full(n_annotators, float(neither)) if neither_spread == 0 else
             1.0 / (1.0 + np.exp(-(_logit(neither) + neither_spread * neither_shift))))
    return logits, rates


def simulated_choices(gains: np.ndarray, n_annotators: int, preference: float, neither: float, noise: float,
                      gain_weight: float, seed: int, cells: np.ndarray | None = None, annotator_spread: float = 0.0,
                      neither_spread: float = 0.0) -> np.ndarray:
    """(n_annotators, n_examples) array of choices (strings in CHOICES) for examples with ``gains`` (in ``cells``)."""
    for name, p in (("preference", preference), ("neither", neither), ("noise", noise)):
        if not 0.0 <= p <= 1.0:
            raise StoreError(f"--{name} must be a probability between 0 and 1, not {p}")
    rng = np.random.default_rng(seed)
    z = standardized_within(gains, cells)
    logits, neither_rates = annotator_rates(n_annotators, preference, neither, annotator_spread, neither_spread, seed)
    p_finetuned = 1.0 / (1.0 + np.exp(-(logits[:, None] + gain_weight * z[None, :])))
    shape = (n_annotators, z.size)
    decisive = np.where(rng.random(shape) < p_finetuned, "finetuned", "original")
    answers = np.where(rng.random(shape) < neither_rates[:, None], "neither", decisive)
    inattentive = rng.random(shape) < noise
    return np.where(inattentive, rng.choice(np.asarray(CHOICES), size=shape), answers)


def _left_map(annotator: str, example_id: int) -> str:
    digest = hashlib.sha256(f"{annotator}:{example_id}".encode()).digest()
    return "original" if digest[0] % 2 else "finetuned"


def check_annotators(n_annotators: int) -> None:
    """A one-line error unless 1 <= n_annotators <= MAX_ANNOTATORS (every annotator labels every example)."""
    if not 1 <= n_annotators <= MAX_ANNOTATORS:
        raise StoreError(f"--annotators {n_annotators} is out of range: give 1 to {MAX_ANNOTATORS} (each simulated "
                         f"annotator labels every example of the study)")


def metric_gains(rows: list, higher_is_better: dict[str, bool]) -> np.ndarray:
    """Per example (metric, original score, fine-tuned score): the gain, sign-flipped where lower is better.

    ``higher_is_better``: the study's record (build-dataset and import-legacy write it); a metric
    without an entry counts as higher-is-better. 0 where a score is missing.
    """
    return np.array([(f - o) * (1 if higher_is_better.get(m, True) else -1) if o is not None and f is not None
                     else 0.0 for m, o, f in rows], dtype=float)


@dataclass
class SimulationResult:
    """What a simulation wrote: labels added, labels kept (the pair had one), metrics without a direction."""

    added: int
    kept: int
    undirected_metrics: list[str]


def simulate(store: Store, study: str, n_annotators: int = 5, preference: float = 0.7, neither: float = 0.25,
             noise: float = 0.1, gain_weight: float = 1.0, seed: int = 0, prefix: str = "simulated",
             annotator_spread: float = 0.0, neither_spread: float = 0.0) -> SimulationResult:
    """Answer every example of ``study`` for ``n_annotators`` simulated annotators, in one transaction.

    Accounts ``<prefix>-1 .. <prefix>-N`` are created (simulated, inactive, no password) or reused;
    a pair that has a label already keeps it, so a rerun adds nothing.
    """
    check_annotators(n_annotators)
    with store.read() as session:
        study_row = session.scalar(select(Study).where(Study.name == study))
        if study_row is None:
            raise StoreError(f"no study named {study!r} in {store.url}: see `harmony studies`")
        rows = session.execute(select(Example.id, Example.metric, Example.original_score, Example.finetuned_score)
                               .where(Example.study_id == study_row.id).order_by(Example.id)).all()
        cells = [":".join(map(str, r)) for r in session.execute(
            select(*[getattr(Example, f) for f in CELL_FIELDS]).where(Example.study_id == study_row.id)
            .order_by(Example.id)).all()]
    if not rows:
        raise StoreError(f"study {study!r} has no examples yet: run `harmony build-dataset` first")
    directions = dict((study_row.config or {}).get("higher_is_better") or {})
    gains = metric_gains([(m, o, f) for _, m, o, f in rows], directions)
    choices = simulated_choices(gains, n_annotators, preference, neither, noise, gain_weight, seed, np.array(cells),
                                annotator_spread, neither_spread)
    response_ms = np.random.default_rng(seed + 1).lognormal(np.log(2500), 0.5, size=choices.shape).astype(int)
    names = [f"{prefix}-{k + 1}" for k in range(n_annotators)]
    with store.write() as session:
        ids = [_simulated_account(session, name) for name in names]
        labels = [dict(annotator_id=ids[k], example_id=example_id, choice=str(choices[k, j]),
                       left_map=_left_map(names[k], example_id), response_ms=int(response_ms[k, j]))
                  for k in range(n_annotators) for j, (example_id, *_rest) in enumerate(rows)]
        counts = store.add_labels(labels, source="simulation", session=session)
    undirected = sorted({m for _, m, _, _ in rows} - set(directions))
    return SimulationResult(counts["added"], counts["kept"], undirected)


def _simulated_account(session, name: str) -> int:
    """The id of the simulated account ``name``, created (inactive, no password) in ``session`` if new."""
    annotator = session.scalar(select(Annotator).where(Annotator.name == name))
    if annotator is None:
        annotator = Annotator(name=name, password_hash=None, is_admin=False, active=False, simulated=True)
        session.add(annotator)
        session.flush()
    elif not annotator.simulated:
        raise StoreError(f"annotator {name!r} is a real account: choose another --prefix")
    return annotator.id
