"""Roll-ups across cells, per-annotator statistics and left/right position bias."""
from __future__ import annotations

import numpy as np

from ..cells import REPORT_ORDER
from .clustered import clustered_shares
from .encoding import FINETUNED, NEITHER, ORIGINAL, EncodedLabels
from .settings import AnalysisSettings
from .significance import binomial_p_many, holm, wilson_interval
from .values import finite, pair, shares_with_intervals
from .verdict import VERDICTS


def rollups(data: EncodedLabels, verdicts: list[str], settings: AnalysisSettings,
            by: tuple[str, ...] = ("metric", "attribution", "backbone")) -> dict[str, list[dict]]:
    """Cells pooled per metric, per attribution, per backbone, with the same clustered figures as a cell.

    Per group: cells, examples, labels, counts, shares, the decisive rate and the net preference with
    their example-clustered intervals, the clustered direction test (Holm over the groups of that
    field) and the tally of the cells' verdicts. Pooled figures describe; verdicts belong to cells.
    """
    out = {}
    for field in by:
        names, cell_group = np.unique(data.cells[field].to_numpy(dtype=str), return_inverse=True)
        n_groups = len(names)
        example_group = cell_group[data.example_cell]
        figures = clustered_shares(data.counts, example_group, n_groups, settings.confidence,
                                   settings.equivalence_margin)
        p_holm = holm(figures.p_direction)
        counts = np.stack([np.bincount(example_group, weights=data.counts[:, k], minlength=n_groups)
                           for k in range(3)], 1).astype(np.int64)
        rows = []
        for g, name in enumerate(names):
            members = np.flatnonzero(cell_group == g)
            shares, _ = shares_with_intervals(counts[g], settings.confidence)
            rows.append({
                field: str(name), "n_cells": int(len(members)), "n_examples": int(figures.n_examples[g]),
                "n_labels": int(counts[g].sum()), "counts": {c: int(counts[g, i]) for i, c in enumerate(REPORT_ORDER)},
                "shares": shares, "decisive_rate": finite(figures.decisive_rate[g]),
                "decisive_rate_interval": pair(figures.decisive_low[g], figures.decisive_high[g]),
                "net_preference": finite(figures.delta[g]),
                "net_preference_interval": pair(figures.delta_low[g], figures.delta_high[g]),
                "p_value": finite(figures.p_direction[g]), "p_value_holm": finite(p_holm[g]),
                "verdicts": {v: sum(verdicts[c] == v for c in members) for v in VERDICTS},
            })
        out[field] = rows
    return out


def _side_bias(n: np.ndarray, left: np.ndarray, confidence: float) -> list[dict]:
    """Per group: decisive labels with a recorded side, how many chose the left map, share, Wilson, p."""
    low, high = wilson_interval(left, n, confidence)
    p = binomial_p_many(left, n)
    return [{"n_decisive_with_side": int(n[g]), "chose_left": int(left[g]),
             "left_share": finite(left[g] / n[g]) if n[g] else None,
             "left_interval": [finite(low[g]), finite(high[g])] if n[g] else None,
             "p_value": finite(p[g])} for g in range(len(n))]


def annotator_statistics(data: EncodedLabels, confidence: float) -> list[dict]:
    """Per annotator: labels, shares, decisive fine-tuned share, agreement with the others' majority,
    and left/right position bias.

    Agreement with the majority is leave-one-out: each label is compared with the majority of
    the other annotators' labels on its example, where they have a strict majority.
    """
    A = len(data.annotators)
    ann, choice = data.label_annotator, data.label_choice.astype(np.int64)
    per = np.bincount(ann * 3 + choice, minlength=A * 3).reshape(A, 3)
    # The others' majority depends only on the example and the label's own choice: tabulate it per
    # example for each choice, then look every label up (no (labels, 3) temporaries).
    strict_by = np.zeros(data.counts.shape, dtype=bool)
    agree_by = np.zeros(data.counts.shape, dtype=bool)
    for own in range(3):
        others = data.counts.copy()
        others[:, own] -= 1
        top = others.max(1)
        strict_by[:, own] = (top > 0) & ((others == top[:, None]).sum(1) == 1)
        agree_by[:, own] = strict_by[:, own] & (others.argmax(1) == own)
    flat = data.label_example * 3 + choice
    strict, agree = strict_by.ravel()[flat], agree_by.ravel()[flat]
    n_compared = np.bincount(ann[strict], minlength=A)
    n_agree = np.bincount(ann[agree], minlength=A)
    n_cells = (np.bincount(ann * data.n_cells + data.label_cell, minlength=A * data.n_cells)
               .reshape(A, data.n_cells) > 0).sum(1)
    sided = (choice != NEITHER) & (data.left_map >= 0)
    bias = _side_bias(np.bincount(ann[sided], minlength=A),
                      np.bincount(ann[sided & (choice == data.left_map)], minlength=A), confidence)

    rows = []
    for a in range(A):
        total = int(per[a].sum())
        dec = int(per[a, FINETUNED] + per[a, ORIGINAL])
        rows.append({
            "annotator": str(data.annotators[a]), "simulated": bool(data.annotator_simulated[a]),
            "admin": bool(data.annotator_admin[a]),
            "n_labels": total, "n_cells": int(n_cells[a]),
            "counts": {c: int(per[a, i]) for i, c in enumerate(REPORT_ORDER)},
            "shares": {c: finite(per[a, i] / total) if total else None for i, c in enumerate(REPORT_ORDER)},
            "decisive_finetuned_share": finite(per[a, FINETUNED] / dec) if dec else None,
            "agreement_with_majority": finite(n_agree[a] / n_compared[a]) if n_compared[a] else None,
            "n_compared_with_majority": int(n_compared[a]),
            "position": bias[a],
        })
    return rows


def position_bias(data: EncodedLabels, confidence: float) -> dict:
    """Across all labels: among decisive labels whose left map was recorded, the share choosing the left map
    (two-sided binomial test against 0.5), and the decisive fine-tuned share by the fine-tuned map's side."""
    choice = data.label_choice
    sided = (choice != NEITHER) & (data.left_map >= 0)
    overall = _side_bias(np.array([sided.sum()]), np.array([(sided & (choice == data.left_map)).sum()]),
                         confidence)[0]
    if overall["n_decisive_with_side"] == 0:
        overall["notes"] = ["no side recorded on any decisive label: position bias cannot be measured"]
        overall["finetuned_share_by_side"] = None
        return overall
    fin_left = data.left_map == FINETUNED
    by_side = {}
    for name, where in (("finetuned_left", sided & fin_left), ("finetuned_right", sided & ~fin_left)):
        n = int(where.sum())
        share = finite((choice[where] == FINETUNED).mean()) if n else None
        by_side[name] = {"n": n, "decisive_finetuned_share": share}
    overall["finetuned_share_by_side"] = by_side
    overall["notes"] = []
    return overall

