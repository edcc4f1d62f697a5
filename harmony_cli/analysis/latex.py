"""report.tex: the per-cell table in booktabs form (``\\usepackage{booktabs}``), ready for a paper."""
from __future__ import annotations

from .markdown import num, pval
from .verdict import inference_label

SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def escape(text) -> str:
    return "".join(SPECIAL.get(ch, ch) for ch in str(text))


def _pct(value, sign: bool = False) -> str:
    return escape(num(value, percent=True, sign=sign)).replace("–", "--")


def _interval(pair, sign: bool = False) -> str:
    return "" if not pair else f" [{_pct(pair[0], sign)}, {_pct(pair[1], sign)}]"


def latex_table(report: dict) -> str:
    """A standalone ``table`` environment with one row per cell."""
    settings = report["settings"]
    chosen = settings["generalize"]
    other = "these_annotators" if chosen == "people" else "people"
    n = report["n_annotators"]
    level = f"{settings['confidence']:.0%}".replace("%", r"\%")
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{lllrrrrllrll}", r"\toprule",
             r"metric & backbone & attribution & labels & orig. & neither & fine-t. & $d$ [" + level + r"] & "
             r"$\Delta$ [" + level + r"] & $p_\mathrm{Holm}$ & " + escape(inference_label(chosen, n)) + " & "
             + escape(inference_label(other, n)) + r" \\", r"\midrule"]
    previous = None
    for c in report["cells"]:
        if previous is not None and c["metric"] != previous:
            lines.append(r"\addlinespace")
        previous = c["metric"]
        dagger = r"$^\dagger$" if c["neither_dominant"] else ""
        verdicts = [escape(c["verdicts"][name]) + dagger for name in (chosen, other)]
        p = c["direction_test"]["p_value_holm"]
        lines.append(" & ".join([
            escape(c["metric"]), escape(c["backbone"]), escape(c["attribution"]), str(c["n_labels"]),
            *(_pct(c["shares"][k]) for k in ("original", "neither", "finetuned")),
            _pct(c["decisive_rate"]) + _interval(c["decisive_rate_interval"]),
            _pct(c["net_preference"], True) + _interval(c["net_preference_interval"], True),
            "--" if p is None else pval(p), *verdicts]) + r" \\")
    caption = (f"{escape(report.get('study', 'labels'))}: per-cell shares of labels; $d$: decisive rate (labels that "
               f"are not Neither); $\\Delta$: net preference (fine-tuned $-$ original)/labels; intervals "
               f"(unadjusted) and the direction test {escape(inference_label(chosen, n))} (examples"
               f"{' and annotators' if chosen == 'people' else ''} sampled), Holm over the {len(report['cells'])} "
               f"cells; the last column: the verdict {escape(inference_label(other, n))}; rule: "
               f"{escape(report['rule'])}. $^\\dagger$: Neither is more than "
               f"{_pct(settings['neither_dominant'])} of labels."
               + "".join(f" Note: {escape(note)}." for note in report.get("notes", [])))
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}", r"\label{tab:harmony-verdicts}",
              r"\end{table}", ""]
    return "\n".join(lines)
