"""``harmony analyze``: does the metric agree with people? A report of a study's labels.

Reads the labels of one study (default: the newest) from the store, runs harmony_cli.analysis on them,
writes the report folder (report.json, cells.csv, report.md, report.tex, figures as PNG + PDF) and
prints the cells as a table, Markdown, CSV or JSON. Real and simulated labels are never mixed: by
default the real labels are analyzed when the study has any, else the simulated ones.
"""
from __future__ import annotations

import re
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from ..outputs import new_folder
from .options import DbOption

VERDICT_COLORS = {"aligned": "bold blue", "misaligned": "bold dark_orange", "no_preference": "bold",
                  "imperceptible": "dim", "inconclusive": "italic"}


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def pick_study(store, name: str | None):
    """The study called ``name``, else the newest one (latest created); UserError when there is none."""
    from ..store.db import shown_url

    studies = store.studies()
    where = shown_url(store.url)
    if not studies:
        raise UserError(f"no studies in {where}: build one (harmony build-dataset) or import one "
                        f"(harmony import-legacy PATH), or give --db the right database")
    if name is None:
        return max(studies, key=lambda s: (s.created_at.replace(tzinfo=None) if s.created_at else datetime.min, s.id))
    for study in studies:
        if study.name == name:
            return study
    known = ", ".join(s.name for s in studies[:5]) + (", ..." if len(studies) > 5 else "")
    raise UserError(f"no study named {name!r} in {where} (it has: {known}): see `harmony studies`")


def study_directions(study) -> dict[str, bool]:
    """metric -> higher_is_better as the study recorded it (``study.config["higher_is_better"]``)."""
    recorded = (study.config or {}).get("higher_is_better") or {}
    return {str(k): bool(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def study_report(store, study_name: str | None = None, settings=None, simulated: bool | None = None) -> dict:
    """The analysis of one study of ``store`` as JSON-ready data, with the study's metadata."""
    import pandas as pd

    from ..analysis import AnalysisSettings, analyze_labels, select_label_source
    from ..analysis.completeness import note_incomplete
    from ..store import study_rules
    from ..store.db import shown_url

    study = pick_study(store, study_name)
    cells = pd.DataFrame(store.cells(study.name))
    if cells.empty:
        raise UserError(f"study {study.name!r} has no examples: build it with harmony build-dataset or "
                        f"harmony import-legacy")
    labels = store.labels_frame(study.name)
    if labels.empty:
        raise UserError(f"study {study.name!r} has no labels yet: annotate it (harmony serve) or "
                        f"simulate annotators (harmony simulate-annotators)")
    chosen, source = select_label_source(labels, simulated, study=f"study {study.name!r}")
    analysis = analyze_labels(chosen, settings or AnalysisSettings.defaults(), cells=cells,
                              higher_is_better=study_directions(study))
    note_incomplete(analysis, chosen, cells, study_rules(study.config, study.source).labels_per_example)
    return {"study": study.name, "study_source": study.source, "database": shown_url(store.url),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label_source": source,
            "labels_left_out": int(len(labels) - len(chosen)), **analysis}


def _pct(v, sign: bool = False) -> str:
    return "–" if v is None else (f"{100 * v:+.0f}" if sign else f"{100 * v:.0f}")


def _p(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def report_table(report: dict):
    """The cells of a report as a rich Table (one line per cell, every figure in full)."""
    from rich.table import Table

    several = len({c["dataset"] for c in report["cells"]}) > 1
    level = f"{report['settings']['confidence']:.0%}"
    table = Table(title=f"{report['study']}: {report['n_labels']} {report['label_source']} labels by "
                        f"{report['n_annotators']} annotators. Rule: {report['rule']}", title_justify="left",
                  header_style="bold", caption=f"o/n/f: % original / neither / fine-tuned; d: decisive rate; Δ: net "
                  f"preference (fine-tuned - original)/labels, % [{level}, clustered by example]; p: clustered "
                  f"direction test, Holm; p lab: label-level binomial (secondary), Holm; κ Fleiss, α Krippendorff; "
                  f"†: Neither dominant", caption_justify="left")
    table.add_column("cell", no_wrap=True)
    for name in ("labels", "o/n/f %", "d %", "Δ %", "p", "p lab", "κ", "α", "verdict"):
        table.add_column(name, justify="left" if name == "verdict" else "right", no_wrap=True)
    for c in report["cells"]:
        d, delta = c["decisive_rate_interval"], c["net_preference_interval"]
        name = (f"{c['dataset']}/" if several else "") + f"{c['metric']}/{c['backbone']}/{c['attribution']}"
        table.add_row(
            name, str(c["n_labels"]), "/".join(_pct(c["shares"][k]) for k in ("original", "neither", "finetuned")),
            _pct(c["decisive_rate"]) + (f" [{_pct(d[0])},{_pct(d[1])}]" if d else ""),
            _pct(c["net_preference"], True) + (f" [{_pct(delta[0], True)},{_pct(delta[1], True)}]" if delta else ""),
            _p(c["direction_test"]["p_value_holm"]), _p(c["secondary_label_level_binomial"]["p_value_holm"]),
            "–" if c["fleiss_kappa"] is None else f"{c['fleiss_kappa']:.3f}",
            "–" if c["krippendorff_alpha"] is None else f"{c['krippendorff_alpha']:.3f}",
            f"[{VERDICT_COLORS.get(c['verdict'], '')}]{c['verdict']}[/]" + (" †" if c["neither_dominant"] else ""))
    return table


def default_out_dir(base: Path, study: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"
    return new_folder(Path(base) / f"{safe}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}")


def print_report(report: dict, fmt: Format, console) -> None:
    """The report on stdout in ``fmt``; a table is never cut when stdout is not a terminal."""
    from ..analysis import VERDICTS, cells_frame, to_json
    from ..analysis.completeness import verdict_caveat
    from ..analysis.markdown import markdown

    if fmt is Format.json:
        sys.stdout.write(to_json(report) + "\n")
    elif fmt is Format.csv:
        cells_frame(report).to_csv(sys.stdout, index=False)
    elif fmt is Format.markdown:
        sys.stdout.write(markdown(report) + "\n")
    else:
        console.print(report_table(report))
        tally = ", ".join(f"{v} {sum(c['verdict'] == v for c in report['cells'])}" for v in VERDICTS)
        console.print(f"{tally} of {len(report['cells'])} cells ({report['label_source']} labels"
                      + (f", {report['labels_left_out']} other labels left out" if report["labels_left_out"] else "")
                      + verdict_caveat(report) + ")", highlight=False)
        for note in report.get("notes", []):
            console.print(f"note: {note}", highlight=False)


def analyze(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides, e.g. analysis.settings.alpha=0.01 analysis.settings.equivalence_margin=0.05."),
    db: DbOption = None,
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the newest study)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: outputs/reports/<study>-<time>/)."),
    simulated: Optional[bool] = typer.Option(
        None, "--simulated/--real",
        help="Analyze the simulated or the real annotators' labels (never both). Default: the real labels when "
             "the study has any, else the simulated ones."),
    fmt: Format = typer.Option(Format.table, "--format", help="What to print: table, markdown, csv or json "
                                                              "(the report folder is written in every case)."),
    force: bool = typer.Option(False, "--force", help="Replace the report files of an earlier report in --out."),
) -> None:
    """Report whether people prefer the fine-tuned maps: per cell shares, clustered tests, agreement, a verdict."""
    from hydra.utils import instantiate
    from rich.console import Console
    from ..console import output_console

    from ..analysis import REPORT_FILES, write_report
    from ..hydra_app import compose_config
    from ..outputs import check_folder_target, store_files
    from ..store import Store

    console = output_console()
    messages = console if fmt is Format.table else Console(stderr=True)
    cfg = compose_config(overrides or [], task="analyze")
    settings = instantiate(cfg.analysis.settings)
    protected = store_files(db or cfg.db_url)
    if out is not None:  # before the labels are read
        check_folder_target(out, REPORT_FILES, "--out", force, protected)
    store = Store.open(db or cfg.db_url, create=False)
    try:
        with messages.status("reading the labels and analyzing them"):
            report = study_report(store, study, settings, simulated)
        target = out or default_out_dir(Path(cfg.analysis.out_dir), report["study"])
        with messages.status(f"writing the report to {target}"):
            written = write_report(report, target, force=force, protected=protected)
    finally:
        store.close()
    print_report(report, fmt, console)
    messages.print(f"wrote [bold]{target}[/] ({', '.join(sorted(written))})", highlight=False)
