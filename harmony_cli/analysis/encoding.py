"""Labels as integer arrays (encoding) and the choice of real vs simulated labels.

A label is one annotator's choice for one example: ``original``, ``neither`` or ``finetuned``.
A *cell* is (dataset, metric, backbone, attribution). Everything downstream works on the
per-example count table built here, vectorized over examples (loops run over cells only).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cells import CELL_FIELDS, REPORT_ORDER
from ..errors import UserError

# Codes of the choices: their index in REPORT_ORDER (the count table's columns).
ORIGINAL, NEITHER, FINETUNED = range(3)
REQUIRED_COLUMNS = ("example_id", *CELL_FIELDS, "annotator", "choice")


@dataclass
class EncodedLabels:
    """Labels as integer arrays. E examples, L labels, C cells, A annotators.

    cells: (C, 4) frame of the cell fields, in report order.
    example_ids: (E,) store ids; example_cell: (E,) cell index of each example.
    counts: (E, 3) labels per example and choice (REPORT_ORDER).
    label_example, label_choice, label_annotator: (L,) indices per label.
    annotators: (A,) names; annotator_simulated, annotator_admin: (A,) bool (an admin of the store).
    original_score, finetuned_score: (E,) float (NaN where absent).
    left_map: (L,) code of the map shown left (ORIGINAL / FINETUNED), -1 where not recorded.
    label_cell: (L,) cell index per label.
    """

    cells: pd.DataFrame
    example_ids: np.ndarray
    example_cell: np.ndarray
    counts: np.ndarray
    label_example: np.ndarray
    label_choice: np.ndarray
    label_annotator: np.ndarray
    annotators: np.ndarray
    annotator_simulated: np.ndarray
    annotator_admin: np.ndarray
    original_score: np.ndarray
    finetuned_score: np.ndarray
    left_map: np.ndarray
    label_cell: np.ndarray

    @property
    def n_cells(self) -> int:
        return len(self.cells)


def _codes(values: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``categories``; -1 for anything else (None, NaN, unknown)."""
    codes, uniques = pd.factorize(values)  # fast on object and Arrow strings alike
    lookup = np.append(pd.Index(list(categories)).get_indexer(pd.Index(uniques, dtype=object)), -1)
    return lookup[codes].astype(np.int8)  # code -1 (missing) picks the appended -1


def encode_labels(labels: pd.DataFrame, cells: pd.DataFrame | None = None) -> EncodedLabels:
    """Integer arrays of a labels frame (columns of ``Store.labels_frame``).

    ``cells``: optional frame of cells (CELL_FIELDS columns) to include even without labels.
    An example id identifies its cell (as in the store). Raises UserError on missing
    columns or unknown choices.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in labels.columns]
    if missing:
        raise UserError(f"the labels lack column(s) {', '.join(missing)}: give a frame like Store.labels_frame()")
    choice = _codes(labels["choice"], REPORT_ORDER)
    if (choice < 0).any():
        bad = sorted(set(labels["choice"][choice < 0].astype(str)))[:5]
        raise UserError(f"unknown choice(s) {', '.join(map(repr, bad))}: a label is one of {', '.join(REPORT_ORDER)}")

    label_example, example_ids = pd.factorize(labels["example_id"])
    n_labels, n_examples = len(labels), len(example_ids)
    # The first label row of each example carries its cell and scores.
    first = np.empty(n_examples, dtype=np.int64)
    first[label_example[::-1]] = np.arange(n_labels - 1, -1, -1)
    per_example = labels[[c for c in (*CELL_FIELDS, "original_score", "finetuned_score")
                          if c in labels.columns]].iloc[first]

    cell_keys = per_example[list(CELL_FIELDS)].astype(str).reset_index(drop=True)
    all_cells = cell_keys.drop_duplicates()
    if cells is not None and len(cells):
        all_cells = pd.concat([all_cells, cells[list(CELL_FIELDS)].astype(str)]).drop_duplicates()
    all_cells = all_cells.sort_values(list(CELL_FIELDS)).reset_index(drop=True)
    cell_index = pd.MultiIndex.from_frame(all_cells)
    example_cell = cell_index.get_indexer(pd.MultiIndex.from_frame(cell_keys)).astype(np.int64)

    counts = np.bincount(label_example * 3 + choice, minlength=n_examples * 3).reshape(n_examples, 3)
    label_annotator, annotators = pd.factorize(labels["annotator"], sort=True)
    def flag(column: str) -> np.ndarray:
        out = np.zeros(len(annotators), dtype=bool)
        if column in labels.columns:
            out[label_annotator] = labels[column].fillna(False).to_numpy(dtype=bool)
        return out

    def scores(column: str) -> np.ndarray:
        if column not in per_example.columns:
            return np.full(n_examples, np.nan)
        return pd.to_numeric(per_example[column], errors="coerce").to_numpy(dtype=float)

    left = (_codes(labels["left_map"], REPORT_ORDER) if "left_map" in labels.columns
            else np.full(n_labels, -1, dtype=np.int8))
    return EncodedLabels(
        cells=all_cells, example_ids=np.asarray(example_ids), example_cell=example_cell, counts=counts,
        label_example=label_example.astype(np.int64), label_choice=choice,
        label_cell=example_cell[label_example],
        label_annotator=label_annotator.astype(np.int64), annotators=np.asarray(annotators, dtype=object),
        annotator_simulated=flag("simulated"), annotator_admin=flag("admin"), original_score=scores("original_score"),
        finetuned_score=scores("finetuned_score"), left_map=left,
    )



def select_label_source(labels: pd.DataFrame, simulated: bool | None = None, study: str = "the study"
                        ) -> tuple[pd.DataFrame, str]:
    """Real or simulated labels, never both: (labels, "real" | "simulated").

    simulated=None: the real labels when there are any, else the simulated ones.
    Raises UserError when the asked-for kind has no labels.
    """
    flags = labels["simulated"].fillna(False).astype(bool) if "simulated" in labels.columns else \
        pd.Series(False, index=labels.index)
    n_sim = int(flags.sum())
    n_real = len(labels) - n_sim
    if simulated is None:
        simulated = n_real == 0
    if simulated and n_sim == 0:
        raise UserError(f"{study} has no simulated labels ({n_real} real): drop --simulated to analyze the real ones")
    if not simulated and n_real == 0:
        raise UserError(f"{study} has no real labels ({n_sim} simulated): use --simulated to analyze those")
    chosen = labels[flags] if simulated else labels[~flags]
    return chosen.reset_index(drop=True), ("simulated" if simulated else "real")
