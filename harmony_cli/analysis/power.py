"""``harmony power``: plan a study by simulation: how likely is each verdict for a grid of study sizes?

The model (its assumptions, summarized in ``harmony power --help`` and the README):

- One cell is planned at a time. Each of its G examples has its own answer probabilities
  (original, neither, fine-tuned) drawn from a Dirichlet distribution whose mean is the assumed
  rates: Neither share q, and among decisive labels the fine-tuned share pi, i.e.
  ((1 - q)(1 - pi), q, (1 - q) pi), with concentration (1 - rho) / rho. rho is the within-example
  correlation: the intra-class correlation of any answer between two labels of the same example
  (0: independent labels; 1: all labels of an example the same). Fleiss' kappa estimates it.
- Each of A annotators labels every example, independently given the example's probabilities:
  annotators are exchangeable (no annotator effects, no position bias, no learning or fatigue).
  With ``noise`` (as in ``harmony simulate-annotators``), a label is inattentive with that
  probability and picks any of the three answers uniformly. (simulate-annotators itself has no
  within-example correlation beyond its metric-gain term, hence the Dirichlet layer here.)
- Each simulated study is analyzed with the same clustered statistics and verdict rule as
  ``harmony analyze``. The cell is one of K cells in the report's Holm family; the simulation
  applies the Bonferroni bound K * p (Holm's first step; Holm is never stricter), so the power of
  a directional or no_preference verdict is a lower bound when other cells have real effects.
- ``--from-study``: q, pi from the study's (or one cell's) label shares, rho from the label-weighted
  mean of its cells' Fleiss' kappas (clipped to [0, 0.95]).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UserError
from .clustered import clustered_shares
from .settings import AnalysisSettings
from .verdict import VERDICTS, verdicts


@dataclass(frozen=True)
class PowerModel:
    """Assumed rates of one cell: Neither share, fine-tuned share of decisive labels, within-example correlation."""

    neither: float = 0.5
    preference: float = 0.65
    correlation: float = 0.2
    noise: float = 0.0

    def __post_init__(self):
        for name, high in (("neither", 1.0), ("preference", 1.0), ("correlation", 0.999), ("noise", 1.0)):
            value = getattr(self, name)
            if not 0.0 <= value <= high:
                raise UserError(f"--{name} must lie between 0 and {high:g}, not {value}")

    @property
    def rates(self) -> np.ndarray:
        """(3,) mean answer probabilities: original, neither, fine-tuned."""
        decisive = 1.0 - self.neither
        return np.array([decisive * (1 - self.preference), self.neither, decisive * self.preference])

    def expected_verdict(self) -> str:
        """The verdict these rates deserve: the one whose probability the grid is about."""
        if self.preference == 0.5:
            return "no_preference"
        return "aligned" if self.preference > 0.5 else "misaligned"

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_counts(model: PowerModel, n_examples: int, n_annotators: int, n_studies: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(n_studies * n_examples, 3) label counts per simulated example; study s owns rows s*G .. (s+1)*G-1."""
    rates = model.rates
    size = (n_studies * n_examples, 3)
    if model.correlation <= 0:
        probs = np.broadcast_to(rates, size)
    else:
        concentration = (1 - model.correlation) / model.correlation
        shape = np.maximum(rates * concentration, 1e-12)
        draws = rng.gamma(np.broadcast_to(shape, size))
        draws[:, rates == 0] = 0.0
        probs = draws / np.maximum(draws.sum(1, keepdims=True), 1e-300)
    if model.noise > 0:  # an inattentive label picks any answer (as simulate-annotators' --noise)
        probs = (1 - model.noise) * probs + model.noise / 3
    return rng.multinomial(n_annotators, probs)


def verdict_shares(counts: np.ndarray, n_examples: int, n_studies: int, settings: AnalysisSettings,
                   family: int) -> dict[str, float]:
    """Share of the simulated studies reaching each verdict (the rule of ``harmony analyze``)."""
    study = np.repeat(np.arange(n_studies), n_examples)
    fig = clustered_shares(counts, study, n_studies, settings.confidence, settings.equivalence_margin)
    bound = lambda p: np.minimum(p * family, 1.0)  # noqa: E731 - Bonferroni bound on the Holm p
    got = verdicts(fig.decisive_low, fig.decisive_high, fig.delta, bound(fig.p_direction), bound(fig.p_equivalence),
                   fig.n_examples, settings)
    return {v: float(np.mean(got == v)) for v in VERDICTS}


def power_grid(model: PowerModel, examples: list[int], annotators: list[int], simulations: int,
               settings: AnalysisSettings, family: int = 1, seed: int = 0, progress=None) -> list[dict]:
    """One row per (examples, annotators): the share of ``simulations`` studies reaching each verdict.

    progress: optional callable called once per grid point (a progress bar's advance).
    """
    if simulations < 1 or family < 1 or not examples or not annotators or min(examples) < 1 or min(annotators) < 1:
        raise UserError("power needs at least one simulation, a family of at least one cell, and positive "
                        "numbers of examples and annotators")
    rng = np.random.default_rng(seed)
    rows = []
    for g in examples:
        for a in annotators:
            counts = simulate_counts(model, g, a, simulations, rng)
            shares = verdict_shares(counts, g, simulations, settings, family)
            rows.append({"examples": int(g), "annotators": int(a), "labels": int(g * a), **shares})
            if progress is not None:
                progress()
    return rows


def model_from_labels(counts: np.ndarray, cell_kappas: list[tuple[float | None, int]]) -> PowerModel:
    """Rates estimated from a study's label counts (3,) and its cells' (Fleiss kappa, labels)."""
    total = counts.sum()
    decisive = counts[0] + counts[2]
    if total == 0:
        raise UserError("the study has no labels to estimate rates from: give --neither/--preference/--correlation")
    defined = [(k, n) for k, n in cell_kappas if k is not None]
    kappa = float(np.average([k for k, _ in defined], weights=[n for _, n in defined])) if defined else 0.0
    return PowerModel(neither=float(counts[1] / total), preference=float(counts[2] / decisive) if decisive else 0.5,
                      correlation=float(np.clip(kappa, 0.0, 0.95)))


def power_figure(rows: list[dict], verdict: str, title: str, path) -> None:
    """Heat map of the probability of ``verdict`` over the grid (PNG and PDF), 80% contour marked in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    examples = sorted({r["examples"] for r in rows})
    annotators = sorted({r["annotators"] for r in rows})
    grid = np.array([[next(r[verdict] for r in rows if r["examples"] == g and r["annotators"] == a)
                      for a in annotators] for g in examples])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(annotators), 1.0 + 0.55 * len(examples)))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, origin="lower", aspect="auto")
    for i in range(len(examples)):
        for j in range(len(annotators)):
            ax.text(j, i, f"{grid[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="black" if grid[i, j] > 0.6 else "white", fontweight="bold" if grid[i, j] >= 0.8 else None)
    ax.set_xticks(range(len(annotators)), annotators)
    ax.set_yticks(range(len(examples)), examples)
    ax.set_xlabel("annotators per example")
    ax.set_ylabel("examples per cell")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label=f"P({verdict})")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
