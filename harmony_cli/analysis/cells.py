"""Per-cell statistics of a study: computed for all cells at once (arrays), then one row per cell."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..cells import REPORT_ORDER
from .agreement import agreement, majority_votes
from .annotator_cells import annotator_figures, cell_annotator_rows, leave_one_out
from .bootstrap import cluster_bootstrap_share
from .clustered import ClusteredShares, clustered_shares, crossed_shares
from .encoding import FINETUNED, NEITHER, ORIGINAL, EncodedLabels
from .regression import gain_bins, gain_regression
from .settings import AnalysisSettings
from .significance import binomial_p_many, holm, wilson_interval
from .values import finite, pair, shares_with_intervals
from .verdict import faint_directions, verdict_detail, verdicts

# Whom each inference generalizes to, and how its tests are made (the report's "inferences").
INFERENCES = ("people", "these_annotators")
DIRECTION_METHOD = {
    "people": "t test of the net preference with crossed (examples and annotators sampled) method-of-moments "
              "variance and Satterthwaite df, Holm over the cells",
    "these_annotators": "t test of the net preference with example-clustered (sandwich) standard errors on "
                        "examples - 1 df, Holm over the cells"}
LABEL_LEVEL_NOTE = "secondary: treats every label as independent (ignores that an example's labels are correlated)"


def holm_where(p: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Holm over the entries with ``keep`` (NaN p never counts); NaN elsewhere."""
    return holm(np.where(keep, p, np.nan))


def annotator_table(data: EncodedLabels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 3) labels per (cell, annotator) with labels, (K,) their cells and (K,) their annotators (sorted by cell)."""
    C, A = data.n_cells, max(len(data.annotators), 1)
    key = data.label_cell * A + data.label_annotator
    table = np.bincount(key * 3 + data.label_choice, minlength=C * A * 3).reshape(C * A, 3)
    used = table.sum(1) > 0
    return table[used], (np.arange(C * A) // A)[used], (np.arange(C * A) % A)[used]


def inference(fig: ClusteredShares, settings: AnalysisSettings) -> SimpleNamespace:
    """One inference's figures, Holm p-values (over the cells with enough examples) and verdicts."""
    tested = fig.n_examples >= max(settings.min_examples, 2)
    out = SimpleNamespace(fig=fig, p_direction_holm=holm_where(fig.p_direction, tested),
                          p_equivalence_holm=holm_where(fig.p_equivalence, tested))
    out.verdicts = verdicts(fig.decisive_low, fig.decisive_high, fig.delta, out.p_direction_holm,
                            out.p_equivalence_holm, fig.n_examples, settings)
    out.faint = faint_directions(out.verdicts, fig.delta, out.p_direction_holm, settings)
    return out


def cell_arrays(data: EncodedLabels, settings: AnalysisSettings) -> SimpleNamespace:
    """Every per-cell figure as (C,) arrays, vectorized over examples."""
    C, ex_cell, counts = data.n_cells, data.example_cell, data.counts
    fin, orig = counts[:, FINETUNED], counts[:, ORIGINAL]
    a = SimpleNamespace(counts=np.stack([np.bincount(ex_cell, weights=counts[:, k], minlength=C)
                                         for k in range(3)], 1).astype(np.int64))
    a.annotator_counts, a.annotator_cell, a.annotator_id = annotator_table(data)
    conf, margin = settings.confidence, settings.equivalence_margin
    a.inferences = {
        "people": inference(crossed_shares(counts, ex_cell, a.annotator_counts, a.annotator_cell, C, conf, margin),
                            settings),
        "these_annotators": inference(clustered_shares(counts, ex_cell, C, conf, margin), settings)}
    chosen = a.inferences[settings.generalize]
    a.fig, a.verdicts = chosen.fig, chosen.verdicts
    a.n_fin, a.n_dec = a.counts[:, FINETUNED], a.counts[:, FINETUNED] + a.counts[:, ORIGINAL]
    a.wilson = wilson_interval(a.n_fin, a.n_dec, settings.confidence)
    a.p_binom = binomial_p_many(a.n_fin, a.n_dec)
    a.p_binom_holm = holm(a.p_binom)
    a.more_fin = np.bincount(ex_cell, weights=fin > orig, minlength=C).astype(np.int64)
    a.more_orig = np.bincount(ex_cell, weights=orig > fin, minlength=C).astype(np.int64)
    a.p_sign = binomial_p_many(a.more_fin, a.more_fin + a.more_orig)
    a.p_sign_holm = holm(a.p_sign)
    enough = a.n_dec >= max(settings.min_decisive_bootstrap, 1)
    boot = cluster_bootstrap_share(fin, fin + orig, np.where(enough[ex_cell], ex_cell, C), C + 1,
                                   settings.bootstrap_resamples, settings.confidence, settings.seed)
    a.boot = (boot[0][:C], boot[1][:C])
    votes = majority_votes(counts)
    a.majority = np.stack([np.bincount(ex_cell[votes == v], minlength=C) for v in range(4)], 1)
    a.n_annotators = np.bincount(a.annotator_cell, minlength=C).astype(np.int64)
    a.annotator_figures = annotator_figures(a.annotator_counts, settings.confidence)
    a.annotator_bounds = np.concatenate([[0], np.cumsum(a.n_annotators)])
    a.left_out = leave_one_out(data, a.annotator_counts, a.annotator_cell, a.annotator_id, settings, inference)
    order = np.argsort(ex_cell, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(ex_cell, minlength=C))])
    a.members = [order[bounds[c]:bounds[c + 1]] for c in range(C)]
    return a


def inference_row(inf: SimpleNamespace, name: str, c: int, settings: AnalysisSettings) -> dict:
    """The verdict's figures of cell ``c`` under one inference."""
    f = inf.fig
    return {
        "decisive_rate": finite(f.decisive_rate[c]),
        "decisive_rate_interval": pair(f.decisive_low[c], f.decisive_high[c]),
        "design_effect": finite(f.design_effect[c]), "decisive_rate_df": finite(f.decisive_df[c]),
        "df": finite(f.df[c]), "preference_df": finite(f.preference_df[c]),
        "net_preference": finite(f.delta[c]), "net_preference_se": finite(f.delta_se[c]),
        "net_preference_interval": pair(f.delta_low[c], f.delta_high[c]),
        "preference": finite(f.preference[c]), "preference_se": finite(f.preference_se[c]),
        "preference_interval": pair(f.preference_low[c], f.preference_high[c]),
        "direction_test": {"method": DIRECTION_METHOD[name], "p_value": finite(f.p_direction[c]),
                           "p_value_holm": finite(inf.p_direction_holm[c])},
        "equivalence_test": {"method": f"two one-sided t tests of |fine-tuned share of decisive labels - 0.5| < "
                                       f"{settings.equivalence_margin} (same variance and df), Holm over the cells",
                             "margin": settings.equivalence_margin, "p_value": finite(f.p_equivalence[c]),
                             "p_value_holm": finite(inf.p_equivalence_holm[c])},
    }


def clustered_row(a: SimpleNamespace, c: int, settings: AnalysisSettings, context: dict) -> dict:
    """The chosen inference's figures and verdict at the top level; both inferences under ``inferences``.

    context: the row's n_examples_labelled, n_annotators and neither_dominant (for the verdict details)."""
    rows = {}
    for name, inf in a.inferences.items():
        row = {**inference_row(inf, name, c, settings), "verdict": str(inf.verdicts[c]),
               "faint_direction": inf.faint[c]}
        row["verdict_detail"] = verdict_detail(row["verdict"], {**row, **context}, settings, name)
        rows[name] = row
    return {**rows[settings.generalize], "verdicts": {name: row["verdict"] for name, row in rows.items()},
            "inferences": rows}


def secondary_rows(a: SimpleNamespace, c: int, n_labelled: int) -> dict:
    """Label-level and per-example-majority figures (kept for comparison, not used by the verdict)."""
    return {
        "n_decisive": int(a.n_dec[c]),
        "decisive_finetuned_share": finite(a.n_fin[c] / a.n_dec[c]) if a.n_dec[c] else None,
        "decisive_bootstrap_interval": pair(*(b[c] for b in a.boot)),
        "secondary_label_level_binomial": {
            "note": LABEL_LEVEL_NOTE, "decisive_wilson_interval": pair(a.wilson[0][c], a.wilson[1][c]),
            "p_value": finite(a.p_binom[c]), "p_value_holm": finite(a.p_binom_holm[c])},
        "sign_test": {"examples_finetuned": int(a.more_fin[c]), "examples_original": int(a.more_orig[c]),
                      "examples_even": int(n_labelled - a.more_fin[c] - a.more_orig[c]),
                      "p_value": finite(a.p_sign[c]), "p_value_holm": finite(a.p_sign_holm[c])},
        "majority": {"original": int(a.majority[c, ORIGINAL]), "neither": int(a.majority[c, NEITHER]),
                     "finetuned": int(a.majority[c, FINETUNED]), "tie": int(a.majority[c, 3])},
    }


def cell_notes(row: dict, settings: AnalysisSettings) -> list[str]:
    """What a reader must know about a cell's figures."""
    notes = []
    if row["n_labels"] == 0:
        notes.append("no labels in this cell: every statistic is undefined")
    elif row["n_decisive"] == 0:
        notes.append("no decisive label (every label is 'neither'): the net preference and its tests are undefined")
    elif row["n_examples_labelled"] < max(settings.min_examples, 2):
        notes.append(f"{row['n_examples_labelled']} labelled examples (< min_examples {settings.min_examples}): "
                     f"no direction or equivalence verdict; the cell is left out of their Holm families")
    if 0 < row["n_decisive"] < settings.min_decisive_bootstrap:
        notes.append(f"no bootstrap interval: {row['n_decisive']} decisive labels, fewer than "
                     f"min_decisive_bootstrap {settings.min_decisive_bootstrap}")
    elif row["n_decisive"] and row["decisive_bootstrap_interval"] is None:
        notes.append("no bootstrap interval (analysis.settings.bootstrap_resamples is 0)")
    return notes


def gain_row(data: EncodedLabels, examples: np.ndarray, metric: str, higher_is_better: dict | None) -> dict | None:
    """The metric-gain regression of one cell's examples with both scores; None without scores."""
    scored = examples[np.isfinite(data.original_score[examples]) & np.isfinite(data.finetuned_score[examples])]
    if not len(scored):
        return None
    hib = (higher_is_better or {}).get(metric)
    gain = data.finetuned_score[scored] - data.original_score[scored]
    sign = -1.0 if hib is False else 1.0
    counts = data.counts[scored]
    regression = gain_regression(sign * gain, counts[:, FINETUNED], counts[:, ORIGINAL])
    regression["bins"] = gain_bins(sign * gain, counts[:, FINETUNED], counts[:, ORIGINAL])
    regression["higher_is_better"] = hib is not False
    regression["mean_gain"] = finite(np.mean(sign * gain))
    if hib is None:
        regression["notes"].append(f"the study records no direction for metric {metric!r} "
                                   f"(study.config['higher_is_better']): taken as higher is better")
    return regression


def cell_statistics(data: EncodedLabels, settings: AnalysisSettings, n_examples: np.ndarray | None = None,
                    higher_is_better: dict[str, bool] | None = None) -> list[dict]:
    """One dict per cell (report order) with every per-cell statistic of the report.

    n_examples: (C,) examples per cell in the study (default: examples with labels).
    higher_is_better: metric -> bool, from the study (``study.config["higher_is_better"]``); orients
    the metric gain (a missing metric is taken as higher-is-better, said in its notes).
    """
    a = cell_arrays(data, settings)
    labelled = a.fig.n_examples.astype(np.int64)
    n_examples = labelled if n_examples is None else n_examples
    rows = []
    for c in range(data.n_cells):
        cell = data.cells.iloc[c].to_dict()
        shares, intervals = shares_with_intervals(a.counts[c], settings.confidence)
        dominant = bool((shares["neither"] or 0) > settings.neither_dominant)
        row = {**cell, "n_examples": int(n_examples[c]), "n_examples_labelled": int(labelled[c]),
               "n_annotators": int(a.n_annotators[c]), "n_labels": int(a.counts[c].sum()),
               "counts": {ch: int(a.counts[c, i]) for i, ch in enumerate(REPORT_ORDER)}, "shares": shares,
               "share_intervals": intervals, "neither_dominant": dominant,
               **clustered_row(a, c, settings, {"n_examples_labelled": int(labelled[c]), "neither_dominant": dominant,
                                                "n_annotators": int(a.n_annotators[c])}),
               **secondary_rows(a, c, int(labelled[c]))}
        row["annotators"] = cell_annotator_rows(data, a.annotator_figures,
                                                np.arange(a.annotator_bounds[c], a.annotator_bounds[c + 1]),
                                                a.annotator_id, a.left_out, c)
        row["verdict_changed_without"] = None if a.left_out is None else [
            r["annotator"] for r in row["annotators"] if r["verdicts_without"][settings.generalize] != row["verdict"]]
        stats = agreement(data.counts[a.members[c]])
        row.update(fleiss_kappa=stats["fleiss_kappa"], fleiss_n_examples=stats["fleiss_n_examples"],
                   krippendorff_alpha=stats["krippendorff_alpha"])
        row["gain_regression"] = gain_row(data, a.members[c], cell["metric"], higher_is_better)
        row["notes"] = cell_notes(row, settings) + stats["notes"] + (row["gain_regression"] or {}).pop("notes", [])
        rows.append(row)
    # A p-value of exactly 0 is a result, not a missing value: only None becomes NaN (out of the family).
    reg_p = np.array([np.nan if (r["gain_regression"] or {}).get("p_value") is None
                      else r["gain_regression"]["p_value"] for r in rows], dtype=float)
    for row, p in zip(rows, holm(reg_p)):
        if row["gain_regression"] is not None:
            row["gain_regression"]["p_value_holm"] = finite(p)
    return rows
