"""harmony analyze speed: the whole analysis of a labels frame, ours vs a textbook per-cell version.

    python benchmarks/bench_analyze.py [--quick] [--resamples N]

Synthetic studies shaped like the published one (5 metrics x 2 backbones x 3 methods = 30
cells; examples with their own leaning, so labels of one example agree more than chance; both
maps' scores; left/right sides), as the columns of ``Store.labels_frame``:
30,000 labels (6,000 examples x 5 annotators) and 3,000,000 labels (100,000 examples x 30
annotators). ``--quick``: 30,000 and 300,000.

ours = ``harmony_cli.analysis.analyze_labels`` (everything in the report: the example-clustered decisive
rate and net preference with their tests and the verdict rule, shares, Wilson intervals, the secondary
label-level binomial and sign tests, Holm, Fleiss, Krippendorff, majority votes, cluster bootstrap, gain
regression with clustered errors, clustered roll-ups, annotators, position bias). reference = the
previous analysis (label-level verdict; harmony_cli/analysis/stats.py at PREVIOUS_COMMIT, loaded from
git) on the same frame. ratio = reference / ours; target: ours under 10 s for 3,000,000 labels (under
2 s for 30,000). Per case, a row times the crossed inference ("for people", ``crossed_shares``) against the
example-clustered one ("for these annotators", ``clustered_shares``) on the same count tables (ratio =
example-only / crossed: the price of generalizing to people). A row times ``harmony power``'s default
5 x 6 grid with 600 simulations per point (< 60 s). A last row times reading 30,000 labels
from an SQLite store (``Store.labels_frame``), for information. ``main()`` returns the rows as dicts.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from itertools import product

import numpy as np
import pandas as pd
from rich.table import Table

from harmony_cli.analysis import AnalysisSettings, analyze_labels
from harmony_cli.cells import CELL_FIELDS, CHOICES
from console import table_console  # benchmarks/console.py, beside this file

METRICS = ("focus", "irof", "ris", "rma", "road")
BACKBONES = ("resnet18", "vgg16")
ATTRIBUTIONS = ("excitation_backprop", "gradcam", "guided_backprop")


def synthetic_labels(n_examples: int, n_annotators: int, seed: int = 0) -> pd.DataFrame:
    """Every annotator labels every example; columns of ``Store.labels_frame`` (object strings)."""
    rng = np.random.default_rng(seed)
    cells = np.array(list(product(["imagenet"], METRICS, BACKBONES, ATTRIBUTIONS)), dtype=object)  # (30, 4)
    example_cell = np.arange(n_examples) % len(cells)
    cell_p = rng.dirichlet([2.0, 4.0, 2.0], size=len(cells))                       # (30, 3)
    leaning = rng.gamma(cell_p[example_cell] * 6.0)                                  # (E, 3)
    example_p = leaning / leaning.sum(1, keepdims=True)
    cumulative = example_p.cumsum(1)[:, :2]
    choice = (rng.random((n_examples, n_annotators))[..., None] > cumulative[:, None, :]).sum(-1).ravel()
    original = rng.uniform(0.2, 0.6, n_examples)
    gain = 0.1 * (example_p[:, 2] - example_p[:, 0]) + rng.normal(0, 0.05, n_examples)
    example = np.repeat(np.arange(n_examples), n_annotators)
    frame = pd.DataFrame({"study": "bench", "example_id": example + 1})
    for i, field in enumerate(CELL_FIELDS):
        frame[field] = cells[example_cell[example], i]
    frame["original_score"] = original[example]
    frame["finetuned_score"] = (original + gain)[example]
    frame["annotator"] = np.array([f"annotator{a:02d}" for a in range(n_annotators)], dtype=object)[
        np.tile(np.arange(n_annotators), n_examples)]
    frame["simulated"] = False
    frame["choice"] = np.array(CHOICES, dtype=object)[choice]
    frame["left_map"] = np.array(["original", "finetuned"], dtype=object)[rng.integers(0, 2, len(frame))]
    frame["response_ms"] = rng.integers(400, 4000, len(frame))
    return frame


PREVIOUS_COMMIT = "4f627957a80c7d79dc95a856518ccdc3740767a6"  # the analysis before the clustered verdict rule


def previous_analysis():
    """``analyze_labels`` of the previous analysis (label-level verdict), loaded from git; None without git."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    try:
        source = subprocess.run(["git", "show", f"{PREVIOUS_COMMIT}:harmony_cli/analysis/stats.py"], check=True,
                                capture_output=True, text=True, cwd=Path(__file__).resolve().parent).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader("harmony_cli.analysis._previous_stats", loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "harmony_cli.analysis"
    sys.modules[spec.name] = module  # dataclasses look their module up there
    exec(compile(source, "previous/stats.py", "exec"), module.__dict__)
    return module


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_cpu(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): on a shared, loaded machine the CPU time is the steadier."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def store_read_seconds(frame: pd.DataFrame) -> float:
    """Seconds of ``Store.labels_frame`` on an SQLite store holding ``frame``'s labels."""
    from harmony_cli.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/bench.db")
        study = store.get_or_create_study("bench")
        examples = frame.drop_duplicates("example_id")
        ids = store.add_examples(study.id, [
            {**{f: r[f] for f in CELL_FIELDS}, "source_key": str(r["example_id"]), "class_name": "c",
             "original_score": r["original_score"], "finetuned_score": r["finetuned_score"]}
            for r in examples.to_dict("records")])
        example_id = dict(zip(examples.example_id, ids))
        annotators = {name: store.add_annotator(name, None).id for name in frame.annotator.unique()}
        store.add_labels([{"annotator_id": annotators[a], "example_id": example_id[e], "choice": c, "left_map": s}
                          for a, e, c, s in zip(frame.annotator, frame.example_id, frame.choice, frame.left_map)])
        seconds = timed(lambda: store.labels_frame("bench"))
        store.close()
    return seconds


def inference_seconds(frame: pd.DataFrame, settings: AnalysisSettings) -> tuple[float, float]:
    """(crossed, example-only) seconds of the two inferences on ``frame``'s count tables (best of 3)."""
    from harmony_cli.analysis.cells import annotator_table
    from harmony_cli.analysis.clustered import clustered_shares, crossed_shares
    from harmony_cli.analysis.encoding import encode_labels

    data = encode_labels(frame)
    args = (data.counts, data.example_cell)
    conf, margin = settings.confidence, settings.equivalence_margin

    def crossed():
        counts, cell, _ = annotator_table(data)
        crossed_shares(*args, counts, cell, data.n_cells, conf, margin)

    return (min(timed(crossed) for _ in range(3)),
            min(timed(lambda: clustered_shares(*args, data.n_cells, conf, margin)) for _ in range(3)))


def power_seconds() -> float:
    """Seconds of ``harmony power``'s default 5 x 6 grid with 600 simulations per point, annotators who differ
    (target < 60 s)."""
    from harmony_cli.analysis.power import PowerModel, power_grid

    return timed(lambda: power_grid(PowerModel(annotator_spread=1.0, neither_spread=0.5), [25, 50, 100, 200, 400],
                                    [1, 3, 5, 10, 20, 40], 600, AnalysisSettings.defaults(bootstrap_resamples=0),
                                    family=30))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30,000 and 300,000 labels (a smoke run)")
    parser.add_argument("--resamples", type=int, default=AnalysisSettings.defaults().bootstrap_resamples,
                        help="cluster bootstrap resamples (default: the config's)")
    args = parser.parse_args(argv)
    settings = AnalysisSettings.defaults(bootstrap_resamples=args.resamples)
    previous = previous_analysis()
    cases = [(6_000, 5, 2.0), (10_000 if args.quick else 100_000, 30, 10.0)]

    analyze_labels(synthetic_labels(300, 5, seed=1), settings)  # warm-up: imports, first calls
    rows = []
    for n_examples, n_annotators, limit in cases:
        frame = synthetic_labels(n_examples, n_annotators)
        ours_s, ours_cpu = timed_cpu(lambda: analyze_labels(frame, settings))
        before_s = before_cpu = None
        if previous is not None:
            old_settings = previous.AnalysisSettings(bootstrap_resamples=args.resamples)
            before_s, before_cpu = timed_cpu(lambda: previous.analyze_labels(frame, old_settings))
        rows.append({"benchmark": "analyze", "case": f"{len(frame):,} labels = {n_examples:,} ex x {n_annotators} ann",
                     "ours_s": ours_s, "reference_s": before_s, "ratio": before_s / ours_s if before_s else None,
                     "target": f"ours < {limit:g} s", "ok": ours_s < limit, "ours_cpu_s": ours_cpu,
                     "reference_cpu_s": before_cpu, "notes": f"CPU s: ours {ours_cpu:.2f}" + (
                         f", reference {before_cpu:.2f}" if before_cpu is not None else "")})
        crossed_s, example_s = inference_seconds(frame, settings)
        rows.append({"benchmark": "inference", "case": f"{len(frame):,} labels: crossed (ours) vs example-only",
                     "ours_s": crossed_s, "reference_s": example_s, "ratio": example_s / crossed_s,
                     "target": "info (both run in every analyze)", "ok": True})
    rows.append({"benchmark": "power", "case": "5 x 6 grid x 600 simulations, for people", "ours_s": power_seconds(),
                 "reference_s": None, "ratio": None, "target": "ours < 60 s"})
    rows[-1]["ok"] = rows[-1]["ours_s"] < 60
    small = synthetic_labels(600 if args.quick else 6_000, 5)
    rows.append({"benchmark": "store read", "case": f"labels_frame, {len(small):,} labels",
                 "ours_s": store_read_seconds(small), "reference_s": None, "ratio": None, "target": "info",
                 "ok": True})
    print_rows(rows, args.resamples, previous is not None)
    return rows


def print_rows(rows: list[dict], resamples: int, with_previous: bool) -> None:
    reference = (f"the previous analysis (label-level verdict, git {PREVIOUS_COMMIT[:7]})" if with_previous
                 else "none (git history unavailable)")
    table = Table(title=f"harmony analyze ({resamples} bootstrap resamples; reference: {reference}; "
                        f"ratio = reference / ours)")
    for column in ("benchmark", "case", "ours s", "reference s", "ratio", "target", "ok", "notes"):
        table.add_column(column, justify="left" if column in ("benchmark", "case", "target", "ok", "notes") else "right")
    for row in rows:
        table.add_row(row["benchmark"], row["case"], f"{row['ours_s']:.3f}",
                      "–" if row["reference_s"] is None else f"{row['reference_s']:.3f}",
                      "–" if row["ratio"] is None else f"{row['ratio']:.2f}", row["target"],
                      "yes" if row["ok"] else "NO", row.get("notes", ""))
    table_console().print(table)


if __name__ == "__main__":
    main()
