"""Writing an analysis report folder: report.json, cells.csv, report.md, report.tex and the figures.

The folder is written as a whole: into a temporary sibling that is renamed into place, so a
reader never sees half a report.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

import pandas as pd

from ..errors import UserError
from .latex import latex_table
from .markdown import markdown

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


def _staging_folder(out_dir: Path) -> Path:
    """A new empty folder beside ``out_dir`` to write the report into; one-line errors when impossible."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file, not a folder: give a folder for the report (it is created)")
    staging = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions for the renamed folder
    except OSError as exc:
        raise UserError(f"cannot write the report into {out_dir} ({exc.strerror or exc}): give a writable "
                        f"folder with --out") from exc
    return staging


def write_report(report: dict, out_dir: Path, plot: bool = True) -> dict[str, Path]:
    """Write report.json, cells.csv, report.md, report.tex and the figures (PNG and PDF) into ``out_dir`` at once.

    The metric-gain figure (gain.png/.pdf) is written only when the study has per-example scores.

    The files are written into a temporary folder next to ``out_dir`` and moved into place
    only when all of them are complete. Returns {file name: path}.
    """
    out_dir = Path(out_dir)
    text = to_json(report)  # fails before anything is written if a NaN slipped in
    staging = _staging_folder(out_dir)
    try:
        (staging / "report.json").write_text(text + "\n", encoding="utf-8")
        cells_frame(report).to_csv(staging / "cells.csv", index=False)
        (staging / "report.md").write_text(markdown(report), encoding="utf-8")
        (staging / "report.tex").write_text(latex_table(report), encoding="utf-8")
        if plot:
            from .plot import gain_plot, preferences_plot

            preferences_plot(report, staging / "preferences.png")
            gain_plot(report, staging / "gain.png")
        if out_dir.exists():
            # An existing folder (--out given twice): replace our files one by one, atomically each.
            for path in staging.iterdir():
                os.replace(path, out_dir / path.name)
            staging.rmdir()
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: out_dir / name for name in REPORT_FILES if (out_dir / name).exists()}


__all__ = ["REPORT_FILES", "cells_frame", "to_json", "write_report"]
