"""Which cells of a study are still being labelled: fewer labels than ``labels_per_example`` x examples.

A verdict on an incomplete cell may still change as labels come in, so a report says which cells
are incomplete, in its notes, in each such cell's notes and beside the verdict tally.
"""
from __future__ import annotations

import pandas as pd

from ..cells import CELL_FIELDS, cell_text


def incomplete_cells(labels: pd.DataFrame, cells: pd.DataFrame, labels_per_example: int) -> list[dict]:
    """The cells (rows of ``cells``: CELL_FIELDS + ``examples``) whose analyzed ``labels`` fall short.

    Each: the cell fields, ``examples``, ``labels`` (counted up to each example's quota: extra labels on
    one example do not make up for another's missing ones, so labels < needed), ``needed`` (examples x
    labels_per_example) and ``short_examples`` (examples with fewer than labels_per_example labels,
    unlabelled ones included).
    """
    per_example = labels.groupby([*CELL_FIELDS, "example_id"]).size().rename("n").reset_index()
    short = []
    for cell in cells.to_dict("records"):
        mine = per_example
        for f in CELL_FIELDS:
            mine = mine[mine[f].astype(str) == str(cell[f])]
        examples = int(cell["examples"])
        full = int((mine["n"] >= labels_per_example).sum())
        if full < examples:
            short.append({**{f: cell[f] for f in CELL_FIELDS}, "examples": examples, "labels": int(mine["n"].clip(upper=labels_per_example).sum()),
                          "needed": examples * labels_per_example, "short_examples": examples - full})
    return short


def note_incomplete(report: dict, labels: pd.DataFrame, cells: pd.DataFrame, labels_per_example: int) -> dict:
    """Record the incomplete cells in ``report`` (``incomplete_cells``, the notes); returns the report."""
    short = incomplete_cells(labels, cells, labels_per_example)
    report["labels_per_example"] = labels_per_example
    report["incomplete_cells"] = short
    if not short:
        return report
    by_key = {tuple(str(c[f]) for f in CELL_FIELDS): c for c in short}
    for row in report["cells"]:
        found = by_key.get(tuple(str(row[f]) for f in CELL_FIELDS))
        if found is not None:
            row["notes"] = [*row["notes"], f"incomplete: {found['labels']} of {found['needed']} labels "
                                           f"({found['short_examples']} examples short): the verdict may change"]
    report["notes"] = [*report["notes"], f"{len(short)} of {len(report['cells'])} cells are incomplete (fewer than "
                                         f"{labels_per_example} labels per example): "
                                         f"{', '.join(cell_text(c) for c in short[:6])}"
                                         f"{', ...' if len(short) > 6 else ''}; their verdicts may change"]
    return report


def verdict_caveat(report: dict) -> str:
    """What the verdict line adds when cells are incomplete ("" when none is)."""
    short = report.get("incomplete_cells") or []
    return f"; {len(short)} cells incomplete: their verdicts are provisional" if short else ""
