"""The sequential verdict rule: a cell may stop taking labels as soon as its verdict is decided, and the
rule's error guarantee holds however often anyone looks.

Why: the fixed-sample rule (``verdict.py``) promises its error level for one look at the end. Looking
at it after every batch of labels and stopping when a cell reads "aligned" tests many times and
declares an effect that is not there far more often than alpha (``test_sequential.py`` shows it).

How: a group-sequential design with Lan-DeMets alpha spending (Lan & DeMets 1983, Biometrika 70:659),
O'Brien-Fleming type, ``alpha(t) / 2 = 2 - 2 Phi(z_{alpha/4} / sqrt(t))`` on each side (gsDesign's
``sfLDOF`` for a symmetric two-sided test), over the planned information
t = labels / max_labels. A cell is looked at after every ``look_every`` of its labels. The boundaries
are computed with gsDesign's recursive numerical integration (Jennison & Turnbull 2000, ch. 19), from
the ``gsdesign`` package: at look k the boundary c_k is the z whose crossing probability, having not
crossed before, is the alpha spent since the last look. Each boundary is used as a nominal level
p_k = 2 (1 - Phi(c_k)) against the same tests as ``harmony analyze`` (its t reference, crossed or
example-clustered variance), so small samples keep the t correction the fixed rule has.

At look k, on all the cell's labels so far, the verdict rule of ``verdict.py`` decides with:

- direction (aligned / misaligned): the two-sided direction test at p_k for alpha / family;
- no_preference: both one-sided equivalence tests at the one-sided nominal level of the boundaries for
  2 alpha / family (two symmetric one-sided alpha spends, as gsDesign's symmetric test);
- perceptible / imperceptible: d's repeated confidence interval (Jennison & Turnbull ch. 9), the Wilson
  interval at the nominal level of the boundaries for 1 - confidence.

family: the study's number of cells. The fixed rule takes Holm over cells; cells stop at different
times here, where Holm's step-down has no single ordering, so each cell spends alpha / family
(Bonferroni: Holm's first step, never less strict). A look that decides nothing leaves the cell
``undecided``; at the last look (max_labels) an undecided cell is ``inconclusive``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import ceil

import numpy as np
from gsdesign import h1, hupdate
from scipy.optimize import brentq
from scipy.stats import norm

from ..designs import DESIGNS, RULE_FIELDS, RULE_KEY, UNDECIDED
from ..errors import UserError
from .clustered import clustered_shares, crossed_shares
from .settings import AnalysisSettings
from .verdict import verdicts

GRID_POINTS = 18        # gsDesign's default r: Simpson grid density of the recursive integration
NEVER_CROSSED = 40.0    # a boundary whose alpha spent underflows: no z reaches it


@lru_cache(maxsize=32)
def spending_boundaries(fractions: tuple[float, ...], alpha: float) -> np.ndarray:
    """(K,) two-sided symmetric z boundaries at increasing information ``fractions`` (the last one 1) with
    Lan-DeMets O'Brien-Fleming-type spending of ``alpha``: P(|Z_k| >= c_k, |Z_j| < c_j for j < k) = the
    alpha spent between look k-1 and k, under no effect."""
    t = np.asarray(fractions, dtype=float)
    # Each side spends alpha / 2 by the one-sided form, as gsDesign's symmetric two-sided test (sfLDOF) does.
    spent = 2 * norm.sf(norm.isf(alpha / 4) / np.sqrt(t))
    per_side = np.diff(np.concatenate([[0.0], spent]))
    c = min(float(norm.isf(per_side[0])), NEVER_CROSSED)   # the first look's crossing is a normal tail: exact
    bounds, grid = [c], h1(GRID_POINTS, 0.0, t[0], -c, c)
    for k in range(1, len(t)):
        c = _next_boundary(grid, t[k - 1], t[k], per_side[k], 2 * spent[k - 1])
        bounds.append(c)
        grid = hupdate(GRID_POINTS, 0.0, t[k], -c, c, 0.0, t[k - 1], grid)
    return np.array(bounds)


def _next_boundary(grid, previous: float, fraction: float, target: float, crossed_before: float) -> float:
    """The z whose upper crossing at ``fraction``, not having crossed before (``grid``: the density kept at
    ``previous``), has probability ``target``. It lies between the normal quantiles of ``target`` (the joint
    probability is at most the marginal tail) and of ``target + crossed_before`` (at least the marginal tail
    less the probability of an earlier crossing), a narrow bracket."""
    def excess(c: float) -> float:
        return float(hupdate(GRID_POINTS, 0.0, fraction, c, np.inf, 0.0, previous, grid)[2].sum()) - target

    if not target > 0 or excess(NEVER_CROSSED) >= 0:
        return NEVER_CROSSED
    low, high = float(norm.isf(min(target + crossed_before, 0.5))), min(float(norm.isf(target)), NEVER_CROSSED)
    if not excess(low) >= 0 >= excess(high):       # quadrature error at the edges: the whole range
        low, high = 0.0, NEVER_CROSSED
    return brentq(excess, low, high, xtol=1e-10)


@dataclass(frozen=True)
class SequentialDesign:
    """A study's sequential design: at most ``max_labels`` labels per cell, looked at every ``look_every``."""

    max_labels: int
    look_every: int

    def __post_init__(self):
        for name in ("max_labels", "look_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise UserError(f"study sequential.{name} must be a positive whole number, not {value!r}: "
                                f"set study.sequential.{name}")

    @property
    def n_looks(self) -> int:
        return ceil(self.max_labels / self.look_every)

    def look_at(self, n_labels: int) -> int:
        """Looks completed once a cell has ``n_labels`` labels (the last look at max_labels)."""
        return self.n_looks if n_labels >= self.max_labels else min(n_labels // self.look_every, self.n_looks)

    def labels_at(self, look: int) -> int:
        """Labels a cell has at ``look`` (1-based), as planned."""
        return min(look * self.look_every, self.max_labels)

    def fractions(self) -> tuple[float, ...]:
        return tuple(self.labels_at(k) / self.max_labels for k in range(1, self.n_looks + 1))

    def nominal_levels(self, alpha: float) -> np.ndarray:
        """(n_looks,) two-sided nominal p level of each look for a family-wise two-sided ``alpha``."""
        return 2 * norm.sf(spending_boundaries(self.fractions(), float(alpha)))

    @classmethod
    def from_config(cls, config: dict, examples: int, labels_per_example: int) -> "SequentialDesign | None":
        """The design a study recorded (``design`` and ``sequential`` of conf/study); None for a fixed design.
        examples, labels_per_example: the cell's plan, the default maximum."""
        design = config.get("design") or "fixed"
        if design not in DESIGNS:
            raise UserError(f"study design must be one of {', '.join(DESIGNS)}, not {design!r}: set study.design")
        if design == "fixed":
            return None
        options = config.get("sequential") or {}
        maximum = options.get("max_labels_per_cell")
        return cls(max_labels=examples * labels_per_example if maximum is None else maximum,
                   look_every=options.get("look_every", 10))


def study_rule(config: dict | None) -> AnalysisSettings:
    """The verdict rule of a sequential study's looks: what it recorded at build (``RULE_FIELDS``), the rest
    from conf/analysis; conf/analysis's alone for a study that recorded none."""
    recorded = (config or {}).get(RULE_KEY) or {}
    return AnalysisSettings.defaults(**{key: recorded[key] for key in RULE_FIELDS if key in recorded})


@dataclass
class Levels:
    """Nominal levels of one look per cell (C,): direction (two-sided), equivalence (one-sided), d's interval."""

    direction: np.ndarray
    equivalence: np.ndarray
    decisive_confidence: np.ndarray


def look_levels(design: SequentialDesign, looks: np.ndarray, settings: AnalysisSettings, family: int) -> Levels:
    """The nominal levels at each cell's look (``looks`` (C,), 1-based)."""
    index = np.clip(np.asarray(looks, dtype=int), 1, design.n_looks) - 1
    cell_alpha = settings.alpha / max(family, 1)
    return Levels(direction=design.nominal_levels(cell_alpha)[index],
                  equivalence=design.nominal_levels(min(2 * cell_alpha, 0.999))[index] / 2,
                  # below 1 - 1e-12: at an early look the interval spans [0, 1] rather than an infinite quantile
                  decisive_confidence=np.minimum(1 - design.nominal_levels(1 - settings.confidence)[index],
                                                 1 - 1e-12))


def label_tables(label_cell, label_example, label_annotator, label_choice, n_cells: int):
    """Count tables of labels (L,): ((E, 3) per example, (E,) its cell, (K, 3) per (cell, annotator), (K,) its cell).

    Examples and annotators are any integer ids (an id names the same example or person in every cell).
    """
    cell = np.asarray(label_cell, dtype=np.int64)
    choice = np.asarray(label_choice, dtype=np.int64)
    tables = []
    for ids in (label_example, label_annotator):
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids - ids.min(initial=0)
        keys, group = np.unique(cell * (ids.max(initial=0) + 1) + ids, return_inverse=True)
        counts = np.bincount(group.ravel() * 3 + choice, minlength=len(keys) * 3).reshape(len(keys), 3)
        tables += [counts, keys // (ids.max(initial=0) + 1)]
    return tables


def look_verdicts(label_cell, label_example, label_annotator, label_choice, n_cells: int, looks,
                  design: SequentialDesign, settings: AnalysisSettings, family: int) -> np.ndarray:
    """(C,) each cell's verdict at its look ``looks[c]`` (1-based) from the labels given (all it has at that look):
    UNDECIDED where nothing is decided before the last look, ``inconclusive`` where nothing is at the last."""
    looks = np.broadcast_to(np.asarray(looks, dtype=int), (n_cells,))
    levels = look_levels(design, looks, settings, family)
    by_example, example_cell, by_annotator, annotator_cell = label_tables(
        label_cell, label_example, label_annotator, label_choice, n_cells)
    if settings.generalize == "people":
        fig = crossed_shares(by_example, example_cell, by_annotator, annotator_cell, n_cells,
                             levels.decisive_confidence, settings.equivalence_margin)
    else:
        fig = clustered_shares(by_example, example_cell, n_cells, levels.decisive_confidence,
                               settings.equivalence_margin)
    out = verdicts(fig.decisive_low, fig.decisive_high, fig.delta, fig.p_direction, fig.p_equivalence,
                   fig.n_examples, settings, levels.direction, levels.equivalence)
    out[(out == "inconclusive") & (looks < design.n_looks)] = UNDECIDED
    out[looks < 1] = UNDECIDED
    return out


def cell_decision(label_example, label_annotator, label_choice, design: SequentialDesign,
                  settings: AnalysisSettings, family: int) -> tuple[str, int]:
    """One cell's (verdict, look) from all its labels so far ((L,) each): the look its labels complete."""
    look = design.look_at(len(label_choice))
    if look == 0:
        return UNDECIDED, 0
    verdict = look_verdicts(np.zeros(len(label_choice), dtype=int), label_example, label_annotator, label_choice,
                            1, [look], design, settings, family)
    return str(verdict[0]), look


@dataclass
class Stops:
    """Per cell (C,): labels used at the deciding look (all the cell's labels when nothing decided), that look
    (0: fewer labels than one look), and the verdict there (UNDECIDED: the labels ran out before the last look)."""

    labels: np.ndarray
    look: np.ndarray
    verdict: np.ndarray


def replay(label_cell, label_example, label_annotator, label_choice, n_cells: int, design: SequentialDesign,
           settings: AnalysisSettings, family: int, progress=None) -> Stops:
    """Where each cell would have stopped: labels (L,) in the order they were given, each cell looked at after
    every ``look_every`` of its labels. progress: optional callable, called once per look."""
    label_cell = np.asarray(label_cell, dtype=np.int64)
    arrays = [np.asarray(a) for a in (label_example, label_annotator, label_choice)]
    order = np.argsort(label_cell, kind="stable")
    sizes = np.bincount(label_cell, minlength=n_cells)
    rank = np.empty(len(label_cell), dtype=np.int64)
    rank[order] = np.arange(len(label_cell)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    stops = Stops(labels=sizes.copy(), look=np.zeros(n_cells, dtype=int),
                  verdict=np.full(n_cells, UNDECIDED, dtype=object))
    for look in range(1, design.n_looks + 1):
        needed = design.labels_at(look)
        open_cells = (stops.verdict == UNDECIDED) & (sizes >= needed)
        if not open_cells.any():
            break
        seen = (rank < needed) & open_cells[label_cell]
        got = look_verdicts(label_cell[seen], *(a[seen] for a in arrays), n_cells, look, design, settings, family)
        stops.look[open_cells] = look
        decided = open_cells & (got != UNDECIDED)
        stops.verdict[decided] = got[decided]
        stops.labels[decided] = needed
        if progress is not None:
            progress()
    return stops
