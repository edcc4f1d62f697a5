"""Annotators inside each cell: their own shares and net preference, and which of them carries a verdict.

- Per (cell, annotator): label shares and the net preference (fine-tuned - original) / labels with a t
  interval over that annotator's examples (one label per example: the examples are the sample, t on
  n - 1 df). It shows whether the annotators agree with each other, which the crossed inference prices in.
- Leave-one-annotator-out: both inferences' verdicts of every cell with each annotator's labels removed
  (the whole study again, Holm families included), so a report says which annotator, if removed,
  changes a verdict. Each removal reruns both inferences (about 0.2 s per 3,000,000 labels): studies
  with more annotators than ``leave_one_out_max`` get a note instead.
"""
from __future__ import annotations

import numpy as np

from ..cells import REPORT_ORDER
from .clustered import clustered_shares, crossed_shares, t_quantile
from .encoding import FINETUNED, ORIGINAL, EncodedLabels
from .settings import AnalysisSettings
from .values import finite, pair


def annotator_figures(annotator_counts: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """Per (cell, annotator) row of ``annotator_counts`` (K, 3): labels, shares (K, 3), net preference, its interval."""
    n = annotator_counts.sum(1).astype(float)
    net = (annotator_counts[:, FINETUNED] - annotator_counts[:, ORIGINAL]).astype(float)
    decisive = (annotator_counts[:, FINETUNED] + annotator_counts[:, ORIGINAL]).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = net / n
        sample_variance = (decisive - net ** 2 / n) / (n - 1)          # sum of y^2 is the decisive count
        half = t_quantile(confidence, n - 1) * np.sqrt(sample_variance / n)
        shares = annotator_counts / n[:, None]
    return {"n": n, "shares": shares, "net": mean, "low": mean - half, "high": mean + half}


def cell_annotator_rows(data: EncodedLabels, figures: dict[str, np.ndarray], rows: np.ndarray,
                        annotator_id: np.ndarray, left_out: dict[str, np.ndarray] | None, cell: int) -> list[dict]:
    """One dict per annotator of one cell: ``rows`` index ``figures`` (``annotator_figures``) and ``annotator_id``;
    ``left_out``: the leave-one-out verdicts (``leave_one_out``), or None."""
    out = []
    for k in rows:
        a = int(annotator_id[k])
        row = {"annotator": str(data.annotators[a]), "admin": bool(data.annotator_admin[a]),
               "n_labels": int(figures["n"][k]),
               "shares": {c: finite(figures["shares"][k, i]) for i, c in enumerate(REPORT_ORDER)},
               "net_preference": finite(figures["net"][k]),
               "net_preference_interval": pair(figures["low"][k], figures["high"][k])}
        if left_out is not None:
            row["verdicts_without"] = {name: str(v[a, cell]) for name, v in left_out.items()}
        out.append(row)
    return out


def without_annotator(data: EncodedLabels, annotator_counts: np.ndarray, annotator_cell: np.ndarray,
                      annotator_id: np.ndarray, a: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(example counts, annotator counts, their cells) with annotator ``a``'s labels removed."""
    mine = data.label_annotator == a
    removed = np.bincount(data.label_example[mine] * 3 + data.label_choice[mine],
                          minlength=len(data.counts) * 3).reshape(len(data.counts), 3)
    keep = annotator_id != a
    return data.counts - removed, annotator_counts[keep], annotator_cell[keep]


def leave_one_out(data: EncodedLabels, annotator_counts: np.ndarray, annotator_cell: np.ndarray,
                  annotator_id: np.ndarray, settings: AnalysisSettings, inference) -> dict[str, np.ndarray] | None:
    """inference name -> (A, C) verdicts with each annotator left out; None above ``leave_one_out_max``.

    inference: ``cells.inference`` (figures -> Holm and verdicts), passed in to keep the import one-way.
    """
    A, C = len(data.annotators), data.n_cells
    if A > settings.leave_one_out_max:
        return None
    out = {"people": np.empty((A, C), dtype=object), "these_annotators": np.empty((A, C), dtype=object)}
    conf, margin = settings.confidence, settings.equivalence_margin
    for a in range(A):
        counts, ann_counts, ann_cell = without_annotator(data, annotator_counts, annotator_cell, annotator_id, a)
        used = counts.sum(1) > 0
        ex_counts, ex_cell = counts[used], data.example_cell[used]
        out["people"][a] = inference(crossed_shares(ex_counts, ex_cell, ann_counts, ann_cell, C, conf, margin),
                                     settings).verdicts
        out["these_annotators"][a] = inference(clustered_shares(ex_counts, ex_cell, C, conf, margin),
                                               settings).verdicts
    return out
