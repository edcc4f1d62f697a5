"""report.tex: the per-cell table in booktabs form (``\\usepackage{booktabs}``), ready for a paper."""
from __future__ import annotations

from .markdown import num, pval

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
    level = f"{settings['confidence']:.0%}".replace("%", r"\%")
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             r"\begin{tabular}{lllrrrrllrl}", r"\toprule",
             r"metric & backbone & attribution & labels & orig. & neither & fine-t. & $d$ [" + level + r"] & "
             r"$\Delta$ [" + level + r"] & $p_\mathrm{Holm}$ & verdict \\", r"\midrule"]
    previous = None
    for c in report["cells"]:
        if previous is not None and c["metric"] != previous:
            lines.append(r"\addlinespace")
        previous = c["metric"]
        verdict = escape(c["verdict"]) + (r"$^\dagger$" if c["neither_dominant"] else "")
        p = c["direction_test"]["p_value_holm"]
        lines.append(" & ".join([
            escape(c["metric"]), escape(c["backbone"]), escape(c["attribution"]), str(c["n_labels"]),
            *(_pct(c["shares"][k]) for k in ("original", "neither", "finetuned")),
            _pct(c["decisive_rate"]) + _interval(c["decisive_rate_interval"]),
            _pct(c["net_preference"], True) + _interval(c["net_preference_interval"], True),
            "--" if p is None else pval(p), verdict]) + r" \\")
    caption = (f"{escape(report['study'])}: per-cell shares of labels; $d$: decisive rate (labels that are not "
               f"Neither); $\\Delta$: net preference (fine-tuned $-$ original)/labels; intervals and the direction "
               f"test clustered by example, Holm over the {len(report['cells'])} cells; rule: "
               f"{escape(report['rule'])}. $^\\dagger$: Neither is more than "
               f"{_pct(settings['neither_dominant'])} of labels."
               + "".join(f" Note: {escape(note)}." for note in report.get("notes", [])))
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + caption + "}", r"\label{tab:harmony-verdicts}",
              r"\end{table}", ""]
    return "\n".join(lines)
