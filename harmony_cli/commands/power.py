"""``harmony power``: how many examples and annotators does a cell need to reach its verdict?

Simulates studies from assumed rates (or rates estimated from an existing study) many times over a
grid of examples per cell x annotators per example, analyzes each with the verdict rule of
``harmony analyze`` (conf/analysis/ settings) and reports how often each verdict comes out: a table,
power.csv / power.json and power.png (+ .pdf). The model's assumptions: harmony_cli/analysis/power.py.
"""
from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..cells import REPORT_ORDER, cell_text
from ..errors import UserError
from .options import DbOption

# What a power run writes into its folder (power_figure adds the PDF beside the PNG).
POWER_FILES = ("power.csv", "power.json", "power.png", "power.pdf")


class Design(str, Enum):
    fixed = "fixed"
    sequential = "sequential"


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UserError(f"{option} takes positive whole numbers separated by commas (e.g. 25,50,100), not {text!r}")
    return sorted(set(values))


def model_from_study(db: str | None, default_db: str, study: str, cell: str | None):
    """(PowerModel, number of cells) estimated from a study's labels (real ones when it has any)."""
    import numpy as np

    from ..analysis import AnalysisSettings, analyze_labels, select_label_source
    from ..analysis.power import model_from_labels
    from ..store import Store
    from ..analysis.study import pick_study

    store = Store.open(db or default_db, create=False)
    try:
        chosen = pick_study(store, study)
        labels, _ = select_label_source(store.labels_frame(chosen.name), None, study=f"study {chosen.name!r}")
    finally:
        store.close()
    report = analyze_labels(labels, AnalysisSettings.defaults(bootstrap_resamples=0))
    cells = report["cells"]
    if cell is not None:
        cells = [c for c in cells if cell_text(c) == cell]
        if not cells:
            raise UserError(f"study {chosen.name!r} has no cell {cell!r}: give --cell as metric/backbone/attribution")
    counts = np.array([sum(c["counts"][k] for c in cells) for k in REPORT_ORDER])
    by_annotator: dict[str, np.ndarray] = {}
    for c in cells:
        for a in c["annotators"]:
            share = np.array([a["shares"][k] or 0.0 for k in REPORT_ORDER]) * a["n_labels"]
            by_annotator[a["annotator"]] = by_annotator.get(a["annotator"], 0) + np.round(share)
    model = model_from_labels(counts, [(c["fleiss_kappa"], c["n_labels"]) for c in cells],
                              np.array(list(by_annotator.values())) if by_annotator else None)
    return model, len(report["cells"])


def power_table(rows: list[dict], target: str, title: str):
    from rich.table import Table

    annotators = sorted({r["annotators"] for r in rows})
    table = Table(title=title, title_justify="left", header_style="bold",
                  caption=f"P({target}) per examples per cell (rows) x annotators per example (columns)",
                  caption_justify="left")
    table.add_column("examples", justify="right")
    for a in annotators:
        table.add_column(str(a), justify="right")
    for g in sorted({r["examples"] for r in rows}):
        table.add_row(str(g), *(f"{r[target]:.0%} [{r[target + '_interval'][0]:.0%}, {r[target + '_interval'][1]:.0%}]"
                                for a in annotators for r in rows if r["examples"] == g and r["annotators"] == a))
    return table


def cheapest_line(rows: list[dict], target: str, power: float = 0.8) -> str:
    """Which design reaches ``power`` with the fewest labels: images or annotators?"""
    reached = [r for r in rows if r[target] >= power]
    if not reached:
        return (f"no design on this grid reaches P({target}) >= {power:.0%}: try more examples or annotators "
                f"(--examples, --annotators)")
    best = min(reached, key=lambda r: (r["labels"], r["annotators"]))
    more_images = max((r for r in rows if r["annotators"] == best["annotators"]), key=lambda r: r["examples"])
    more_people = max((r for r in rows if r["examples"] == best["examples"]), key=lambda r: r["annotators"])
    return (f"fewest labels reaching P({target}) >= {power:.0%}: {best['examples']} examples x {best['annotators']} "
            f"annotators ({best['labels']} labels per cell). At {best['annotators']} annotators the most examples "
            f"on the grid give {more_images[target]:.0%}; at {best['examples']} examples the most annotators give "
            f"{more_people[target]:.0%}.")


def command(
    overrides: Optional[list[str]] = typer.Argument(None, help="Hydra overrides of the rule, e.g. "
                                                               "analysis.settings.alpha=0.01."),
    neither: float = typer.Option(0.5, "--neither", help="Assumed share of Neither labels."),
    preference: float = typer.Option(0.65, "--preference", help="Assumed fine-tuned share of the decisive labels."),
    correlation: float = typer.Option(0.2, "--correlation", help="Within-example correlation of labels (0-1)."),
    noise: float = typer.Option(0.0, "--noise", help="Share of inattentive labels answering at random (as "
                                                     "simulate-annotators' --noise)."),
    annotator_spread: float = typer.Option(0.0, "--annotator-spread", help="How much annotators differ in "
                                           "preference: SD of each one's shift on the logit scale."),
    neither_spread: float = typer.Option(0.0, "--neither-spread", help="How much annotators differ in their "
                                         "Neither rate: SD on the logit scale."),
    examples: str = typer.Option("25,50,100,200,400", "--examples", help="Examples per cell to try."),
    annotators: str = typer.Option("1,3,5,10,20,40", "--annotators", help="Annotators per example to try."),
    simulations: int = typer.Option(600, "--simulations", help="Simulated studies per grid point (600: a Monte "
                                                                "Carlo interval of about +-3 points near 80%)."),
    cells: Optional[int] = typer.Option(None, "--cells", help="Cells in the report's Holm family (default: the "
                                                                "study's with --from-study, else 30)."),
    from_study: Optional[str] = typer.Option(None, "--from-study", help="Estimate the rates from this study."),
    cell: Optional[str] = typer.Option(None, "--cell", help="With --from-study: one cell, metric/backbone/attribution."),
    db: DbOption = None,
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for power.csv/json/png (default: "
                                                           "outputs/power/<time>/)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation."),
    force: bool = typer.Option(False, "--force", help="Replace the power files of an earlier run in --out."),
    design: Design = typer.Option(Design.fixed, "--design", help="fixed: the probability of each verdict with all "
                                  "labels; sequential: beside it, the expected labels per cell and the verdicts of a "
                                  "sequential design that stops a cell once it is decided (at most the fixed labels)."),
    look_every: Optional[int] = typer.Option(None, "--look-every", help="With --design sequential: labels of a cell "
                                             "between two looks (default: conf/study's sequential.look_every)."),
) -> None:
    """Plan a study: the probability of each verdict for a grid of examples x annotators, by simulation.

    Model: each example draws its answer probabilities from a Dirichlet centred on the assumed rates \
(concentration (1 - correlation) / correlation, so correlation is the intra-class correlation of two labels \
on one example); each annotator shifts them on the logit scale (--annotator-spread, --neither-spread) and \
answers independently given the example; each simulated study is judged by the analyze rule \
(conf/analysis/: for people by default), with the Bonferroni bound for a Holm family of --cells cells, \
so directional power is a lower bound. Each probability has its Monte Carlo interval. With --design \
sequential each simulated study is also replayed label by label in the page's order (each example once, then \
twice, ...; annotators interleaved) under the sequential rule (harmony_cli/analysis/sequential.py).
    """
    from ..analysis.power import PowerModel
    from ..console import output_console
    from ..outputs import check_folder_target, new_folder, store_files

    grid_examples, grid_annotators = _grid(examples, annotators, simulations, cells)
    every = _look_every(design, look_every)
    console = output_console()
    cfg, settings = _rule(overrides)
    protected = store_files(db or cfg.db_url)
    if out is not None:  # before the simulation
        check_folder_target(out, POWER_FILES, "--out", force, protected)
    model, study_cells = (model_from_study(db, cfg.db_url, from_study, cell) if from_study else
                          (PowerModel(neither, preference, correlation, noise, annotator_spread, neither_spread), 30))
    family = cells or study_cells
    rows = _simulate_grid(console, model, grid_examples, grid_annotators, simulations, settings, family, seed, every)
    folder = out or new_folder(Path(cfg.paths.outputs) / "power" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    check_folder_target(folder, POWER_FILES, "--out", force, protected)
    _write(folder, rows, model, family, simulations, settings, every, console, force)


def _write(folder: Path, rows: list[dict], model, family: int, simulations: int, settings, every: int | None,
           console, force: bool) -> None:
    """power.csv/json/png/pdf of the fixed design (``every`` None) or of both designs side by side."""
    target = model.expected_verdict()
    if every is None:
        write_power(folder, rows, model, family, target, simulations, settings, console, force)
    else:
        from .power_sequential import write_sequential_power

        write_sequential_power(folder, rows, model, family, target, simulations, settings, every, console, force)


def _rule(overrides: Optional[list[str]]):
    """(the composed config, the verdict rule's AnalysisSettings) with the command line's overrides."""
    from hydra.utils import instantiate

    from ..hydra_app import compose_config

    cfg = compose_config(overrides or [], task="power")
    return cfg, instantiate(cfg.analysis.settings)


def _look_every(design: Design, look_every: int | None) -> int | None:
    """The sequential design's look interval (None: the fixed design)."""
    if design is Design.fixed:
        if look_every is not None:
            raise UserError("--look-every is for --design sequential: add it, or drop --look-every")
        return None
    if look_every is None:
        from ..defaults import config_default

        look_every = int(config_default("study.sequential.look_every"))
    if look_every < 1:
        raise UserError(f"--look-every {look_every} must be at least 1: labels of a cell between two looks")
    return look_every


def _grid(examples: str, annotators: str, simulations: int, cells: int | None) -> tuple[list[int], list[int]]:
    """The grid's examples and annotators (from --examples, --annotators), once the counts are checked."""
    _check_counts(simulations, cells)
    return _ints(examples, "--examples"), _ints(annotators, "--annotators")


def _check_counts(simulations: int, cells: int | None) -> None:
    if simulations < 1:
        raise UserError(f"--simulations {simulations} must be at least 1: the simulated studies per grid point")
    if cells is not None and cells < 1:
        raise UserError(f"--cells {cells} must be at least 1: the number of cells in the report's Holm family")


def _simulate_grid(console, model, grid_examples: list[int], grid_annotators: list[int], simulations: int,
                   settings, family: int, seed: int, look_every: int | None = None) -> list[dict]:
    """:func:`power_grid` (or, with ``look_every``, :func:`sequential_power_grid`) with a progress bar of the grid
    points done."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from ..analysis.power import power_grid
    from ..analysis.power_sequential import sequential_power_grid
    from ..console import LoggedProgress

    with LoggedProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=True) as bar:
        task = bar.add_task("simulating", total=len(grid_examples) * len(grid_annotators))
        if look_every is None:
            return power_grid(model, grid_examples, grid_annotators, simulations, settings, family=family, seed=seed,
                              progress=lambda: bar.advance(task))
        return sequential_power_grid(model, grid_examples, grid_annotators, simulations, settings, family=family,
                                     look_every=look_every, seed=seed, progress=lambda: bar.advance(task))


def write_power(folder: Path, rows: list[dict], model, family: int, target: str, simulations: int, settings,
                console, force: bool = False) -> None:
    """power.csv, power.json and the figure in ``folder`` (all or none), and the table on the console."""
    import pandas as pd

    from ..analysis.power import flat_rows, power_figure
    from ..outputs import write_folder

    title = (f"P({target}) with {model.describe()}; {simulations} simulations, Holm family of {family} cells; "
             f"rule: {settings.describe()}")

    def write(staging: Path) -> None:
        pd.DataFrame(flat_rows(rows)).to_csv(staging / "power.csv", index=False)
        (staging / "power.json").write_text(json.dumps({"model": model.to_dict(), "family": family,
                                                        "target": target, "simulations": simulations,
                                                        "settings": settings.to_dict(), "rows": rows}, indent=2))
        power_figure(rows, target, f"P({target}): Neither {model.neither:.0%}, preference {model.preference:.0%}, "
                                   f"rho {model.correlation:.2f}, annotator spread {model.annotator_spread:.2f}, "
                                   f"{family} cells", staging / "power.png")

    write_folder(folder, write, "--out", force)
    console.print(power_table(rows, target, title))
    console.print(cheapest_line(rows, target), highlight=False)
    console.print(f"wrote [bold]{folder}[/] (power.csv, power.json, power.png, power.pdf)", highlight=False)
