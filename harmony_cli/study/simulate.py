"""``harmony simulate-annotators``: a simulated annotation round, so the analysis has labels to read.

Simulated annotators answer through the store like people would, but they are
created with ``simulated=True`` (no password, inactive: they cannot log in), and
``harmony analyze`` never mixes their labels with real ones.

The answer model, per annotator and example:

- with probability ``noise`` the annotator is inattentive and picks uniformly among
  the three answers;
- otherwise with probability ``neither`` they answer Neither;
- otherwise they prefer the fine-tuned map with probability
  ``sigmoid(logit(preference) + gain_weight * z)``, where ``z`` is the example's
  standardized metric gain (fine-tuned score minus original score, sign-flipped
  for lower-is-better metrics; 0 when the study has no scores). ``preference`` 0.5
  simulates a metric people cannot perceive; above 0.5, one they agree with.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np

from ..store import CHOICES, Example, Store, StoreError, Study

LOWER_IS_BETTER = {"ris"}  # metrics whose gain is a decrease


def simulated_choices(gains: np.ndarray, n_annotators: int, preference: float, neither: float, noise: float,
                      gain_weight: float, seed: int) -> np.ndarray:
    """(n_annotators, n_examples) array of choices (strings in CHOICES) for examples with ``gains``."""
    for name, p in (("preference", preference), ("neither", neither), ("noise", noise)):
        if not 0.0 <= p <= 1.0:
            raise StoreError(f"--{name} must be a probability between 0 and 1, not {p}")
    rng = np.random.default_rng(seed)
    gains = np.nan_to_num(np.asarray(gains, dtype=float))
    z = (gains - gains.mean()) / gains.std() if gains.size > 1 and gains.std() > 0 else np.zeros_like(gains)
    p = np.clip(preference, 1e-6, 1 - 1e-6)
    p_finetuned = 1.0 / (1.0 + np.exp(-(np.log(p / (1 - p)) + gain_weight * z)))
    shape = (n_annotators, gains.size)
    decisive = np.where(rng.random(shape) < p_finetuned, "finetuned", "original")
    answers = np.where(rng.random(shape) < neither, "neither", decisive)
    inattentive = rng.random(shape) < noise
    return np.where(inattentive, rng.choice(np.asarray(CHOICES), size=shape), answers)


def _left_map(annotator: str, example_id: int) -> str:
    digest = hashlib.sha256(f"{annotator}:{example_id}".encode()).digest()
    return "original" if digest[0] % 2 else "finetuned"


def simulate(store: Store, study: str, n_annotators: int = 5, preference: float = 0.7, neither: float = 0.25,
             noise: float = 0.1, gain_weight: float = 1.0, seed: int = 0, prefix: str = "simulated") -> int:
    """Answer every example of ``study`` for ``n_annotators`` simulated annotators; labels written."""
    from sqlalchemy import select

    with store.read() as session:
        study_row = session.scalar(select(Study).where(Study.name == study))
        if study_row is None:
            raise StoreError(f"no study named {study!r} in {store.url}: see `harmony studies`")
        rows = session.execute(select(Example.id, Example.metric, Example.original_score, Example.finetuned_score)
                               .where(Example.study_id == study_row.id).order_by(Example.id)).all()
    if not rows:
        raise StoreError(f"study {study!r} has no examples yet: run `harmony build-dataset` first")
    gains = np.array([(f - o) * (-1 if m in LOWER_IS_BETTER else 1) if o is not None and f is not None else 0.0
                      for _, m, o, f in rows])
    choices = simulated_choices(gains, n_annotators, preference, neither, noise, gain_weight, seed)
    ids = []
    for k in range(n_annotators):
        name = f"{prefix}-{k + 1}"
        annotator = store.annotator(name)
        if annotator is None:
            annotator = store.add_annotator(name, password=None, active=False, simulated=True)
        elif not annotator.simulated:
            raise StoreError(f"annotator {name!r} is a real account: choose another --prefix")
        ids.append(annotator.id)
    rng = np.random.default_rng(seed + 1)
    response_ms = rng.lognormal(np.log(2500), 0.5, size=choices.shape).astype(int)
    written = 0
    for k, annotator_id in enumerate(ids):
        for j, (example_id, *_rest) in enumerate(rows):
            store.answer(annotator_id, example_id, str(choices[k, j]), left_map=_left_map(f"{prefix}-{k + 1}", example_id),
                         response_ms=int(response_ms[k, j]), source="simulation")
            written += 1
    return written
