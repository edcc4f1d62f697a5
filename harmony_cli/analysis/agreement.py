"""Agreement between annotators: Fleiss' kappa, Krippendorff's alpha, majority votes."""
from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
from statsmodels.stats.inter_rater import fleiss_kappa

from ..cells import REPORT_ORDER


def agreement(table: np.ndarray) -> dict:
    """Fleiss' kappa and Krippendorff's alpha (nominal) of an (examples, 3) count table.

    Examples with fewer than two labels carry no agreement information and are left out.
    Fleiss' kappa needs the same number of labels per example: when they differ it is
    computed over the examples with the most common number of labels (said in ``notes``);
    Krippendorff's alpha uses them all. Undefined statistics are None with a note.
    Returns {fleiss_kappa, fleiss_n_examples, krippendorff_alpha, notes}.
    """
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
        out["notes"].append(f"agreement undefined: {scope} is {REPORT_ORDER[used[0]]!r} (no variation to agree "
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
    """Majority choice per example of an (E, 3) count table: 0/1/2 (REPORT_ORDER), 3 for a tie, -1 unlabelled."""
    top = counts.max(1)
    at_top = (counts == top[:, None]).sum(1)
    vote = counts.argmax(1)
    vote = np.where(at_top > 1, 3, vote)
    return np.where(top > 0, vote, -1)

