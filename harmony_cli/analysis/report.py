"""Writing an analysis report folder: report.json, cells.csv, report.md, report.tex and the figures.

The folder is written as a whole: into a temporary sibling that is renamed into place, so a
reader never sees half a report.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..outputs import check_folder_target, write_folder
from .latex import latex_table
from .markdown import markdown
from .plot import gain_plot, preferences_plot

REPORT_FILES = ("report.json", "cells.csv", "report.md", "report.tex", "preferences.png", "preferences.pdf",
                "gain.png", "gain.pdf")


def to_json(report: dict) -> str:
    """The report as JSON text; fails on NaN or infinity (undefined values must be None)."""
    return json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False)


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}_{key}" if prefix else key, out)
    elif isinstance(value, list) and len(value) == 2 and "interval" in prefix:
        out[f"{prefix}_low"], out[f"{prefix}_high"] = value
    elif value is None and "interval" in prefix:
        out[f"{prefix}_low"] = out[f"{prefix}_high"] = None
    elif isinstance(value, list):
        out[prefix] = "; ".join(map(str, value))
    else:
        out[prefix] = value


def cells_frame(report: dict) -> pd.DataFrame:
    """One flat row per cell (nested fields joined with ``_``, intervals as ``_low``/``_high``); the report's
    notes (e.g. no per-example scores) in a ``report_notes`` column."""
    rows = []
    for cell in report["cells"]:
        flat: dict = {"report_notes": "; ".join(report.get("notes", []))}
        _flatten({k: v for k, v in cell.items() if k != "gain_regression"}, "", flat)
        if cell.get("gain_regression") is not None:
            _flatten({k: v for k, v in cell["gain_regression"].items() if k != "bins"}, "gain_regression", flat)
        rows.append(flat)
    return pd.DataFrame(rows)


def write_report(report: dict, out_dir: Path, plot: bool = True, force: bool = False,
                 protected: list[Path] | None = None) -> dict[str, Path]:
    """Write report.json, cells.csv, report.md, report.tex and the figures (PNG and PDF) into ``out_dir`` at once.

    The metric-gain figure (gain.png/.pdf) is written only when the study has per-example scores.

    The files are written into a temporary folder next to ``out_dir`` and moved into place
    only when all of them are complete. A report file already in ``out_dir`` is replaced only with
    ``force``, and none of ``protected`` (the store's files) ever. Returns {file name: path}.
    """
    out_dir = Path(out_dir)
    text = to_json(report)  # fails before anything is written if a NaN slipped in
    check_folder_target(out_dir, REPORT_FILES, "--out", force, protected or [])

    def write(staging: Path) -> None:
        (staging / "report.json").write_text(text + "\n", encoding="utf-8")
        cells_frame(report).to_csv(staging / "cells.csv", index=False)
        (staging / "report.md").write_text(markdown(report), encoding="utf-8")
        (staging / "report.tex").write_text(latex_table(report), encoding="utf-8")
        if plot:
            preferences_plot(report, staging / "preferences.png")
            gain_plot(report, staging / "gain.png")

    names = write_folder(out_dir, write, "--out", force)
    return {name: out_dir / name for name in names}


__all__ = ["REPORT_FILES", "cells_frame", "to_json", "write_report"]
