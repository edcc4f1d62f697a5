"""The pre-registered verdict rule, vectorized over cells (the analysis and ``harmony power`` share it).

In this order, per cell:

1. ``imperceptible``: the upper bound of the decisive rate d lies below the perceptibility margin.
2. with fewer labelled examples than ``min_examples``: ``inconclusive``.
3. ``aligned`` / ``misaligned``: perceptible (the lower bound of d reaches the margin) and the
   example-clustered direction test of the net preference is significant after Holm; by its sign.
4. ``no_preference``: perceptible and the fine-tuned share of the decisive labels pi is within
   0.5 +-equivalence margin by two one-sided clustered tests (Holm-corrected likewise): people see
   differences, but split them evenly.
5. ``inconclusive``: anything else (not enough evidence either way).

``neither_dominant`` (Neither above the ``neither_dominant`` share of labels) travels with every verdict,
and so does ``faint_direction``: an ``imperceptible`` cell whose direction test is significant keeps its
verdict and names the side of that faint preference (a significant direction is never hidden).
The rule runs on either inference (``clustered.py``): for people or for these annotators.
"""
from __future__ import annotations

import numpy as np

from .settings import AnalysisSettings

VERDICTS = ("aligned", "misaligned", "no_preference", "imperceptible", "inconclusive")


def verdicts(decisive_low: np.ndarray, decisive_high: np.ndarray, delta: np.ndarray, p_direction_holm: np.ndarray,
             p_equivalence_holm: np.ndarray, n_examples: np.ndarray, settings: AnalysisSettings,
             direction_level=None, equivalence_level=None) -> np.ndarray:
    """(C,) verdict names from the clustered figures (NaN p: that test is undefined and never passes).

    direction_level, equivalence_level: the level each p is compared with, (C,) or a number (default
    ``settings.alpha``; the sequential rule passes each look's nominal levels).
    """
    margin = settings.perceptibility_margin
    direction_level = settings.alpha if direction_level is None else direction_level
    equivalence_level = settings.alpha if equivalence_level is None else equivalence_level
    with np.errstate(invalid="ignore"):
        imperceptible = decisive_high < margin
        enough = n_examples >= max(settings.min_examples, 2)
        perceptible = (decisive_low >= margin) & enough & ~imperceptible
        directional = perceptible & (p_direction_holm < direction_level) & (delta != 0)
        equivalent = perceptible & ~directional & (p_equivalence_holm < equivalence_level)
    out = np.full(len(delta), "inconclusive", dtype=object)
    out[equivalent] = "no_preference"
    out[directional & (delta > 0)] = "aligned"
    out[directional & (delta < 0)] = "misaligned"
    out[imperceptible] = "imperceptible"
    return out


def faint_directions(verdict: np.ndarray, delta: np.ndarray, p_direction_holm: np.ndarray,
                     settings: AnalysisSettings) -> list:
    """(C,) "finetuned" / "original" where an imperceptible cell's direction test is significant, else None."""
    with np.errstate(invalid="ignore"):
        faint = (verdict == "imperceptible") & (p_direction_holm < settings.alpha) & (delta != 0)
    return [("finetuned" if delta[c] > 0 else "original") if faint[c] else None for c in range(len(verdict))]


def inference_label(name: str, n_annotators: int) -> str:
    """How a report names an inference: "for people" or "for these N annotators"."""
    return "for people" if name == "people" else f"for these {n_annotators} annotators"


def verdict_tally(report: dict) -> dict[str, dict[str, int]]:
    """inference label -> verdict -> number of cells, the chosen inference first."""
    chosen = report["settings"]["generalize"]
    names = [chosen] + [n for n in ("people", "these_annotators") if n != chosen]
    return {inference_label(n, report["n_annotators"]): {v: sum(c["verdicts"][n] == v for c in report["cells"])
                                                         for v in VERDICTS} for n in names}


def _shown(value) -> str:
    return "undefined" if value is None else f"{value:.2g}"


def _pct(value) -> str:
    return "undefined" if value is None else f"{value:+.0%}"


def verdict_detail(verdict: str, cell: dict, settings: AnalysisSettings, generalize: str | None = None) -> str:
    """One line saying why ``cell`` (a report row or one of its inferences) got ``verdict``."""
    d, delta, pi = cell["decisive_rate"], cell["net_preference"], cell.get("preference")
    d_int, p, p_eq = cell["decisive_rate_interval"], cell["direction_test"], cell["equivalence_test"]
    rate = "no labels" if d is None else f"d = {d:.0%}" + (f" [{d_int[0]:.0%}, {d_int[1]:.0%}]" if d_int else "")
    margin = settings.perceptibility_margin
    people = (generalize or settings.generalize) == "people"
    if verdict == "imperceptible":
        why = f"{rate}: its upper bound is below the perceptibility margin {margin:.0%}"
        if cell.get("faint_direction"):
            why += (f"; a faint preference for the {cell['faint_direction']} maps (net {delta:+.0%}, Holm p = "
                    f"{p['p_value_holm']:.2g} < {settings.alpha})")
    elif people and cell.get("n_annotators", 2) < 2:
        why = f"{cell.get('n_annotators', 0)} annotator(s): too few for any verdict about people"
    elif d is None or cell["n_examples_labelled"] < max(settings.min_examples, 2):
        why = f"{rate}; {cell['n_examples_labelled']} labelled examples, fewer than min_examples " \
              f"{settings.min_examples}"
    elif verdict in ("aligned", "misaligned"):
        side = "fine-tuned" if verdict == "aligned" else "original"
        who = "people prefer" if people else "these annotators prefer"
        why = (f"{rate}; {who} the {side} maps: net preference {delta:+.0%}, clustered Holm p = "
               f"{p['p_value_holm']:.2g} < {settings.alpha}")
    elif verdict == "no_preference":
        why = (f"{rate}; fine-tuned share of decisive labels {pi:.0%} is within 50% +-{settings.equivalence_margin:.0%}"
               f" (TOST Holm p = {p_eq['p_value_holm']:.2g} < {settings.alpha})")
    else:
        perceptible = "" if d_int and d_int[0] >= margin else \
            f" (not shown perceptible: lower bound below {margin:.0%})"
        why = (f"{rate}{perceptible}; net preference {_pct(delta)}: direction Holm p = "
               f"{_shown(p['p_value_holm'])}, equivalence Holm p = {_shown(p_eq['p_value_holm'])}")
    flag = " Neither dominant." if cell["neither_dominant"] else ""
    return why + "." + flag
