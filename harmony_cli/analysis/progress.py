"""Where a study stands while it is being labelled: the admin dashboard's figures (no Streamlit, no torch).

Per cell: progress against the quota (examples x ``labels_per_example``), agreement so far and the
verdict of ``harmony analyze`` (from its report, so the rule and the Holm family are the same), with the
caveat "incomplete: N of M labels" while the cell is short of its quota. Per annotator: labels and the
median seconds per answer. Per cell and overall: position bias, the share of decisive labels (not
Neither, side recorded) that chose the map shown on the left, with a Wilson interval.

``labels`` is a frame like ``Store.labels_frame`` (one kind of labels: see ``select_label_source``);
``cells`` rows like ``Store.cells`` (the cell fields and ``examples``); ``per_example`` the study's
``labels_per_example`` (``harmony_cli.store.study_rules``; its default lives in conf/study).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..cells import CELL_FIELDS
from .significance import wilson_interval
from .values import finite, pair

def cell_key(row) -> tuple[str, ...]:
    """A cell's identity, as text (the analysis reports cells with text fields)."""
    return tuple(str(row[f]) for f in CELL_FIELDS)


def cell_progress(labels: pd.DataFrame, cells: Iterable[dict], per_example: int) -> list[dict]:
    """Per cell: examples, labels, needed (examples x per_example), counted (labels up to the quota of each
    example), progress (counted / needed), complete_examples, complete, and the caveat while incomplete.

    Labels beyond an example's quota do not make up for another example's missing ones. A cell is complete
    when every example has its quota (the rule of ``completeness.incomplete_cells``, which the report uses).
    """
    per_cell: dict[tuple, tuple[int, int, int]] = {}
    if len(labels):
        per_example_counts = labels.groupby([*CELL_FIELDS, "example_id"], observed=True).size()
        grouped = per_example_counts.groupby(level=list(range(len(CELL_FIELDS))), observed=True)
        for key, counts in grouped:
            per_cell[tuple(str(k) for k in key)] = (int(counts.sum()), int(counts.clip(upper=per_example).sum()),
                                                    int((counts >= per_example).sum()))
    rows = []
    for cell in cells:
        total, counted, full = per_cell.get(cell_key(cell), (0, 0, 0))
        needed = int(cell["examples"]) * per_example
        complete = counted >= needed
        rows.append({**{f: cell[f] for f in CELL_FIELDS}, "examples": int(cell["examples"]), "labels": total,
                     "needed": needed, "counted": counted, "progress": counted / needed if needed else 1.0,
                     "complete_examples": full, "complete": complete,
                     "caveat": None if complete else f"incomplete: {counted} of {needed} labels"})
    return rows


def open_examples(assignments: Iterable[dict], cells: list[dict]) -> dict[str, int]:
    """Per assigned annotator: how many examples their assignments open (``Store.assignments`` rows; a None
    field matches every cell; a cell opened by several assignments counts once). ``cells``: one study's."""
    opened: dict[str, set[int]] = {}
    for assignment in assignments:
        mine = opened.setdefault(str(assignment["annotator"]), set())
        for number, cell in enumerate(cells):
            if all(assignment.get(f) is None or str(assignment[f]) == str(cell.get(f))
                   for f in ("study", *CELL_FIELDS)):
                mine.add(number)
    return {name: sum(int(cells[n]["examples"]) for n in numbers) for name, numbers in opened.items()}


def annotator_progress(labels: pd.DataFrame, examples: int, open_to: dict[str, int] | None = None) -> list[dict]:
    """Per annotator (by name): labels, cells labelled in, the examples they may label, progress (labels /
    those examples) and the median seconds per answer (None when no response time was recorded).

    examples: what everyone may label; with ``open_to`` (see :func:`open_examples`) each annotator's own
    instead: assigned annotators without labels are listed too, and one with labels but no assignment
    has None examples and progress.
    """
    grouped = {str(name): mine for name, mine in labels.groupby("annotator")} if len(labels) else {}
    rows = []
    for name in sorted({*map(str, grouped), *(open_to or {})}):
        mine = grouped.get(name, labels.iloc[:0])
        seconds = pd.to_numeric(mine["response_ms"], errors="coerce").dropna() / 1000.0
        allowed = examples if open_to is None else open_to.get(name)
        rows.append({"annotator": name, "labels": int(len(mine)),
                     "cells": int(len(mine[list(CELL_FIELDS)].drop_duplicates())), "examples": allowed,
                     "progress": len(mine) / allowed if allowed else None,
                     "median_seconds": finite(seconds.median()) if len(seconds) else None})
    return rows


def left_choice(labels: pd.DataFrame, confidence: float) -> dict:
    """Position bias of some labels: of the decisive labels whose left map was recorded (``decisive``),
    how many chose the left map (``chose_left``), the share and its Wilson interval (None without any)."""
    sided = labels["left_map"].notna() & (labels["choice"] != "neither")
    decisive = int(sided.sum())
    chose_left = int((sided & (labels["choice"] == labels["left_map"])).sum())
    low, high = wilson_interval(np.array([chose_left]), np.array([decisive]), confidence)
    return {"decisive": decisive, "chose_left": chose_left,
            "left_share": chose_left / decisive if decisive else None,
            "left_interval": pair(low[0], high[0]) if decisive else None}


def position_bias_by_cell(labels: pd.DataFrame, cells: Iterable[dict], confidence: float) -> list[dict]:
    """:func:`left_choice` per cell (cells in the order given)."""
    groups = {tuple(str(k) for k in key): part for key, part in labels.groupby(list(CELL_FIELDS), observed=True)} \
        if len(labels) else {}
    none = labels.iloc[:0]
    return [{**{f: cell[f] for f in CELL_FIELDS}, **left_choice(groups.get(cell_key(cell), none), confidence)}
            for cell in cells]


def cell_verdicts(report: dict | None, progress: list[dict]) -> list[dict]:
    """Per row of :func:`cell_progress`: the verdict (for people by default; the one for these annotators beside
    it), the Neither-dominant flag and the agreement (Fleiss' kappa, Krippendorff's alpha) of ``report``
    (``harmony analyze``'s, see ``study_report``), with the row's caveat while the cell is incomplete and
    ``people_caveat`` where one annotator cannot support a verdict about people. Without a report (no labels
    yet) every figure is None."""
    by_cell = {cell_key(row): row for row in (report or {}).get("cells", [])}
    rows = []
    for cell in progress:
        found = by_cell.get(cell_key(cell)) or {}
        people_caveat = None
        if found and (report or {}).get("settings", {}).get("generalize") == "people" \
                and found.get("n_annotators", 2) < 2:
            people_caveat = f"{found['n_annotators']} annotator: too few for any verdict about people"
        rows.append({**{f: cell[f] for f in CELL_FIELDS}, "verdict": found.get("verdict"),
                     "verdict_these_annotators": (found.get("verdicts") or {}).get("these_annotators"),
                     "people_caveat": people_caveat, "neither_dominant": found.get("neither_dominant"),
                     "fleiss_kappa": found.get("fleiss_kappa"), "krippendorff_alpha": found.get("krippendorff_alpha"),
                     "caveat": cell["caveat"]})
    return rows


def study_overview(labels: pd.DataFrame, cells: list[dict], per_example: int, report: dict | None,
                   confidence: float) -> list[dict]:
    """One row per cell joining :func:`cell_progress`, :func:`cell_verdicts` and :func:`position_bias_by_cell`."""
    progress = cell_progress(labels, cells, per_example)
    verdict_rows = cell_verdicts(report, progress)
    bias = position_bias_by_cell(labels, cells, confidence)
    return [{**p, **v, **b} for p, v, b in zip(progress, verdict_rows, bias)]
