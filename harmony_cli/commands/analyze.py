"""``harmony analyze``: does the metric agree with people? A report of a study's labels.

Reads the labels of one study from the store, runs harmony_cli.analysis on them and writes
report.json, cells.csv, report.md and preferences.png into a report folder, with a table in
the terminal. Real and simulated labels are never mixed: by default the real labels are
analyzed when the study has any, else the simulated ones (``--simulated`` / ``--real`` choose).
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError

VERDICT_COLORS = {"aligned": "bold blue", "misaligned": "bold dark_orange", "imperceptible": "dim",
                  "no_labels": "dim italic"}


def metric_directions(config_dir: Path) -> dict[str, bool]:
    """metric name -> higher_is_better, from the metric config group (conf/metric/*.yaml)."""
    from omegaconf import OmegaConf

    directions = {}
    for path in sorted((config_dir / "metric").glob("*.yaml")):
        cfg = OmegaConf.load(path)
        if "higher_is_better" in cfg:
            directions[str(cfg.get("name", path.stem))] = bool(cfg.higher_is_better)
    return directions


def pick_study(store, name: str | None):
    """The study called ``name``, else the most recently created one; UserError when there is none."""
    from ..store.db import shown_url

    studies = store.studies()
    where = shown_url(store.url)
    if not studies:
        raise UserError(f"no studies in {where}: build one (harmony build-dataset) or import one "
                        f"(harmony import-legacy PATH), or give --db the right database")
    if name is None:
        return studies[-1]
    for study in studies:
        if study.name == name:
            return study
    known = ", ".join(s.name for s in studies[:5]) + (", ..." if len(studies) > 5 else "")
    raise UserError(f"no study named {name!r} in {where} (it has: {known}): see `harmony studies`")


def study_report(store, study_name: str | None = None, settings=None, simulated: bool | None = None,
                 config_dir: Path | None = None) -> dict:
    """The analysis of one study of ``store`` as JSON-ready data, with the study's metadata."""
    import pandas as pd

    from ..analysis import AnalysisSettings, analyze_labels, select_label_source
    from ..hydra_app import CONFIG_DIR
    from ..store.db import shown_url

    study = pick_study(store, study_name)
    cells = pd.DataFrame(store.cells(study.name))
    if cells.empty:
        raise UserError(f"study {study.name!r} has no examples: build it with harmony build-dataset or "
                        f"harmony import-legacy")
    labels = store.labels_frame(study.name)
    if labels.empty:
        raise UserError(f"study {study.name!r} has no labels yet: annotate it (streamlit run webui/app.py) or "
                        f"simulate annotators")
    chosen, source = select_label_source(labels, simulated, study=f"study {study.name!r}")
    analysis = analyze_labels(chosen, settings or AnalysisSettings(), cells=cells,
                              higher_is_better=metric_directions(config_dir or CONFIG_DIR))
    return {"study": study.name, "study_source": study.source, "database": shown_url(store.url),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label_source": source,
            "labels_left_out": int(len(labels) - len(chosen)), **analysis}


def report_table(report: dict):
    """The cells of a report as a rich Table (one line per cell)."""
    from rich.table import Table

    several = len({c["dataset"] for c in report["cells"]}) > 1
    level = f"{report['settings']['confidence']:.0%}"
    table = Table(title=f"{report['study']}: {report['n_labels']} {report['label_source']} labels by "
                        f"{report['n_annotators']} annotators", title_justify="left", header_style="bold",
                  caption=f"o/n/f: shares of original / neither / fine-tuned; fine|dec: fine-tuned share of the "
                          f"decisive labels [{level} Wilson]; p: binomial test, Holm over cells; κ Fleiss, "
                          f"α Krippendorff", caption_justify="left")
    table.add_column("cell", no_wrap=True)
    for name in ("labels", "o/n/f %", "fine|dec", "p", "κ", "α", "verdict"):
        table.add_column(name, justify="left" if name == "verdict" else "right", no_wrap=True)

    def pct(v):
        return "–" if v is None else f"{100 * v:.0f}"

    def num(v):
        return "–" if v is None else f"{v:.2f}"

    for c in report["cells"]:
        ci = c["decisive_interval"]
        share = "–" if c["decisive_finetuned_share"] is None else (
            f"{pct(c['decisive_finetuned_share'])}% [{pct(ci[0])}-{pct(ci[1])}]")
        p = c["p_value_holm"]
        name = ((f"{c['dataset']}/" if several else "") + f"{c['metric']}/{c['backbone']}/{c['attribution']}")
        shares = "/".join(pct(c["shares"][k]) for k in ("original", "neither", "finetuned"))
        table.add_row(name, str(c["n_labels"]), shares, share,
                      "–" if p is None else ("<.001" if p < 0.001 else f"{p:.3f}"),
                      num(c["fleiss_kappa"]), num(c["krippendorff_alpha"]),
                      f"[{VERDICT_COLORS.get(c['verdict'], '')}]{c['verdict']}[/]")
    return table


def default_out_dir(base: Path, study: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study).strip("._") or "study"
    return Path(base) / f"{safe}-{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"


def analyze(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Hydra overrides, e.g. analysis.settings.alpha=0.01 analysis.settings.verdict_test=sign."),
    db: Optional[str] = typer.Option(None, "--db", help="Store URL or SQLite file (default: HARMONY_DB_URL, "
                                                        "else outputs/harmony.db)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the most recent study)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: outputs/reports/<study>-<time>/)."),
    simulated: Optional[bool] = typer.Option(
        None, "--simulated/--real",
        help="Analyze the simulated or the real annotators' labels (never both). Default: the real labels when "
             "the study has any, else the simulated ones."),
) -> None:
    """Report whether people prefer the fine-tuned maps: per cell shares, tests, agreement and a verdict."""
    from hydra.utils import instantiate
    from rich.console import Console

    from ..analysis import write_report
    from ..hydra_app import compose_config
    from ..store import Store

    console = Console()
    cfg = compose_config(overrides or [], task="analyze")
    settings = instantiate(cfg.analysis.settings)
    store = Store.open(db or cfg.db_url, create=False)
    try:
        with console.status("reading the labels and analyzing them"):
            report = study_report(store, study, settings, simulated)
        target = out or default_out_dir(Path(cfg.analysis.out_dir), report["study"])
        with console.status(f"writing the report to {target}"):
            written = write_report(report, target)
    finally:
        store.close()
    console.print(report_table(report))
    tally = {v: sum(c["verdict"] == v for c in report["cells"]) for v in ("aligned", "misaligned", "imperceptible")}
    console.print(f"aligned {tally['aligned']}, misaligned {tally['misaligned']}, imperceptible "
                  f"{tally['imperceptible']} of {len(report['cells'])} cells (alpha {settings.alpha}, Holm; "
                  f"{report['label_source']} labels"
                  + (f", {report['labels_left_out']} other labels left out" if report["labels_left_out"] else "")
                  + ")")
    console.print(f"wrote [bold]{target}[/] ({', '.join(sorted(written))})", highlight=False)
