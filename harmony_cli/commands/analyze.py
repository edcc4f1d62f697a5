"""``harmony analyze``: does the metric agree with people? A report of a study's labels.

Reads the labels of one study (default: the newest) from the store, runs harmony_cli.analysis on them,
writes the report folder (report.json, cells.csv, report.md, report.tex, figures as PNG + PDF) and
prints the cells as a table, Markdown, CSV or JSON. Real and simulated labels are never mixed: by
default the real labels are analyzed when the study has any, else the simulated ones.
"""
from __future__ import annotations

import re
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..cells import REPORT_ORDER, cell_text
from ..outputs import new_folder
from .options import DbOption

VERDICT_COLORS = {"aligned": "bold blue", "misaligned": "bold dark_orange", "no_preference": "bold",
                  "imperceptible": "dim", "inconclusive": "italic"}


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    summary = "summary"


def _pct(v, sign: bool = False) -> str:
    return "–" if v is None else (f"{100 * v:+.0f}" if sign else f"{100 * v:.0f}")


def _p(v) -> str:
    return "–" if v is None else f"{v:.3g}"


def report_table(report: dict):
    """The cells of a report as a rich Table (one line per cell, every figure in full)."""
    from rich.table import Table

    from ..analysis.decisions import decision_text
    from ..analysis.verdict import inference_label

    several = len({c["dataset"] for c in report["cells"]}) > 1
    level = f"{report['settings']['confidence']:.0%}"
    chosen = report["settings"]["generalize"]
    other = "these_annotators" if chosen == "people" else "people"
    table = Table(title=f"{report['study']}: {report['n_labels']} {report['label_source']} labels by "
                        f"{report['n_annotators']} annotators. Rule: {report['rule']}", title_justify="left",
                  header_style="bold", caption=f"o/n/f: % original / neither / fine-tuned; d: decisive rate; Δ: net "
                  f"preference (fine-tuned - original)/labels, % "
                  f"[{level}, {inference_label(chosen, report['n_annotators'])}]; "
                  f"Δ other: its interval {inference_label(other, report['n_annotators'])}; p: direction t test, "
                  f"Holm; p lab: label-level binomial (secondary), Holm; κ Fleiss, α Krippendorff; "
                  f"†: Neither dominant; faint: imperceptible with a significant direction", caption_justify="left")
    table.add_column("cell", no_wrap=True)
    verdict_columns = [inference_label(n, report["n_annotators"]) for n in (chosen, other)]
    if "design" in report and report["design"]["design"] == "sequential":  # the decision each cell stopped at
        verdict_columns.append("sequential decision")
    for name in ("labels", "o/n/f %", "d %", "Δ %", "Δ other", "p", "p lab", "κ", "α", *verdict_columns):
        table.add_column(name, justify="left" if name in verdict_columns else "right", no_wrap=True)
    for c in report["cells"]:
        d, delta = c["decisive_rate_interval"], c["net_preference_interval"]
        theirs = c["inferences"][other]["net_preference_interval"]
        table.add_row(
            cell_text(c, several), str(c["n_labels"]), "/".join(_pct(c["shares"][k]) for k in REPORT_ORDER),
            _pct(c["decisive_rate"]) + (f" [{_pct(d[0])},{_pct(d[1])}]" if d else ""),
            _pct(c["net_preference"], True) + (f" [{_pct(delta[0], True)},{_pct(delta[1], True)}]" if delta else ""),
            f"[{_pct(theirs[0], True)},{_pct(theirs[1], True)}]" if theirs else "–",
            _p(c["direction_test"]["p_value_holm"]), _p(c["secondary_label_level_binomial"]["p_value_holm"]),
            "–" if c["fleiss_kappa"] is None else f"{c['fleiss_kappa']:.3f}",
            "–" if c["krippendorff_alpha"] is None else f"{c['krippendorff_alpha']:.3f}",
            *(_verdict_cell(c, n) for n in (chosen, other)),
            *([decision_text(c["sequential"])] if "sequential" in c else []))
    return table


def _verdict_cell(cell: dict, name: str) -> str:
    verdict = cell["inferences"][name]["verdict"]
    faint = cell["inferences"][name]["faint_direction"]
    return (f"[{VERDICT_COLORS.get(verdict, '')}]{verdict}[/]" + (f" (faint: {faint})" if faint else "")
            + (" †" if cell["neither_dominant"] else ""))


def tally_line(report: dict) -> str:
    """The verdict tally of both inferences in one line."""
    from ..analysis.verdict import verdict_tally

    return "; ".join(f"{label}: " + ", ".join(f"{v} {n}" for v, n in counts.items())
                     for label, counts in verdict_tally(report).items())


def default_out_dir(base: Path, study: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"
    return new_folder(Path(base) / f"{safe}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}")


def print_report(report: dict, fmt: Format, console) -> None:
    """The report on stdout in ``fmt``; a table is never cut when stdout is not a terminal."""
    from ..analysis import cells_frame, to_json
    from ..analysis.completeness import verdict_caveat
    from ..analysis.markdown import markdown

    if fmt is Format.json:
        sys.stdout.write(to_json(report) + "\n")
    elif fmt is Format.csv:
        cells_frame(report).to_csv(sys.stdout, index=False)
    elif fmt is Format.markdown:
        sys.stdout.write(markdown(report) + "\n")
    elif fmt is Format.summary:
        from ..analysis.markdown import summary_table

        sys.stdout.write("\n".join(summary_table(report)) + "\n")
    else:
        console.print(report_table(report))
        console.print(f"{tally_line(report)} (of {len(report['cells'])} cells; {report['label_source']} labels"
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
    fmt: Format = typer.Option(Format.table, "--format", help="What to print: table, markdown, csv, json or summary "
                                                              "(the README's compact Markdown table; the report "
                                                              "folder is written in every case)."),
    force: bool = typer.Option(False, "--force", help="Replace the report files of an earlier report in --out."),
    exclude_annotator: Optional[list[str]] = typer.Option(
        None, "--exclude-annotator", help="Analyze without this annotator's labels (repeat for several), e.g. an "
                                          "admin who may know which map is which."),
) -> None:
    """Report whether people prefer the fine-tuned maps: per cell shares, clustered tests, agreement, a verdict."""
    from hydra.utils import instantiate
    from rich.console import Console
    from ..console import output_console

    from ..analysis import REPORT_FILES, write_report
    from ..analysis.study import study_report
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
            report = study_report(store, study, settings, simulated, exclude=exclude_annotator or [])
        target = out or default_out_dir(Path(cfg.analysis.out_dir), report["study"])
        with messages.status(f"writing the report to {target}"):
            written = write_report(report, target, force=force, protected=protected)
    finally:
        store.close()
    print_report(report, fmt, console)
    messages.print(f"wrote [bold]{target}[/] ({', '.join(sorted(written))})", highlight=False)
