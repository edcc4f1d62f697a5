"""``harmony power --design sequential``: the labels a sequential design expects to use, and its verdicts, beside
the fixed design's on the same simulated studies.

Each simulated study (``power.simulate_labels``: G examples x A annotators) is one cell of
:func:`.sequential.replay`, in the Holm family of ``family`` cells as the fixed rule's (Bonferroni). Its
labels arrive in the page's order: the page hands out the least-labelled example first, so the first G labels
cover every example once, the next G a second time, and so on (examples in a random order each round); each
example's A labels come from its A annotators in a random rotation, so annotators interleave. The sequential
design looks after every ``look_every`` labels and stops at most at all G x A labels (the fixed design's).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import UserError
from .plot import save_figure
from .power import PowerModel, simulate_labels, study_verdicts
from .sequential import SequentialDesign, replay
from .settings import AnalysisSettings
from .significance import wilson_interval
from .verdict import VERDICTS

# Batches of simulated labels replayed at once (bounded memory, as power_grid's).
BATCH_LABELS = 2_000_000


def page_order(n_examples: int, n_annotators: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(example, annotator) indices, each (G * A,), in the order the page hands the labels out: round r gives
    every example its r-th label (examples shuffled each round), from annotator (offset of the example + r) mod A."""
    rounds = np.argsort(rng.random((n_annotators, n_examples)), axis=1)  # (A, G) examples of each round
    offset = rng.integers(0, n_annotators, n_examples)
    example = rounds.ravel()
    annotator = (offset[rounds] + np.arange(n_annotators)[:, None]) % n_annotators
    return example, annotator.ravel()


def sequential_stops(choice: np.ndarray, look_every: int, settings: AnalysisSettings, family: int,
                     rng: np.random.Generator):
    """:class:`.sequential.Stops` of each simulated study ((S, G, A) choices) replayed in the page's order under a
    design of at most G x A labels looked at every ``look_every``."""
    S, G, A = choice.shape
    orders = [page_order(G, A, rng) for _ in range(S)]
    example = np.stack([o[0] for o in orders])  # (S, G*A)
    annotator = np.stack([o[1] for o in orders])
    study = np.repeat(np.arange(S), G * A)
    label_choice = choice[study, example.ravel(), annotator.ravel()]
    design = SequentialDesign(max_labels=G * A, look_every=look_every)
    return replay(study, (study * G + example.ravel()), (study * A + annotator.ravel()), label_choice, S, design,
                  settings, family)


def _interval(count: np.ndarray, simulations: int) -> list[list[float]]:
    low, high = wilson_interval(np.asarray(count, dtype=float), np.full(len(count), simulations), 0.95)
    return [[float(lo), float(hi)] for lo, hi in zip(low, high)]


def sequential_row(fixed: np.ndarray, stopped: np.ndarray, used: np.ndarray, examples: int, annotators: int) -> dict:
    """One grid point's row from the (S,) fixed verdicts, sequential verdicts and labels used."""
    S = len(fixed)
    mean, spread = float(used.mean()), float(used.std(ddof=1)) if S > 1 else 0.0
    margin = 1.96 * spread / np.sqrt(S)
    row = {"examples": int(examples), "annotators": int(annotators), "labels": int(examples * annotators),
           "expected_labels": mean, "expected_labels_interval": [mean - margin, mean + margin],
           "same_verdict": float(np.mean(fixed == stopped))}
    for name, got in (("fixed", fixed), ("sequential", stopped)):
        counts = np.array([np.sum(got == v) for v in VERDICTS])
        for v, count, interval in zip(VERDICTS, counts, _interval(counts, S)):
            row[f"{name}_{v}"], row[f"{name}_{v}_interval"] = float(count / S), interval
    return row


def sequential_power_grid(model: PowerModel, examples: list[int], annotators: list[int], simulations: int,
                          settings: AnalysisSettings, family: int = 1, look_every: int = 10, seed: int = 0,
                          progress=None) -> list[dict]:
    """One row per (examples, annotators): the fixed and the sequential design's verdict shares on the same
    simulated studies, and the sequential design's expected labels per cell (with a 95% Monte Carlo interval).

    progress: optional callable called once per grid point."""
    if simulations < 1 or family < 1 or not examples or not annotators or min(examples) < 1 or min(annotators) < 1:
        raise UserError("power needs at least one simulation, a family of at least one cell, and positive "
                        "numbers of examples and annotators")
    if look_every < 1:
        raise UserError(f"--look-every {look_every} must be at least 1: labels of a cell between two looks")
    rng = np.random.default_rng(seed)
    rows = []
    for g in examples:
        for a in annotators:
            fixed, stopped, used = [], [], []
            step = max(1, BATCH_LABELS // (g * a))
            for start in range(0, simulations, step):
                choice = simulate_labels(model, g, a, min(step, simulations - start), rng)
                stops = sequential_stops(choice, look_every, settings, family, rng)
                fixed.append(study_verdicts(choice, settings, family))
                stopped.append(np.asarray(stops.verdict, dtype=object))
                used.append(np.asarray(stops.labels, dtype=float))
            rows.append(sequential_row(np.concatenate(fixed), np.concatenate(stopped), np.concatenate(used), g, a))
            if progress is not None:
                progress()
    return rows


def sequential_figure(rows: list[dict], verdict: str, title: str, path) -> None:
    """Per grid point, labels per cell (fixed vs expected under the sequential design) and P(``verdict``) under
    each design, with their Monte Carlo intervals (PNG and PDF)."""
    names = [f"{r['examples']}x{r['annotators']}" for r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(5.0, 1.0 + 0.55 * len(rows)) * 2, 3.2))
    labels_ax, power_ax = fig.subplots(1, 2)
    expected = np.array([r["expected_labels"] for r in rows])
    spread = np.array([r["expected_labels_interval"] for r in rows]).T
    labels_ax.bar(x - 0.2, [r["labels"] for r in rows], 0.4, color="#bababa", label="fixed")
    labels_ax.bar(x + 0.2, expected, 0.4, color="#2c7bb6", label="sequential (expected)",
                  yerr=np.abs(spread - expected), capsize=2)
    labels_ax.set_ylabel("labels per cell")
    for ax, design, color in ((power_ax, "fixed", "#bababa"), (power_ax, "sequential", "#2c7bb6")):
        share = np.array([r[f"{design}_{verdict}"] for r in rows])
        bounds = np.array([r[f"{design}_{verdict}_interval"] for r in rows]).T
        ax.bar(x + (-0.2 if design == "fixed" else 0.2), share, 0.4, color=color, label=design,
               yerr=np.abs(bounds - share), capsize=2)
    power_ax.set_ylim(0, 1)
    power_ax.axhline(0.8, color="#444444", linewidth=0.6, linestyle=":")
    power_ax.set_ylabel(f"P({verdict})")
    for ax, corner in ((labels_ax, "upper left"), (power_ax, "lower right")):
        ax.set_xticks(x, names, rotation=45, fontsize=7)
        ax.set_xlabel("examples x annotators per cell")
        ax.legend(fontsize=7, loc=corner)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
