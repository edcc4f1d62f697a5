"""The pre-registered verdict rule, vectorized over cells (the analysis and ``harmony power`` share it).

In this order, per cell:

1. ``imperceptible``: the upper bound of the decisive rate d lies below the perceptibility margin.
2. with fewer labelled examples than ``min_examples``: ``inconclusive``.
3. ``aligned`` / ``misaligned``: perceptible (the lower bound of d reaches the margin) and the
   example-clustered direction test of the net preference is significant after Holm; by its sign.
4. ``no_preference``: perceptible and the net preference is within +-equivalence margin by two
   one-sided clustered tests (Holm-corrected likewise): people see differences, but not the same way.
5. ``inconclusive``: anything else (not enough evidence either way).

``neither_dominant`` (Neither above the ``neither_dominant`` share of labels) travels with every verdict.
"""
from __future__ import annotations

import numpy as np

from .settings import AnalysisSettings

VERDICTS = ("aligned", "misaligned", "no_preference", "imperceptible", "inconclusive")


def verdicts(decisive_low: np.ndarray, decisive_high: np.ndarray, delta: np.ndarray, p_direction_holm: np.ndarray,
             p_equivalence_holm: np.ndarray, n_examples: np.ndarray, settings: AnalysisSettings) -> np.ndarray:
    """(C,) verdict names from the clustered figures (NaN p: that test is undefined and never passes)."""
    margin = settings.perceptibility_margin
    with np.errstate(invalid="ignore"):
        imperceptible = decisive_high < margin
        enough = n_examples >= max(settings.min_examples, 2)
        perceptible = (decisive_low >= margin) & enough & ~imperceptible
        directional = perceptible & (p_direction_holm < settings.alpha) & (delta != 0)
        equivalent = perceptible & ~directional & (p_equivalence_holm < settings.alpha)
    out = np.full(len(delta), "inconclusive", dtype=object)
    out[equivalent] = "no_preference"
    out[directional & (delta > 0)] = "aligned"
    out[directional & (delta < 0)] = "misaligned"
    out[imperceptible] = "imperceptible"
    return out


def _shown(value) -> str:
    return "undefined" if value is None else f"{value:.2g}"


def _pct(value) -> str:
    return "undefined" if value is None else f"{value:+.0%}"


def verdict_detail(verdict: str, cell: dict, settings: AnalysisSettings) -> str:
    """One line saying why ``cell`` (a report row) got ``verdict``."""
    d, delta = cell["decisive_rate"], cell["net_preference"]
    d_int, p, p_eq = cell["decisive_rate_interval"], cell["direction_test"], cell["equivalence_test"]
    rate = "no labels" if d is None else f"d = {d:.0%} [{d_int[0]:.0%}, {d_int[1]:.0%}]"
    margin = settings.perceptibility_margin
    if verdict == "imperceptible":
        why = f"{rate}: its upper bound is below the perceptibility margin {margin:.0%}"
    elif d is None or cell["n_examples_labelled"] < max(settings.min_examples, 2):
        why = f"{rate}; {cell['n_examples_labelled']} labelled examples, fewer than min_examples " \
              f"{settings.min_examples}"
    elif verdict in ("aligned", "misaligned"):
        side = "fine-tuned" if verdict == "aligned" else "original"
        why = (f"{rate}; people prefer the {side} maps: net preference {delta:+.0%}, clustered Holm p = "
               f"{p['p_value_holm']:.2g} < {settings.alpha}")
    elif verdict == "no_preference":
        why = (f"{rate}; net preference {delta:+.0%} is within +-{settings.equivalence_margin:.0%} (TOST Holm "
               f"p = {p_eq['p_value_holm']:.2g} < {settings.alpha})")
    else:
        perceptible = "" if d_int[0] is not None and d_int[0] >= margin else \
            f" (not shown perceptible: lower bound below {margin:.0%})"
        why = (f"{rate}{perceptible}; net preference {_pct(delta)}: direction Holm p = "
               f"{_shown(p['p_value_holm'])}, equivalence Holm p = {_shown(p_eq['p_value_holm'])}")
    flag = " Neither dominant." if cell["neither_dominant"] else ""
    return why + "." + flag
