"""``harmony power``: plan a study by simulation: how likely is each verdict for a grid of study sizes?

The model (its assumptions, summarized in ``harmony power --help`` and the README):

- One cell is planned at a time. Each of its G examples has its own answer probabilities
  (original, neither, fine-tuned) drawn from a Dirichlet distribution whose mean is the assumed
  rates: Neither share q, and among decisive labels the fine-tuned share pi, i.e.
  ((1 - q)(1 - pi), q, (1 - q) pi), with concentration (1 - rho) / rho. rho is the within-example
  correlation: the intra-class correlation of any answer between two labels of the same example
  (0: independent labels; 1: all labels of an example the same). Fleiss' kappa estimates it.
- Each of A annotators labels every example, independently given the example's probabilities and
  their own leaning: annotators differ as people do (as in ``harmony simulate-annotators``).
  Annotator i shifts the example's fine-tuned share of decisive answers by u_i and its Neither
  rate by v_i on the logit scale, u_i ~ N(0, annotator_spread^2), v_i ~ N(0, neither_spread^2)
  (both 0: exchangeable annotators). No position bias, learning or fatigue. With ``noise`` (as in
  ``harmony simulate-annotators``), a label is inattentive with that probability and picks any of
  the three answers uniformly.
- Each simulated study is analyzed with the same statistics and verdict rule as ``harmony analyze``,
  for the population ``analysis.settings.generalize`` names (people by default: the crossed
  inference, so with one annotator no verdict about people is possible). The cell is one of K
  cells in the report's Holm family; the simulation applies the Bonferroni bound K * p (Holm's
  first step; Holm is never stricter), so the power of a directional or no_preference verdict is
  a lower bound when other cells have real effects.
- Each probability comes with its Monte Carlo (Wilson) interval over the simulations; 600 by
  default keep it within about +-3 points near 80%.
- ``--from-study``: q, pi from the study's (or one cell's) label shares, rho from the label-weighted
  mean of its cells' Fleiss' kappas (clipped to [0, 0.95]), the spreads from the annotators' own
  shares (``annotator_spreads``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import loggamma

from ..errors import UserError
from .clustered import clustered_shares, crossed_shares
from .plot import save_figure
from .settings import AnalysisSettings
from .significance import wilson_interval
from .verdict import VERDICTS, verdicts


@dataclass(frozen=True)
class PowerModel:
    """Assumed rates of one cell: Neither share, fine-tuned share of decisive labels, within-example correlation,
    inattentive share, and how much annotators differ (logit SDs of their preference and of their Neither rate)."""

    neither: float = 0.5
    preference: float = 0.65
    correlation: float = 0.2
    noise: float = 0.0
    annotator_spread: float = 0.0
    neither_spread: float = 0.0

    def __post_init__(self):
        for name, high in (("neither", 1.0), ("preference", 1.0), ("correlation", 0.999), ("noise", 1.0),
                           ("annotator_spread", 10.0), ("neither_spread", 10.0)):
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

    def describe(self) -> str:
        """The assumed rates in one phrase, as the power figures' titles give them."""
        return (f"Neither {self.neither:.0%}, fine-tuned {self.preference:.0%} of decisive, correlation "
                f"{self.correlation:.2f}, annotator spread {self.annotator_spread:.2f} (Neither "
                f"{self.neither_spread:.2f})")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def example_probabilities(model: PowerModel, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, 3) answer probabilities (original, neither, fine-tuned) of ``size`` examples: Dirichlet, mean rates."""
    rates = model.rates
    if model.correlation <= 0:
        return np.broadcast_to(rates, (size, 3)).copy()
    concentration = (1 - model.correlation) / model.correlation
    shape = np.broadcast_to(np.maximum(rates * concentration, 1e-12), (size, 3))
    # the Gamma draws in logs (scipy's loggamma): with a strong correlation (small shape) Gamma draws
    # themselves underflow to 0 (at 0.999, half the rows would have no probabilities at all)
    log_draws = loggamma.rvs(shape, size=shape.shape, random_state=rng)
    log_draws[:, rates == 0] = -np.inf
    draws = np.exp(log_draws - log_draws.max(1, keepdims=True))
    return draws / draws.sum(1, keepdims=True)


def simulate_labels(model: PowerModel, n_examples: int, n_annotators: int, n_studies: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(n_studies, n_examples, n_annotators) simulated choices (codes: 0 original, 1 neither, 2 fine-tuned)."""
    probs = example_probabilities(model, n_studies * n_examples, rng).reshape(n_studies, n_examples, 1, 3)
    shift = rng.normal(0.0, 1.0, (2, n_studies, 1, n_annotators))
    neither = probs[..., 1]
    decisive = probs[..., 0] + probs[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(decisive > 0, probs[..., 2] / decisive, 0.5)
    if model.neither_spread > 0:
        neither = np.where((neither > 0) & (neither < 1), _expit(_logit(neither) + model.neither_spread * shift[0]),
                           neither)
    if model.annotator_spread > 0:
        share = np.where((share > 0) & (share < 1), _expit(_logit(share) + model.annotator_spread * shift[1]), share)
    shape = (n_studies, n_examples, n_annotators)
    u = rng.random((2, *shape))
    choice = np.where(u[0] < neither, 1, np.where(u[1] < share, 2, 0))
    if model.noise > 0:  # an inattentive label picks any answer (as simulate-annotators' --noise)
        choice = np.where(rng.random(shape) < model.noise, rng.integers(0, 3, shape), choice)
    return choice


def simulate_counts(model: PowerModel, n_examples: int, n_annotators: int, n_studies: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(n_studies * n_examples, 3) label counts per simulated example; study s owns rows s*G .. (s+1)*G-1."""
    return count_tables(simulate_labels(model, n_examples, n_annotators, n_studies, rng))[0]


def count_tables(choice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S*G, 3) counts per example and (S*A, 3) counts per (study, annotator) of (S, G, A) choices."""
    S, G, A = choice.shape
    example = np.arange(S * G).reshape(S, G, 1)
    annotator = (np.arange(S)[:, None, None] * A + np.arange(A)[None, None, :])
    by_example = np.bincount((example * 3 + choice).ravel(), minlength=S * G * 3).reshape(S * G, 3)
    by_annotator = np.bincount((annotator * 3 + choice).ravel(), minlength=S * A * 3).reshape(S * A, 3)
    return by_example, by_annotator


def verdict_shares(choice: np.ndarray, settings: AnalysisSettings, family: int) -> dict[str, float]:
    """Share of the simulated studies ((S, G, A) choices) reaching each verdict (the rule of ``harmony analyze``,
    for the population ``settings.generalize`` names)."""
    got = study_verdicts(choice, settings, family)
    return {v: float(np.mean(got == v)) for v in VERDICTS}


def study_verdicts(choice: np.ndarray, settings: AnalysisSettings, family: int) -> np.ndarray:
    """(S,) verdict of each simulated study ((S, G, A) choices) under the fixed design: all its labels at once."""
    S, G, A = choice.shape
    by_example, by_annotator = count_tables(choice)
    study = np.repeat(np.arange(S), G)
    if settings.generalize == "people":
        fig = crossed_shares(by_example, study, by_annotator, np.repeat(np.arange(S), A), S, settings.confidence,
                             settings.equivalence_margin)
    else:
        fig = clustered_shares(by_example, study, S, settings.confidence, settings.equivalence_margin)
    bound = lambda p: np.minimum(p * family, 1.0)  # noqa: E731 - Bonferroni bound on the Holm p
    return verdicts(fig.decisive_low, fig.decisive_high, fig.delta, bound(fig.p_direction), bound(fig.p_equivalence),
                    fig.n_examples, settings)


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
            shares = {}
            for start in range(0, simulations, max(1, 4_000_000 // (g * a))):  # bounded memory per batch
                batch = min(max(1, 4_000_000 // (g * a)), simulations - start)
                for v, share in verdict_shares(simulate_labels(model, g, a, batch, rng), settings, family).items():
                    shares[v] = shares.get(v, 0.0) + share * batch / simulations
            low, high = wilson_interval(np.array([shares[v] * simulations for v in VERDICTS]),
                                        np.full(len(VERDICTS), simulations), 0.95)
            rows.append({"examples": int(g), "annotators": int(a), "labels": int(g * a), **shares,
                         **{f"{v}_interval": [float(low[i]), float(high[i])] for i, v in enumerate(VERDICTS)}})
            if progress is not None:
                progress()
    return rows


def logit_spread(successes: np.ndarray, trials: np.ndarray) -> float:
    """The SD across annotators of their true logit share, by moments: the variance of their empirical logits
    (log((k + 0.5) / (n - k + 0.5))) less its mean sampling variance (1 / (k + 0.5) + 1 / (n - k + 0.5)); 0 when
    sampling explains it all or fewer than two annotators answered."""
    k, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    k, n = k[n > 0], n[n > 0]
    if len(n) < 2:
        return 0.0
    logits = np.log((k + 0.5) / (n - k + 0.5))
    sampling = np.mean(1 / (k + 0.5) + 1 / (n - k + 0.5))
    return float(np.sqrt(max(np.var(logits, ddof=1) - sampling, 0.0)))


def annotator_spreads(annotator_counts: np.ndarray) -> tuple[float, float]:
    """(preference spread, Neither spread) from (A, 3) per-annotator counts (original, neither, fine-tuned)."""
    decisive = annotator_counts[:, 0] + annotator_counts[:, 2]
    return (logit_spread(annotator_counts[:, 2], decisive),
            logit_spread(annotator_counts[:, 1], annotator_counts.sum(1)))


def model_from_labels(counts: np.ndarray, cell_kappas: list[tuple[float | None, int]],
                      annotator_counts: np.ndarray | None = None) -> PowerModel:
    """Rates estimated from a study's label counts (3,), its cells' (Fleiss kappa, labels) and its annotators'
    (A, 3) counts (their spreads; None: annotators taken as exchangeable)."""
    total = counts.sum()
    decisive = counts[0] + counts[2]
    if total == 0:
        raise UserError("the study has no labels to estimate rates from: give --neither/--preference/--correlation")
    defined = [(k, n) for k, n in cell_kappas if k is not None]
    kappa = float(np.average([k for k, _ in defined], weights=[n for _, n in defined])) if defined else 0.0
    spread, neither_spread = (0.0, 0.0) if annotator_counts is None else annotator_spreads(annotator_counts)
    return PowerModel(neither=float(counts[1] / total), preference=float(counts[2] / decisive) if decisive else 0.5,
                      correlation=float(np.clip(kappa, 0.0, 0.95)), annotator_spread=round(spread, 4),
                      neither_spread=round(neither_spread, 4))


def flat_rows(rows: list[dict]) -> list[dict]:
    """Grid rows with each ``<name>_interval`` [low, high] as two columns ``<name>_low``, ``<name>_high`` (power.csv)."""
    return [{**{k: v for k, v in r.items() if not k.endswith("_interval")},
             **{f"{k[:-len('_interval')]}_{end}": v[i] for k, v in r.items() if k.endswith("_interval")
                for i, end in enumerate(("low", "high"))}} for r in rows]


def power_figure(rows: list[dict], verdict: str, title: str, path) -> None:
    """Heat map of the probability of ``verdict`` over the grid (PNG and PDF), 80% contour marked in the cells."""
    examples = sorted({r["examples"] for r in rows})
    annotators = sorted({r["annotators"] for r in rows})
    grid = np.array([[next(r[verdict] for r in rows if r["examples"] == g and r["annotators"] == a)
                      for a in annotators] for g in examples])
    fig = Figure(figsize=(1.2 + 0.9 * len(annotators), 1.0 + 0.55 * len(examples)))
    ax = fig.subplots()
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
    save_figure(fig, path)
