"""The whole analysis of a labels frame, as JSON-ready data (no NaN: undefined values are None)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..cells import CELL_FIELDS
from .cells import cell_statistics
from .encoding import encode_labels
from .rollups import annotator_statistics, position_bias, rollups
from .settings import AnalysisSettings

INFERENCE = ("Two inferences, both reported. For people (examples and annotators both sampled, a crossed design): "
             "the decisive rate d, the net preference (fine-tuned - original) / labels and the fine-tuned share of "
             "decisive labels pi are label-level means whose variance comes from method-of-moments variance "
             "components (Henderson's method 1; for a balanced design the two-way ANOVA (MS_annotator + MS_example "
             "- MS_residual) / N), with a t reference on Satterthwaite degrees of freedom. For these annotators "
             "(new examples, the same people): each example's labels are one cluster, cluster-robust (sandwich) "
             "variances with G/(G-1) (= statsmodels OLS with cov_type='cluster' by example), t on G - 1 df. "
             "d: Wilson interval at the design-effect sample size with the t critical value; direction: t test of "
             "the net preference; no_preference: two one-sided t tests of |pi - 0.5| < the equivalence margin.")
NO_SCORES_NOTE = ("the study has no per-example metric scores (e.g. an imported study): the metric-gain regression "
                  "and figure are not computed")


def study_cell_sizes(cells: pd.DataFrame | None, data) -> np.ndarray | None:
    """(C,) examples per cell in the study (``cells.examples``), else None (labelled examples are used)."""
    if cells is None or not len(cells) or "examples" not in cells.columns:
        return None
    keyed = cells.assign(**{f: cells[f].astype(str) for f in CELL_FIELDS}).set_index(list(CELL_FIELDS))
    study_counts = keyed["examples"].reindex(pd.MultiIndex.from_frame(data.cells)).to_numpy()
    labelled = np.bincount(data.example_cell, weights=data.counts.sum(1) > 0, minlength=data.n_cells)
    return np.where(np.isfinite(study_counts.astype(float)), study_counts, labelled).astype(np.int64)


def report_notes(data, higher_is_better: dict | None, rows: list[dict], settings: AnalysisSettings) -> list[str]:
    """Study-level notes every output carries."""
    notes = []
    admins = [str(n) for n, admin in zip(data.annotators, data.annotator_admin) if admin]
    if admins:
        notes.append(f"annotator(s) {', '.join(admins)} administer the store (marked 'admin'): they may know which "
                     f"map is which; `harmony analyze --exclude-annotator NAME` analyzes without them")
    if len(data.annotators) > settings.leave_one_out_max:
        notes.append(f"{len(data.annotators)} annotators, more than leave_one_out_max {settings.leave_one_out_max}: "
                     f"no leave-one-annotator-out verdicts (set analysis.settings.leave_one_out_max)")
    if not (np.isfinite(data.original_score) & np.isfinite(data.finetuned_score)).any():
        notes.append(NO_SCORES_NOTE)
    missing = sorted({r["metric"] for r in rows if r["gain_regression"] is not None}
                     - set((higher_is_better or {}).keys()))
    if missing:
        notes.append(f"the study records no direction for metric(s) {', '.join(missing)} "
                     f"(study.config['higher_is_better']): taken as higher is better")
    return notes


def analyze_labels(labels: pd.DataFrame, settings: AnalysisSettings | None = None, cells: pd.DataFrame | None = None,
                   higher_is_better: dict[str, bool] | None = None) -> dict:
    """The whole analysis of a labels frame.

    labels: columns of ``Store.labels_frame`` (at least example_id, the cell fields, annotator, choice).
    cells: optional frame of the study's cells (CELL_FIELDS + ``examples``): cells without labels
    are reported too, and ``n_examples`` counts the study's examples, not only the labelled ones.
    higher_is_better: metric -> bool as recorded by the study (``study.config["higher_is_better"]``).
    Returns {settings, rule, inference, notes, n_labels, n_examples, n_annotators, cells, annotators,
    rollups, position_bias}.
    """
    settings = settings or AnalysisSettings.defaults()
    data = encode_labels(labels, cells)
    rows = cell_statistics(data, settings, n_examples=study_cell_sizes(cells, data), higher_is_better=higher_is_better)
    return {
        "settings": settings.to_dict(),
        "rule": settings.describe(),
        "inference": INFERENCE,
        "notes": report_notes(data, higher_is_better, rows, settings),
        "n_labels": int(len(labels)),
        "n_examples": int(sum(r["n_examples"] for r in rows)),
        "n_annotators": int(len(data.annotators)),
        "cells": rows,
        "annotators": annotator_statistics(data, settings.confidence),
        "rollups": rollups(data, [r["verdict"] for r in rows], settings),
        "position_bias": position_bias(data, settings.confidence),
    }
