"""``harmony replay``: what a sequential design would have done with a study's labels.

The labels of a study (the ones ``harmony analyze`` reads: real by default) are replayed in the order
they were given (created_at, then label id) under a sequential design (:mod:`.sequential`): each cell is
looked at after every ``look_every`` of its labels and stops at the first look that decides it. Per
cell the replay reports the labels used there, the look, the verdict there and the full-data verdict
(``harmony analyze``'s, on all the cell's labels, same settings and inference); a decided cell saves the
labels it would not have needed. An imported study records no times: its labels come in the original
app's order (its label ids).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..cells import CELL_FIELDS, cell_text
from ..defaults import config_default
from ..designs import RULE_KEY
from ..errors import UserError
from .encoding import encode_labels
from .plot import VERDICT_COLORS, save_figure
from .sequential import SequentialDesign, replay, study_rule
from .settings import AnalysisSettings
from .study import analyze_study_labels, planned_labels_per_example, study_directions, study_labels

# A cell decided at a look: it stops taking labels (inconclusive at the last look is not a decision).
DECIDED = ("aligned", "misaligned", "no_preference", "imperceptible")
DIRECTION = {"aligned": 1, "misaligned": -1}
# What a replay writes into its folder (the figure's PDF beside its PNG).
REPLAY_FILES = ("replay.csv", "replay.json", "replay.png", "replay.pdf")


def check_design_numbers(look_every: int | None, max_labels: int | None) -> None:
    """UserError for a look interval or a maximum that is not a positive whole number of labels."""
    for option, value in (("--look-every", look_every), ("--max-labels", max_labels)):
        if value is not None and value < 1:
            raise UserError(f"{option} {value} must be at least 1: a number of labels of one cell")
    if look_every is not None and max_labels is not None and look_every > max_labels:
        raise UserError(f"--look-every {look_every} is more than --max-labels {max_labels}: a cell would never be "
                        f"looked at before its last labels; give a smaller --look-every")


def replay_design(study, cells: pd.DataFrame, label_cell: np.ndarray, labels_per_example: int,
                  look_every: int | None = None, max_labels: int | None = None):
    """(SequentialDesign, where its numbers come from) for replaying ``study``.

    The study's recorded sequential design when it has one; else ``look_every`` (default: conf/study's
    ``sequential.look_every``) and ``max_labels`` (default: the planned examples per cell x labels per
    example; for an imported study, which records no plan, the largest cell's label count)."""
    config = study.config or {}
    examples = int(config.get("examples_per_cell") or cells["examples"].max())
    recorded = SequentialDesign.from_config(config, examples, labels_per_example)
    if recorded is not None:
        if look_every is not None or max_labels is not None:
            raise UserError(f"study {study.name!r} records its sequential design (at most {recorded.max_labels} "
                            f"labels per cell, a look every {recorded.look_every}): drop --look-every/--max-labels")
        return recorded, "the study's recorded sequential design"
    check_design_numbers(look_every, max_labels)
    if look_every is None:
        look_every, every_from = int(config_default("study.sequential.look_every")), "conf/study"
    else:
        every_from = "--look-every"
    if max_labels is not None:
        max_from = "--max-labels"
    elif study.source == "legacy":
        max_labels = int(np.bincount(label_cell).max())
        max_from = "the largest cell's label count (an imported study records no plan)"
    else:
        max_labels = examples * labels_per_example
        max_from = f"{examples} examples x {labels_per_example} labels per example as planned"
    if look_every > max_labels:
        raise UserError(f"a look every {look_every} labels is more than the {max_labels} labels per cell at most "
                        f"({max_from}): give a smaller --look-every")
    return (SequentialDesign(max_labels=max_labels, look_every=look_every),
            f"a fixed study: a look every {look_every} labels ({every_from}), at most {max_labels} ({max_from})")


def replay_study(store, study_name: str | None, settings: AnalysisSettings | None = None,
                 simulated: bool | None = None, exclude: list[str] | tuple[str, ...] = (),
                 look_every: int | None = None, max_labels: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict:
    """The replay of one study of ``store`` as JSON-ready data (see :func:`replay_rows` for each cell).

    progress: called with (looks done, looks) before the first look and after each one (None: silent); the replay
    ends early once every cell is decided. settings: the rule (None: a sequential study's recorded one, else
    conf/analysis's); a study that recorded its rule refuses others."""
    study, cells, _, labels, source = study_labels(store, study_name, simulated, exclude, in_given_order=True)
    if (study.config or {}).get(RULE_KEY):
        if settings is not None:
            raise UserError(f"study {study.name!r} recorded its verdict rule when it was built, and replay uses it: "
                            f"drop the analysis.settings overrides")
        settings = study_rule(study.config)
    settings = settings or AnalysisSettings.defaults()
    per_example = planned_labels_per_example(study, exclude)
    # the full-data verdicts as harmony analyze gives them (the bootstrap is descriptive: no verdict needs it)
    full = analyze_study_labels(labels, cells, replace(settings, bootstrap_resamples=0), study_directions(study),
                                per_example)
    data = encode_labels(labels, cells)
    design, origin = replay_design(study, cells, data.label_cell, per_example, look_every, max_labels)
    family = data.n_cells
    tick = None
    if progress is not None:
        done = iter(range(1, design.n_looks + 1))
        progress(0, design.n_looks)
        tick = lambda: progress(next(done), design.n_looks)  # noqa: E731 - one call per look
    stops = replay(data.label_cell, data.label_example, data.label_annotator, data.label_choice, family, design,
                   settings, family, progress=tick)
    rows = replay_rows(data.cells, np.bincount(data.label_cell, minlength=family), stops, full["cells"])
    return {"study": study.name, "study_source": study.source, "label_source": source, "n_labels": int(len(labels)),
            "settings": settings.to_dict(), "rule": settings.describe(), "family": family,
            "design": {"max_labels": design.max_labels, "look_every": design.look_every, "n_looks": design.n_looks,
                       "origin": origin},
            "excluded_annotators": list(exclude), "cells": rows, **totals(rows)}


def replay_rows(cells: pd.DataFrame, full_labels: np.ndarray, stops, full_cells: list[dict]) -> list[dict]:
    """One row per cell: its fields, full (labels), labels (used at the stop), look, verdict (at the stop),
    full_verdict, direction (same / opposite / differs: the sign of aligned +1 / misaligned -1 / else 0),
    same_verdict and saved (full - labels for a decided cell, else 0)."""
    verdict_of = {tuple(str(c[f]) for f in CELL_FIELDS): c["verdict"] for c in full_cells}
    rows = []
    for c in range(len(cells)):
        key = tuple(str(cells.iloc[c][f]) for f in CELL_FIELDS)
        verdict, full_verdict = str(stops.verdict[c]), verdict_of[key]
        used, total = int(stops.labels[c]), int(full_labels[c])
        at, whole = DIRECTION.get(verdict, 0), DIRECTION.get(full_verdict, 0)
        rows.append({**dict(zip(CELL_FIELDS, key)), "full": total, "labels": used, "look": int(stops.look[c]),
                     "verdict": verdict, "full_verdict": full_verdict,
                     "direction": "same" if at == whole else ("opposite" if at * whole < 0 else "differs"),
                     "same_verdict": verdict == full_verdict,
                     "saved": total - used if verdict in DECIDED else 0})
    return rows


def totals(rows: list[dict]) -> dict:
    """Labels in all, used and saved over the cells, and the cells whose stop contradicts the full data."""
    full = sum(r["full"] for r in rows)
    saved = sum(r["saved"] for r in rows)
    return {"full_labels": full, "used_labels": full - saved, "saved_labels": saved,
            "saved_share": saved / full if full else 0.0, "decided_cells": sum(r["verdict"] in DECIDED for r in rows),
            "contradicting_cells": sum(r["direction"] == "opposite" for r in rows)}


def replay_frame(result: dict) -> pd.DataFrame:
    """The cells of a replay as the CSV's frame."""
    return pd.DataFrame(result["cells"])


def replay_figure(result: dict, path) -> None:
    """Per cell, the labels used at the stop (coloured by the verdict there) against all the cell's labels, with
    the verdict at the stop and the full-data one (PNG and PDF)."""
    rows = result["cells"]
    several = len({r["dataset"] for r in rows}) > 1
    fig = Figure(figsize=(7.0, 0.9 + 0.26 * len(rows)))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [r["full"] for r in rows], color="#e8e8e8", height=0.75, label="all labels")
    for verdict in dict.fromkeys(r["verdict"] for r in rows):  # one legend entry per verdict at the stop
        mine = [i for i, r in enumerate(rows) if r["verdict"] == verdict]
        # no decision (inconclusive, or labels ran out) hatched: the cell used every label it had
        ax.barh(y[mine], [rows[i]["labels"] for i in mine], height=0.45, label=f"used until: {verdict}",
                color="white" if verdict not in DECIDED else VERDICT_COLORS.get(verdict, "#888888"),
                edgecolor="#888888", hatch=None if verdict in DECIDED else "////", linewidth=0.5)
    for yi, r in zip(y, rows):
        mark = " ≠" if r["direction"] == "opposite" else ""
        ax.text(r["full"], yi, f" {r['verdict']} → {r['full_verdict']}{mark}", va="center", fontsize=6.5)
    ax.set_yticks(y, [cell_text(r, several) for r in rows], fontsize=7)
    ax.set_xlim(0, 1.45 * max([r["full"] for r in rows] + [1]))
    ax.set_xlabel("labels of the cell")
    design = result["design"]
    ax.set_title(f"{result['study']}: {result['saved_labels']} of {result['full_labels']} labels saved; "
                 f"a look every {design['look_every']}, at most {design['max_labels']} (verdict at stop → full data)",
                 fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=3, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
