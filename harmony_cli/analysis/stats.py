"""Statistics of a study's labels: does the metric agree with people?

Every function takes plain pandas/numpy data (the frame of
:meth:`harmony_cli.store.Store.labels_frame`) and returns plain data; nothing here
reads the store or writes files. The statistics come from scipy, statsmodels
and krippendorff; this module only arranges the data for them, vectorized over
labels and examples (loops run over cells, never over examples).

A label is one annotator's choice for one example: ``original``, ``neither`` or
``finetuned``. A *cell* is (dataset, metric, backbone, attribution). Labels on the
same example are not independent, so next to the label-level binomial test there
are example-level views: a sign test over per-example majorities and a cluster
bootstrap over examples.
"""
from __future__ import annotations

import gc
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ..errors import UserError

# Display order everywhere (bars read left to right: original, neither, finetuned).
CHOICES = ("original", "neither", "finetuned")
ORIGINAL, NEITHER, FINETUNED = range(3)
CELL_FIELDS = ("dataset", "metric", "backbone", "attribution")
REQUIRED_COLUMNS = ("example_id", *CELL_FIELDS, "annotator", "choice")
VERDICTS = ("aligned", "misaligned", "imperceptible", "no_labels")


@dataclass(frozen=True)
class AnalysisSettings:
    """How the analysis decides (``conf/analysis/default.yaml``, group ``analysis.settings``).

    alpha: family-wise significance level; p-values are Holm-corrected over the cells.
    confidence: level of every interval (Wilson, bootstrap).
    bootstrap_resamples: resamples of the cluster bootstrap over examples.
    seed: seed of the bootstrap.
    verdict_test: ``binomial`` (label-level exact binomial test) or ``sign`` (per-example
        majority sign test) decides the verdict.
    neither_dominant: share of Neither above which a cell's Neither is called dominant.
    """

    alpha: float = 0.05
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0
    verdict_test: str = "binomial"
    neither_dominant: float = 0.5

    def __post_init__(self):
        if not 0 < self.alpha < 1:
            raise UserError(f"analysis alpha must lie between 0 and 1, not {self.alpha}: set analysis.settings.alpha")
        if not 0 < self.confidence < 1:
            raise UserError(f"analysis confidence must lie between 0 and 1, not {self.confidence}: "
                            f"set analysis.settings.confidence")
        if self.bootstrap_resamples < 0:
            raise UserError(f"bootstrap_resamples must be >= 0 (0: no bootstrap), not {self.bootstrap_resamples}")
        if self.verdict_test not in ("binomial", "sign"):
            raise UserError(f"verdict_test must be binomial or sign, not {self.verdict_test!r}: "
                            f"set analysis.settings.verdict_test")

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------
# encoding


@dataclass
class EncodedLabels:
    """Labels as integer arrays. E examples, L labels, C cells, A annotators.

    cells: (C, 4) frame of the cell fields, in report order.
    example_ids: (E,) store ids; example_cell: (E,) cell index of each example.
    counts: (E, 3) labels per example and choice (CHOICES order).
    label_example, label_choice, label_annotator: (L,) indices per label.
    annotators: (A,) names; annotator_simulated: (A,) bool.
    original_score, finetuned_score: (E,) float (NaN where absent).
    left_map: (L,) code of the map shown left (ORIGINAL / FINETUNED), -1 where not recorded.
    label_cell: (L,) cell index per label.
    """

    cells: pd.DataFrame
    example_ids: np.ndarray
    example_cell: np.ndarray
    counts: np.ndarray
    label_example: np.ndarray
    label_choice: np.ndarray
    label_annotator: np.ndarray
    annotators: np.ndarray
    annotator_simulated: np.ndarray
    original_score: np.ndarray
    finetuned_score: np.ndarray
    left_map: np.ndarray
    label_cell: np.ndarray

    @property
    def n_cells(self) -> int:
        return len(self.cells)


def _codes(values: pd.Series, categories: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``categories``; -1 for anything else (None, NaN, unknown)."""
    codes, uniques = pd.factorize(values)  # fast on object and Arrow strings alike
    lookup = np.append(pd.Index(list(categories)).get_indexer(pd.Index(uniques, dtype=object)), -1)
    return lookup[codes].astype(np.int8)  # code -1 (missing) picks the appended -1


def encode_labels(labels: pd.DataFrame, cells: pd.DataFrame | None = None) -> EncodedLabels:
    """Integer arrays of a labels frame (columns of ``Store.labels_frame``).

    ``cells``: optional frame of cells (CELL_FIELDS columns) to include even without labels.
    An example id identifies its cell (as in the store). Raises UserError on missing
    columns or unknown choices.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in labels.columns]
    if missing:
        raise UserError(f"the labels lack column(s) {', '.join(missing)}: give a frame like Store.labels_frame()")
    choice = _codes(labels["choice"], CHOICES)
    if (choice < 0).any():
        bad = sorted(set(labels["choice"][choice < 0].astype(str)))[:5]
        raise UserError(f"unknown choice(s) {', '.join(map(repr, bad))}: a label is one of {', '.join(CHOICES)}")

    label_example, example_ids = pd.factorize(labels["example_id"])
    n_labels, n_examples = len(labels), len(example_ids)
    # The first label row of each example carries its cell and scores.
    first = np.empty(n_examples, dtype=np.int64)
    first[label_example[::-1]] = np.arange(n_labels - 1, -1, -1)
    per_example = labels[[c for c in (*CELL_FIELDS, "original_score", "finetuned_score")
                          if c in labels.columns]].iloc[first]

    cell_keys = per_example[list(CELL_FIELDS)].astype(str).reset_index(drop=True)
    all_cells = cell_keys.drop_duplicates()
    if cells is not None and len(cells):
        all_cells = pd.concat([all_cells, cells[list(CELL_FIELDS)].astype(str)]).drop_duplicates()
    all_cells = all_cells.sort_values(list(CELL_FIELDS)).reset_index(drop=True)
    cell_index = pd.MultiIndex.from_frame(all_cells)
    example_cell = cell_index.get_indexer(pd.MultiIndex.from_frame(cell_keys)).astype(np.int64)

    counts = np.bincount(label_example * 3 + choice, minlength=n_examples * 3).reshape(n_examples, 3)
    label_annotator, annotators = pd.factorize(labels["annotator"], sort=True)
    if "simulated" in labels.columns:
        simulated = np.zeros(len(annotators), dtype=bool)
        simulated[label_annotator] = labels["simulated"].fillna(False).to_numpy(dtype=bool)
    else:
        simulated = np.zeros(len(annotators), dtype=bool)

    def scores(column: str) -> np.ndarray:
        if column not in per_example.columns:
            return np.full(n_examples, np.nan)
        return pd.to_numeric(per_example[column], errors="coerce").to_numpy(dtype=float)

    left = (_codes(labels["left_map"], CHOICES) if "left_map" in labels.columns
            else np.full(n_labels, -1, dtype=np.int8))
    return EncodedLabels(
        cells=all_cells, example_ids=np.asarray(example_ids), example_cell=example_cell, counts=counts,
        label_example=label_example.astype(np.int64), label_choice=choice,
        label_cell=example_cell[label_example],
        label_annotator=label_annotator.astype(np.int64), annotators=np.asarray(annotators, dtype=object),
        annotator_simulated=simulated, original_score=scores("original_score"),
        finetuned_score=scores("finetuned_score"), left_map=left,
    )


# ---------------------------------------------------------------------------------------
# single statistics (library calls, vectorized where the library allows)


def wilson_interval(count, nobs, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score intervals of ``count / nobs`` (arrays); NaN where ``nobs == 0``."""
    from statsmodels.stats.proportion import proportion_confint

    count = np.asarray(count, dtype=float)
    nobs = np.asarray(nobs, dtype=float)
    safe = np.where(nobs > 0, nobs, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = proportion_confint(count, safe, alpha=1 - confidence, method="wilson")
    low = np.where(nobs > 0, low, np.nan)
    high = np.where(nobs > 0, high, np.nan)
    return low, high


def binomial_p(successes: int, trials: int) -> float:
    """Two-sided exact binomial test of ``successes / trials`` against 0.5; NaN when no trials."""
    from scipy.stats import binomtest

    if trials <= 0:
        return math.nan
    return float(binomtest(int(successes), int(trials), 0.5, alternative="two-sided").pvalue)


def holm(p_values) -> np.ndarray:
    """Holm-corrected p-values; NaN entries stay NaN and do not count as tests."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    defined = np.isfinite(p)
    if defined.any():
        # multipletests(method="holm") runs gc.collect(): freezing the objects that exist already
        # keeps that from walking the whole heap (0.1 s per call in a loaded process).
        gc.freeze()
        try:
            out[defined] = multipletests(p[defined], method="holm")[1]
        finally:
            gc.unfreeze()
    return out


def agreement(table: np.ndarray) -> dict:
    """Fleiss' kappa and Krippendorff's alpha (nominal) of an (examples, 3) count table.

    Examples with fewer than two labels carry no agreement information and are left out.
    Fleiss' kappa needs the same number of labels per example: when they differ it is
    computed over the examples with the most common number of labels (said in ``notes``);
    Krippendorff's alpha uses them all. Undefined statistics are None with a note.
    Returns {fleiss_kappa, fleiss_n_examples, krippendorff_alpha, notes}.
    """
    import krippendorff
    from statsmodels.stats.inter_rater import fleiss_kappa

    table = np.asarray(table)
    out = {"fleiss_kappa": None, "fleiss_n_examples": 0, "krippendorff_alpha": None, "notes": []}
    rated = table.sum(1)
    paired = table[rated >= 2]
    if len(paired) == 0:
        out["notes"].append("agreement undefined: no example has two or more labels")
        return out
    used = np.flatnonzero(paired.sum(0))
    if len(used) == 1:
        everywhere = np.flatnonzero(table.sum(0)).size == 1
        scope = "every label" if everywhere else "every label on examples with two or more labels"
        out["notes"].append(f"agreement undefined: {scope} is {CHOICES[used[0]]!r} (no variation to agree "
                            f"beyond chance on)")
        return out

    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        alpha = float(krippendorff.alpha(value_counts=paired, level_of_measurement="nominal"))
        raters = paired.sum(1)
        values, freq = np.unique(raters, return_counts=True)
        common = values[np.argmax(freq)]
        fleiss_table = paired if len(values) == 1 else paired[raters == common]
        if len(values) > 1:
            out["notes"].append(f"Fleiss' kappa over the {len(fleiss_table)} of {len(paired)} examples with "
                                f"{common} labels each (it needs equal counts); Krippendorff's alpha uses all")
        kappa = (float(fleiss_kappa(fleiss_table, method="fleiss"))
                 if np.flatnonzero(fleiss_table.sum(0)).size > 1 else math.nan)
    if math.isfinite(kappa):
        out["fleiss_kappa"], out["fleiss_n_examples"] = kappa, int(len(fleiss_table))
    else:
        out["notes"].append(f"Fleiss' kappa undefined: the {len(fleiss_table)} examples with {common} labels "
                            f"all carry the same label")
    if math.isfinite(alpha):
        out["krippendorff_alpha"] = alpha
    else:
        out["notes"].append("Krippendorff's alpha undefined (no expected disagreement)")
    return out


def majority_votes(counts: np.ndarray) -> np.ndarray:
    """Majority choice per example of an (E, 3) count table: 0/1/2 (CHOICES), 3 for a tie, -1 unlabelled."""
    top = counts.max(1)
    at_top = (counts == top[:, None]).sum(1)
    vote = counts.argmax(1)
    vote = np.where(at_top > 1, 3, vote)
    return np.where(top > 0, vote, -1)


def cluster_bootstrap_share(finetuned: np.ndarray, decisive: np.ndarray, example_cell: np.ndarray, n_cells: int,
                            resamples: int, confidence: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each cell's decisive fine-tuned share, resampling examples with replacement.

    finetuned, decisive: (E,) fine-tuned and decisive label counts per example; example_cell: (E,).
    Each resample draws a cell's m examples with replacement and takes sum(finetuned) / sum(decisive).
    Two exact ways to draw, whichever is cheaper per cell, both vectorized over resamples: when
    few distinct (finetuned, decisive) patterns K exist (few annotators, many examples), a
    multinomial draw of m over the patterns with their frequencies, O(K) per resample; otherwise
    m uniform example indices, O(m). Cells of the same size share their index draws: each cell's
    interval is a marginal quantity, so correlating the Monte Carlo noise across cells changes
    none of them, and it halves the work. Resamples without a decisive label are left out.
    Returns (low, high), each (C,), NaN where undefined.
    """
    low = np.full(n_cells, np.nan)
    high = np.full(n_cells, np.nan)
    if resamples <= 0 or len(finetuned) == 0:
        return low, high
    rng = np.random.default_rng(seed)
    order = np.argsort(example_cell, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(example_cell, minlength=n_cells))])
    packed, patterns, by_size = {}, {}, {}
    for c in range(n_cells):
        members = order[bounds[c]:bounds[c + 1]]
        if len(members) == 0 or decisive[members].sum() == 0:
            continue
        # Both counts in one int64 (decisive in the high half): one gather and one sum serve both.
        packed[c] = (decisive[members].astype(np.int64) << 32) | finetuned[members].astype(np.int64)
        values, freq = np.unique(packed[c], return_counts=True)
        if len(values) * 16 < len(members):  # a binomial draw costs about 16 index draws and gathers
            patterns[c] = (values, freq / len(members))
        else:
            by_size.setdefault(len(members), []).append(c)
    sums = {c: np.empty(resamples, dtype=np.int64) for c in packed}
    for c, (values, prob) in patterns.items():
        chunk = max(1, 4_000_000 // len(values))
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            sums[c][start:start + b] = rng.multinomial(len(packed[c]), prob, size=b) @ values
    for m, cells in by_size.items():
        chunk = max(1, 4_000_000 // m)
        for start in range(0, resamples, chunk):
            b = min(chunk, resamples - start)
            index = rng.integers(0, m, size=(b, m), dtype=np.uint32)
            for c in cells:
                sums[c][start:start + b] = packed[c][index].sum(1)
    tail = (1 - confidence) / 2
    for c, total in sums.items():
        dec_sum, fin_sum = total >> 32, total & 0xFFFFFFFF
        shares = fin_sum[dec_sum > 0] / dec_sum[dec_sum > 0]
        low[c], high[c] = np.quantile(shares, [tail, 1 - tail])
    return low, high


def gain_regression(gain: np.ndarray, finetuned: np.ndarray, original: np.ndarray) -> dict:
    """Does the metric gain predict the choice? Logistic regression of finetuned-vs-original on the gain.

    gain: (E,) metric improvement of the fine-tuned over the original map per example (positive:
    the metric prefers the fine-tuned map); finetuned, original: (E,) decisive label counts.
    Every decisive label is one Bernoulli observation with its example's gain; the fit runs on the
    per-example counts (a binomial GLM with the logit link has the same likelihood as the
    label-level Logit, and its cost does not grow with annotators).
    Returns {n_labels, n_examples, intercept, coefficient, std_error, p_value, odds_ratio_per_sd, notes}.
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationError, PerfectSeparationWarning

    keep = np.isfinite(gain) & ((finetuned + original) > 0)
    gain, fin, orig = gain[keep], finetuned[keep].astype(float), original[keep].astype(float)
    n = fin + orig
    out = {"n_labels": int(n.sum()), "n_examples": int(keep.sum()), "intercept": None, "coefficient": None,
           "std_error": None, "p_value": None, "odds_ratio_per_sd": None, "notes": []}
    if out["n_labels"] == 0:
        out["notes"].append("gain regression undefined: no decisive label on an example with both scores")
        return out
    if fin.sum() == 0 or orig.sum() == 0:
        side = "original" if fin.sum() == 0 else "finetuned"
        out["notes"].append(f"gain regression undefined: every decisive label is {side!r}")
        return out
    if np.ptp(gain) == 0:
        out["notes"].append("gain regression undefined: every example has the same metric gain")
        return out
    exog = sm.add_constant(gain, has_constant="add")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = sm.GLM(np.column_stack([fin, orig]), exog, family=sm.families.Binomial()).fit()
    except (PerfectSeparationError, PerfectSeparationWarning, ConvergenceWarning, np.linalg.LinAlgError) as exc:
        out["notes"].append(f"gain regression undefined: the fit does not converge ({type(exc).__name__}: the "
                            f"gain separates the choices perfectly)")
        return out
    intercept, coefficient = (float(v) for v in fit.params)
    std_error, p_value = float(fit.bse[1]), float(fit.pvalues[1])
    if not all(math.isfinite(v) for v in (intercept, coefficient, std_error, p_value)):
        out["notes"].append("gain regression undefined: the fit gave no finite estimate")
        return out
    # Spread of the gain over the decisive labels: an effect size comparable across metrics.
    mean = np.average(gain, weights=n)
    sd = math.sqrt(np.average((gain - mean) ** 2, weights=n))
    out.update(intercept=intercept, coefficient=coefficient, std_error=std_error, p_value=p_value,
               odds_ratio_per_sd=float(np.exp(coefficient * sd)) if sd > 0 else None)
    return out


# ---------------------------------------------------------------------------------------
# the report's parts


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _shares(counts: np.ndarray, confidence: float) -> tuple[dict, dict]:
    total = counts.sum()
    low, high = wilson_interval(counts, np.full(3, total), confidence)
    shares = {c: _finite(counts[i] / total) if total else None for i, c in enumerate(CHOICES)}
    intervals = {c: [_finite(low[i]), _finite(high[i])] if total else None for i, c in enumerate(CHOICES)}
    return shares, intervals


def _verdict(p_holm: float | None, decisive_share: float | None, neither_share: float | None,
             n_labels: int, settings: AnalysisSettings) -> tuple[str, str]:
    """(verdict, one-line detail)."""
    if n_labels == 0:
        return "no_labels", "no labels yet"
    if p_holm is not None and p_holm < settings.alpha and decisive_share is not None and decisive_share != 0.5:
        side = "fine-tuned" if decisive_share > 0.5 else "original"
        verdict = "aligned" if decisive_share > 0.5 else "misaligned"
        return verdict, (f"people prefer the {side} maps ({decisive_share:.0%} of decisive labels choose the "
                         f"fine-tuned map; Holm p={p_holm:.2g} < {settings.alpha})")
    neither = neither_share or 0.0
    how = ("dominant" if neither > settings.neither_dominant else "not dominant")
    if p_holm is None:
        reason = "no decisive label"
    else:
        reason = f"Holm p={p_holm:.2g} >= {settings.alpha}"
    return "imperceptible", f"no significant preference ({reason}); Neither is {neither:.0%} of labels ({how})"


def cell_statistics(data: EncodedLabels, settings: AnalysisSettings, n_examples: np.ndarray | None = None,
                    higher_is_better: dict[str, bool] | None = None) -> list[dict]:
    """One dict per cell (report order) with every per-cell statistic of the report.

    n_examples: (C,) examples per cell in the study (default: examples with labels).
    higher_is_better: metric name -> whether a higher score is better (orients the metric gain;
    default True, said in the notes).
    """
    C = data.n_cells
    ex_cell, counts = data.example_cell, data.counts
    cell_counts = np.stack([np.bincount(ex_cell, weights=counts[:, k], minlength=C) for k in range(3)], 1)
    cell_counts = cell_counts.astype(np.int64)
    labelled_examples = np.bincount(ex_cell, weights=counts.sum(1) > 0, minlength=C).astype(np.int64)
    if n_examples is None:
        n_examples = labelled_examples
    A = len(data.annotators)
    n_annotators = (np.bincount(data.label_cell * A + data.label_annotator, minlength=C * A).reshape(C, A) > 0
                    ).sum(1) if A else np.zeros(C, dtype=np.int64)

    fin, orig = counts[:, FINETUNED], counts[:, ORIGINAL]
    decisive = fin + orig
    n_fin_cell, n_dec_cell = cell_counts[:, FINETUNED], cell_counts[:, FINETUNED] + cell_counts[:, ORIGINAL]
    dec_low, dec_high = wilson_interval(n_fin_cell, n_dec_cell, settings.confidence)
    boot_low, boot_high = cluster_bootstrap_share(fin, decisive, ex_cell, C, settings.bootstrap_resamples,
                                                  settings.confidence, settings.seed)
    # Sign test: an example counts for the side more of its decisive labels chose.
    more_fin = np.bincount(ex_cell, weights=fin > orig, minlength=C).astype(np.int64)
    more_orig = np.bincount(ex_cell, weights=orig > fin, minlength=C).astype(np.int64)
    votes = majority_votes(counts)
    majority = np.stack([np.bincount(ex_cell[votes == v], minlength=C) for v in range(4)], 1)

    order = np.argsort(ex_cell, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ex_cell, minlength=C))])
    has_scores = np.isfinite(data.original_score) & np.isfinite(data.finetuned_score)
    p_binom = np.array([binomial_p(n_fin_cell[c], n_dec_cell[c]) for c in range(C)])
    p_sign = np.array([binomial_p(more_fin[c], more_fin[c] + more_orig[c]) for c in range(C)])
    p_binom_holm, p_sign_holm = holm(p_binom), holm(p_sign)

    rows = []
    for c in range(C):
        cell = data.cells.iloc[c].to_dict()
        n_labels = int(cell_counts[c].sum())
        notes: list[str] = []
        examples = order[bounds[c]:bounds[c + 1]]
        shares, intervals = _shares(cell_counts[c], settings.confidence)
        decisive_share = _finite(n_fin_cell[c] / n_dec_cell[c]) if n_dec_cell[c] else None
        if n_labels == 0:
            notes.append("no labels in this cell: every statistic is undefined")
        elif n_dec_cell[c] == 0:
            notes.append("no decisive label (every label is 'neither'): the decisive share and both tests are "
                         "undefined")
        stats = agreement(counts[examples]) if n_labels else {
            "fleiss_kappa": None, "fleiss_n_examples": 0, "krippendorff_alpha": None, "notes": []}
        notes += stats["notes"]
        if n_dec_cell[c] and not math.isfinite(boot_low[c]):
            notes.append("cluster bootstrap interval undefined (analysis.settings.bootstrap_resamples is 0)")

        regression = None
        scored = examples[has_scores[examples]]
        if len(scored):
            metric = cell["metric"]
            hib = (higher_is_better or {}).get(metric)
            if hib is None:
                notes.append(f"metric {metric!r} has no conf/metric entry: its gain is taken as finetuned - "
                             f"original score (higher is better)")
                hib = True
            gain = data.finetuned_score[scored] - data.original_score[scored]
            regression = gain_regression(gain if hib else -gain, fin[scored], orig[scored])
            regression["higher_is_better"] = bool(hib)
            regression["mean_gain"] = _finite(np.mean(gain if hib else -gain))
            notes += regression.pop("notes")

        p_used = p_binom_holm[c] if settings.verdict_test == "binomial" else p_sign_holm[c]
        verdict, detail = _verdict(_finite(p_used), decisive_share, shares["neither"], n_labels, settings)
        other = p_sign_holm[c] if settings.verdict_test == "binomial" else p_binom_holm[c]
        if verdict in ("aligned", "misaligned") and not (math.isfinite(other) and other < settings.alpha):
            other_name = "per-example sign test" if settings.verdict_test == "binomial" else "label-level binomial test"
            shown = f"{other:.2g}" if math.isfinite(other) else "undefined"
            notes.append(f"the {other_name} does not confirm the verdict (Holm p={shown})")
        rows.append({
            **cell,
            "n_examples": int(n_examples[c]),
            "n_examples_labelled": int(labelled_examples[c]),
            "n_annotators": int(n_annotators[c]),
            "n_labels": n_labels,
            "counts": {ch: int(cell_counts[c, i]) for i, ch in enumerate(CHOICES)},
            "shares": shares,
            "share_intervals": intervals,
            "n_decisive": int(n_dec_cell[c]),
            "decisive_finetuned_share": decisive_share,
            "decisive_interval": [_finite(dec_low[c]), _finite(dec_high[c])] if n_dec_cell[c] else None,
            "decisive_bootstrap_interval": ([_finite(boot_low[c]), _finite(boot_high[c])]
                                            if math.isfinite(boot_low[c]) else None),
            "p_value": _finite(p_binom[c]),
            "p_value_holm": _finite(p_binom_holm[c]),
            "sign_test": {"examples_finetuned": int(more_fin[c]), "examples_original": int(more_orig[c]),
                          "examples_even": int(labelled_examples[c] - more_fin[c] - more_orig[c]),
                          "p_value": _finite(p_sign[c]), "p_value_holm": _finite(p_sign_holm[c])},
            "fleiss_kappa": stats["fleiss_kappa"],
            "fleiss_n_examples": stats["fleiss_n_examples"],
            "krippendorff_alpha": stats["krippendorff_alpha"],
            "majority": {"original": int(majority[c, ORIGINAL]), "neither": int(majority[c, NEITHER]),
                         "finetuned": int(majority[c, FINETUNED]), "tie": int(majority[c, 3])},
            "gain_regression": regression,
            "verdict": verdict,
            "verdict_detail": detail,
            "notes": notes,
        })
    if has_scores.any():
        reg_p = np.array([(r["gain_regression"] or {}).get("p_value") or np.nan for r in rows], dtype=float)
        for row, p in zip(rows, holm(reg_p)):
            if row["gain_regression"] is not None:
                row["gain_regression"]["p_value_holm"] = _finite(p)
    return rows


def rollups(cells: list[dict], by: tuple[str, ...] = ("metric", "attribution", "backbone"),
            confidence: float = 0.95) -> dict[str, list[dict]]:
    """Cells pooled per metric, per attribution, per backbone.

    Per group: cells, examples, labels, counts, shares, the decisive fine-tuned share with its
    Wilson interval, the label-level binomial test (Holm over the group's values) and the tally
    of the cells' verdicts.
    """
    out = {}
    frame = pd.DataFrame([{f: c[f] for f in CELL_FIELDS} | {"n_examples": c["n_examples"], "n_labels": c["n_labels"],
                                                            "verdict": c["verdict"], **c["counts"]}
                          for c in cells])
    for field in by:
        if frame.empty:
            out[field] = []
            continue
        grouped = frame.groupby(field, sort=True)
        sums = grouped[["n_examples", "n_labels", *CHOICES]].sum()
        tally = grouped["verdict"].value_counts().unstack(fill_value=0)
        fin, dec = sums["finetuned"].to_numpy(), (sums["finetuned"] + sums["original"]).to_numpy()
        low, high = wilson_interval(fin, dec, confidence)
        p = np.array([binomial_p(f, d) for f, d in zip(fin, dec)])
        p_holm = holm(p)
        rows = []
        for i, (name, row) in enumerate(sums.iterrows()):
            counts = row[list(CHOICES)].to_numpy()
            shares, _ = _shares(counts, confidence)
            rows.append({
                field: name, "n_cells": int(grouped.size()[name]), "n_examples": int(row["n_examples"]),
                "n_labels": int(row["n_labels"]), "counts": {c: int(row[c]) for c in CHOICES}, "shares": shares,
                "decisive_finetuned_share": _finite(fin[i] / dec[i]) if dec[i] else None,
                "decisive_interval": [_finite(low[i]), _finite(high[i])] if dec[i] else None,
                "p_value": _finite(p[i]), "p_value_holm": _finite(p_holm[i]),
                "verdicts": {v: int(tally.loc[name].get(v, 0)) for v in VERDICTS},
            })
        out[field] = rows
    return out


def _side_bias(n: np.ndarray, left: np.ndarray, confidence: float) -> list[dict]:
    """Per group: decisive labels with a recorded side, how many chose the left map, share, Wilson, p."""
    low, high = wilson_interval(left, n, confidence)
    return [{"n_decisive_with_side": int(n[g]), "chose_left": int(left[g]),
             "left_share": _finite(left[g] / n[g]) if n[g] else None,
             "left_interval": [_finite(low[g]), _finite(high[g])] if n[g] else None,
             "p_value": _finite(binomial_p(left[g], n[g]))} for g in range(len(n))]


def annotator_statistics(data: EncodedLabels, confidence: float = 0.95) -> list[dict]:
    """Per annotator: labels, shares, decisive fine-tuned share, agreement with the others' majority,
    and left/right position bias.

    Agreement with the majority is leave-one-out: each label is compared with the majority of
    the other annotators' labels on its example, where they have a strict majority.
    """
    A = len(data.annotators)
    ann, choice = data.label_annotator, data.label_choice.astype(np.int64)
    per = np.bincount(ann * 3 + choice, minlength=A * 3).reshape(A, 3)
    # The others' majority depends only on the example and the label's own choice: tabulate it per
    # example for each choice, then look every label up (no (labels, 3) temporaries).
    strict_by = np.zeros(data.counts.shape, dtype=bool)
    agree_by = np.zeros(data.counts.shape, dtype=bool)
    for own in range(3):
        others = data.counts.copy()
        others[:, own] -= 1
        top = others.max(1)
        strict_by[:, own] = (top > 0) & ((others == top[:, None]).sum(1) == 1)
        agree_by[:, own] = strict_by[:, own] & (others.argmax(1) == own)
    flat = data.label_example * 3 + choice
    strict, agree = strict_by.ravel()[flat], agree_by.ravel()[flat]
    n_compared = np.bincount(ann[strict], minlength=A)
    n_agree = np.bincount(ann[agree], minlength=A)
    n_cells = (np.bincount(ann * data.n_cells + data.label_cell, minlength=A * data.n_cells)
               .reshape(A, data.n_cells) > 0).sum(1)
    sided = (choice != NEITHER) & (data.left_map >= 0)
    bias = _side_bias(np.bincount(ann[sided], minlength=A),
                      np.bincount(ann[sided & (choice == data.left_map)], minlength=A), confidence)

    rows = []
    for a in range(A):
        total = int(per[a].sum())
        dec = int(per[a, FINETUNED] + per[a, ORIGINAL])
        rows.append({
            "annotator": str(data.annotators[a]), "simulated": bool(data.annotator_simulated[a]),
            "n_labels": total, "n_cells": int(n_cells[a]),
            "counts": {c: int(per[a, i]) for i, c in enumerate(CHOICES)},
            "shares": {c: _finite(per[a, i] / total) if total else None for i, c in enumerate(CHOICES)},
            "decisive_finetuned_share": _finite(per[a, FINETUNED] / dec) if dec else None,
            "agreement_with_majority": _finite(n_agree[a] / n_compared[a]) if n_compared[a] else None,
            "n_compared_with_majority": int(n_compared[a]),
            "position": bias[a],
        })
    return rows


def position_bias(data: EncodedLabels, confidence: float = 0.95) -> dict:
    """Across all labels: among decisive labels whose left map was recorded, the share choosing the left map
    (two-sided binomial test against 0.5), and the decisive fine-tuned share by the fine-tuned map's side."""
    choice = data.label_choice
    sided = (choice != NEITHER) & (data.left_map >= 0)
    overall = _side_bias(np.array([sided.sum()]), np.array([(sided & (choice == data.left_map)).sum()]),
                         confidence)[0]
    if overall["n_decisive_with_side"] == 0:
        overall["notes"] = ["no side recorded on any decisive label: position bias cannot be measured"]
        overall["finetuned_share_by_side"] = None
        return overall
    fin_left = data.left_map == FINETUNED
    by_side = {}
    for name, where in (("finetuned_left", sided & fin_left), ("finetuned_right", sided & ~fin_left)):
        n = int(where.sum())
        share = _finite((choice[where] == FINETUNED).mean()) if n else None
        by_side[name] = {"n": n, "decisive_finetuned_share": share}
    overall["finetuned_share_by_side"] = by_side
    overall["notes"] = []
    return overall


def analyze_labels(labels: pd.DataFrame, settings: AnalysisSettings | None = None, cells: pd.DataFrame | None = None,
                   higher_is_better: dict[str, bool] | None = None) -> dict:
    """The whole analysis of a labels frame, as JSON-ready data (no NaN: undefined values are None).

    labels: columns of ``Store.labels_frame`` (at least example_id, the cell fields, annotator, choice).
    cells: optional frame of the study's cells (CELL_FIELDS + ``examples``): cells without labels
    are reported too, and ``n_examples`` counts the study's examples, not only the labelled ones.
    Returns {settings, n_labels, n_examples, n_annotators, cells, annotators, rollups, position_bias}.
    """
    settings = settings or AnalysisSettings()
    data = encode_labels(labels, cells)
    n_examples = None
    if cells is not None and len(cells) and "examples" in cells.columns:
        keyed = cells.assign(**{f: cells[f].astype(str) for f in CELL_FIELDS}).set_index(list(CELL_FIELDS))
        study_counts = keyed["examples"].reindex(pd.MultiIndex.from_frame(data.cells)).to_numpy()
        labelled = np.bincount(data.example_cell, weights=data.counts.sum(1) > 0, minlength=data.n_cells)
        n_examples = np.where(np.isfinite(study_counts.astype(float)), study_counts, labelled).astype(np.int64)
    cell_rows = cell_statistics(data, settings, n_examples=n_examples, higher_is_better=higher_is_better)
    return {
        "settings": settings.to_dict(),
        "n_labels": int(len(labels)),
        "n_examples": int(sum(r["n_examples"] for r in cell_rows)),
        "n_annotators": int(len(data.annotators)),
        "cells": cell_rows,
        "annotators": annotator_statistics(data, settings.confidence),
        "rollups": rollups(cell_rows, confidence=settings.confidence),
        "position_bias": position_bias(data, settings.confidence),
    }


def select_label_source(labels: pd.DataFrame, simulated: bool | None = None, study: str = "the study"
                        ) -> tuple[pd.DataFrame, str]:
    """Real or simulated labels, never both: (labels, "real" | "simulated").

    simulated=None: the real labels when there are any, else the simulated ones.
    Raises UserError when the asked-for kind has no labels.
    """
    flags = labels["simulated"].fillna(False).astype(bool) if "simulated" in labels.columns else \
        pd.Series(False, index=labels.index)
    n_sim = int(flags.sum())
    n_real = len(labels) - n_sim
    if simulated is None:
        simulated = n_real == 0
    if simulated and n_sim == 0:
        raise UserError(f"{study} has no simulated labels ({n_real} real): drop --simulated to analyze the real ones")
    if not simulated and n_real == 0:
        raise UserError(f"{study} has no real labels ({n_sim} simulated): use --simulated to analyze those")
    chosen = labels[flags] if simulated else labels[~flags]
    return chosen.reset_index(drop=True), ("simulated" if simulated else "real")
