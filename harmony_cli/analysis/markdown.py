"""report.md: the rule and its settings first, then verdicts, cells, gain regression, roll-ups, annotators."""
from __future__ import annotations

import math

from ..cells import REPORT_ORDER, REPORT_SEPARATOR, cell_text
from .decisions import decision_text
from .verdict import VERDICTS, inference_label, verdict_tally

VERDICT_MEANING = {
    "aligned": "people see a difference and prefer the fine-tuned maps",
    "misaligned": "people see a difference and prefer the original maps",
    "no_preference": "people see differences but do not agree which map is better",
    "imperceptible": "people see no difference: the decisive rate is below the margin",
    "inconclusive": "not enough evidence either way",
}


def num(value, digits: int = 2, percent: bool = False, sign: bool = False) -> str:
    """A number for a table; an en dash where undefined."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{value:+.0%}" if sign else f"{value:.0%}"
    return f"{value:.{digits}f}"


def pval(value) -> str:
    """A p-value in full precision (three significant digits; never an ellipsis)."""
    return "–" if value is None else f"{value:.3g}"


def interval(pair, percent: bool = True, sign: bool = False) -> str:
    if not pair:
        return ""
    return f" [{num(pair[0], percent=percent, sign=sign)}, {num(pair[1], percent=percent, sign=sign)}]"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def verdict_text(cell: dict, name: str | None = None) -> str:
    """A cell's verdict (the chosen inference's, or ``name``'s) with its flags."""
    chosen = cell["inferences"][name] if name else cell
    faint = f" (faint: {chosen['faint_direction']})" if chosen.get("faint_direction") else ""
    return chosen["verdict"] + faint + (" (Neither dominant)" if cell["neither_dominant"] else "")


PEOPLE_NOTE = ("*For people*: examples and annotators are both samples, so the verdict is about people like these "
               "annotators, not only about them; with few annotators its intervals are wide and few cells reach a "
               "verdict. *For these N annotators*: only the examples are samples; the verdict says what these "
               "annotators would say about new images.")


def header_section(report: dict) -> list[str]:
    settings = report["settings"]
    other = "real" if report["label_source"] == "simulated" else "simulated"
    lines = [f"# harmony report: {report['study']}", "",
             f"- **rule (pre-registered, conf/analysis/)**: {report['rule']}",
             "- settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
             f"- inference: {report['inference']}",
             f"- database: `{report.get('database', '')}`; written {report.get('created', '')}",
             f"- labels analyzed: **{report['label_source']}** ({report['n_labels']} labels, {report['n_annotators']} "
             f"annotators; {report.get('labels_left_out', 0)} {other} labels left out: never mixed)"]
    if report.get("excluded_annotators"):
        lines.append(f"- **excluded annotators** (--exclude-annotator): {', '.join(report['excluded_annotators'])}")
    return lines + [f"- **note**: {n}" for n in report.get("notes", [])] + [""]


def verdict_section(report: dict) -> list[str]:
    cells = report["cells"]
    tally = verdict_tally(report)
    dominant = sum(c["neither_dominant"] for c in cells)
    faint = sum(bool(c["faint_direction"]) for c in cells)
    lines = ["## Verdicts", "", PEOPLE_NOTE, ""]
    lines += [f"- **{v}** ({VERDICT_MEANING[v]}): " + "; ".join(f"{t[v]} {label}" for label, t in tally.items())
              for v in VERDICTS]
    return lines + [f"- Neither dominant (> {report['settings']['neither_dominant']:.0%} of labels): {dominant} "
                    f"of {len(cells)} cells",
                    f"- imperceptible with a significant faint direction: {faint} of {len(cells)} cells", "",
                    "![preferences](preferences.png)", ""]


def cells_section(report: dict, several: bool) -> list[str]:
    level = f"{report['settings']['confidence']:.0%}"
    chosen = report["settings"]["generalize"]
    other = "these_annotators" if chosen == "people" else "people"
    label, other_label = (inference_label(n, report["n_annotators"]) for n in (chosen, other))
    header = (["dataset"] if several else []) + [
        "metric", "backbone", "attribution", "examples", "labels", "original", "neither", "finetuned",
        f"decisive rate d [{level}, {label}]", f"net preference Δ [{level}, {label}]", f"Δ [{other_label}]",
        "fine-tuned share of decisive π", "direction p (Holm)", "equivalence p (Holm)",
        "label-level p (Holm, secondary)", "Fleiss κ", "Krippendorff α", f"verdict {label}", f"verdict {other_label}"]
    rows = []
    for c in report["cells"]:
        second = c["secondary_label_level_binomial"]
        theirs = c["inferences"][other]
        rows.append(([c["dataset"]] if several else []) + [
            c["metric"], c["backbone"], c["attribution"], c["n_examples"], c["n_labels"],
            *(f"{c['counts'][k]} ({num(c['shares'][k], percent=True)})" for k in REPORT_ORDER),
            num(c["decisive_rate"], percent=True) + interval(c["decisive_rate_interval"]),
            num(c["net_preference"], percent=True, sign=True) + interval(c["net_preference_interval"], sign=True),
            interval(theirs["net_preference_interval"], sign=True).strip() or "–",
            num(c["preference"], percent=True) + interval(c["preference_interval"]),
            f"{pval(c['direction_test']['p_value'])} ({pval(c['direction_test']['p_value_holm'])})",
            f"{pval(c['equivalence_test']['p_value'])} ({pval(c['equivalence_test']['p_value_holm'])})",
            f"{pval(second['p_value'])} ({pval(second['p_value_holm'])})",
            num(c["fleiss_kappa"], 3), num(c["krippendorff_alpha"], 3), f"**{verdict_text(c)}**",
            verdict_text(c, other)])
    return ["## Cells", "", *table(header, rows), ""]


def sequential_section(report: dict, several: bool) -> list[str]:
    """A sequential study's recorded decisions: per cell, the verdict of the look that stopped it and its labels."""
    if "design" not in report or report["design"]["design"] != "sequential":
        return []
    design = report["design"]["sequential"]
    lines = ["## Sequential decisions", "", f"The study's design is sequential (a look every {design['look_every']} "
             f"labels, at most {design['max_labels_per_cell'] or 'examples x labels per example'} per cell): a cell "
             "stops taking labels at the look that decides it, and that verdict, recorded when it was made, is "
             "the cell's; the verdicts above use all its labels.", ""]
    rows = [[cell_text(c, several, REPORT_SEPARATOR), c["n_labels"], f"**{decision_text(c['sequential'])}**"]
            for c in report["cells"]]
    return lines + table(["cell", "labels", "recorded decision"], rows) + [""]


def regression_section(report: dict, several: bool) -> list[str]:
    lines = ["## Does a bigger metric gain look better?", ""]
    regressions = [c for c in report["cells"] if c.get("gain_regression")]
    if not regressions:
        return lines + ["Not computed: the study has no per-example metric scores.", ""]
    lines += ["Logistic regression of the choice (fine-tuned vs original, decisive labels) on the example's metric "
              "gain (sign flipped where lower is better), standard errors clustered by example.", ""]
    rows = [[cell_text(c, several, REPORT_SEPARATOR), g["n_labels"], num(g.get("mean_gain"), 4),
             num(g["coefficient"], 3), num(g["std_error"], 3), num(g["odds_ratio_per_sd"], 3), pval(g["p_value"]),
             pval(g.get("p_value_holm"))]
            for c in regressions for g in [c["gain_regression"]]]
    return lines + table(["cell", "decisive labels", "mean gain", "coefficient", "clustered SE",
                          "odds ratio per SD of gain", "p", "p (Holm)"], rows) + [""]


def rollup_section(report: dict) -> list[str]:
    lines = ["## Roll-ups (pooled cells; clustered by example)", ""]
    for field, groups in report["rollups"].items():
        rows = [[g[field], g["n_cells"], g["n_labels"], *(num(g["shares"][k], percent=True) for k in REPORT_ORDER),
                 num(g["decisive_rate"], percent=True) + interval(g["decisive_rate_interval"]),
                 num(g["net_preference"], percent=True, sign=True) + interval(g["net_preference_interval"], sign=True),
                 f"{pval(g['p_value'])} ({pval(g['p_value_holm'])})",
                 ", ".join(f"{k} {v}" for k, v in g["verdicts"].items() if v)] for g in groups]
        lines += [f"### per {field}", "", *table([field, "cells", "labels", "original", "neither", "finetuned",
                                                 "decisive rate", "net preference", "p (Holm)", "cell verdicts"],
                                                rows), ""]
    return lines


def annotator_section(report: dict) -> list[str]:
    rows = [[a["annotator"] + (" (simulated)" if a["simulated"] else "") + (" (admin)" if a.get("admin") else ""),
             a["n_labels"], a["n_cells"],
             *(num(a["shares"][k], percent=True) for k in REPORT_ORDER),
             num(a["decisive_finetuned_share"], percent=True),
             num(a["agreement_with_majority"], percent=True),
             num(a["position"]["left_share"], percent=True)
             + (f" (p {pval(a['position']['p_value'])})" if a["position"]["left_share"] is not None else "")]
            for a in report["annotators"]]
    lines = ["## Annotators", "", "Agreement with the majority: share of the annotator's labels equal to the strict "
             "majority of the other annotators on the same example.", ""]
    lines += table(["annotator", "labels", "cells", "original", "neither", "finetuned", "decisive fine-tuned share",
                    "agreement with majority", "chose left (decisive)"], rows) + [""]
    bias = report["position_bias"]
    if bias["left_share"] is None:
        return lines + ["## Position bias", "", "No side was recorded for the decisive labels (e.g. an imported "
                        "study): position bias cannot be measured.", ""]
    sides = {k: num(v["decisive_finetuned_share"], percent=True) for k, v in bias["finetuned_share_by_side"].items()}
    return lines + ["## Position bias", "", f"Of {bias['n_decisive_with_side']} decisive labels with a recorded side, "
                    f"{num(bias['left_share'], percent=True)}{interval(bias['left_interval'])} chose the left map "
                    f"(binomial test against 50%: p {pval(bias['p_value'])}). Decisive fine-tuned share with the "
                    f"fine-tuned map on the left: {sides['finetuned_left']}, on the right: {sides['finetuned_right']}.",
                    ""]


def cell_annotators_section(report: dict, several: bool) -> list[str]:
    """Per cell: each annotator's net preference with its interval, and who, left out, changes the verdict."""
    level = f"{report['settings']['confidence']:.0%}"
    lines = ["## Annotators per cell", "", f"Each annotator's net preference [{level} t interval over their examples]; "
             "*changes without*: the annotators whose labels, left out of the whole analysis, change the cell's "
             "verdict.", ""]
    names = [a["annotator"] for a in report["annotators"]]
    rows = []
    for c in report["cells"]:
        by_name = {a["annotator"]: a for a in c.get("annotators", [])}
        shown = [num(by_name[n]["net_preference"], percent=True, sign=True)
                 + interval(by_name[n]["net_preference_interval"], sign=True) if n in by_name else "–" for n in names]
        changed = c.get("verdict_changed_without")
        rows.append([cell_text(c, several, REPORT_SEPARATOR), *shown,
                     "not computed" if changed is None else (", ".join(changed) or "none")])
    marked = [a["annotator"] + (" (admin)" if a.get("admin") else "") for a in report["annotators"]]
    return lines + table(["cell", *marked, "changes without"], rows) + [""]


def summary_table(report: dict) -> list[str]:
    """The compact table of the README: shares, d and Δ with the chosen inference's intervals, both verdicts, tally."""
    chosen = report["settings"]["generalize"]
    other = "these_annotators" if chosen == "people" else "people"
    n = report["n_annotators"]
    rows = []
    for c in report["cells"]:
        shares = "/".join("–" if c["shares"][k] is None else f"{100 * c['shares'][k]:.0f}" for k in REPORT_ORDER)
        d, delta = c["decisive_rate_interval"], c["net_preference_interval"]
        pct = lambda v, sign=False: "–" if v is None else (f"{100 * v:+.0f}" if sign else f"{100 * v:.0f}")  # noqa
        rows.append([c["metric"], c["backbone"], c["attribution"], shares,
                     pct(c["decisive_rate"]) + (f" [{pct(d[0])}, {pct(d[1])}]" if d else ""),
                     pct(c["net_preference"], True)
                     + (f" [{pct(delta[0], True)}, {pct(delta[1], True)}]" if delta else ""),
                     pval(c["direction_test"]["p_value_holm"]),
                     *(verdict_text(c, name).replace(" (Neither dominant)", " †") for name in (chosen, other))])
    header = ["metric", "backbone", "attribution", "o/n/f %", "d", "Δ", "direction p (Holm)",
              f"verdict {inference_label(chosen, n)}", f"verdict {inference_label(other, n)}"]
    tally = "; ".join(f"{label}: " + ", ".join(f"{v} {k}" for v, k in counts.items())
                      for label, counts in verdict_tally(report).items())
    return table(header, rows) + ["", f"Tally {tally}."]


def markdown(report: dict) -> str:
    """The report as Markdown: rule and settings, verdicts, cells, gain regression, roll-ups, annotators, notes."""
    several = len({c["dataset"] for c in report["cells"]}) > 1
    lines = header_section(report) + verdict_section(report) + cells_section(report, several)
    lines += sequential_section(report, several)
    lines += ["Verdict details:", ""] + [
        f"- {cell_text(c, several, REPORT_SEPARATOR)}: " + "; ".join(
            f"{inference_label(n, report['n_annotators'])} **{i['verdict']}**: {i['verdict_detail']}"
            for n, i in c["inferences"].items()) for c in report["cells"]] + [""]
    lines += cell_annotators_section(report, several) + regression_section(report, several)
    lines += rollup_section(report) + annotator_section(report)
    noted = [(c, n) for c in report["cells"] for n in c["notes"]]
    if noted or report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report.get("notes", [])]
        lines += [f"- {cell_text(c, several, REPORT_SEPARATOR)}: {n}" for c, n in noted] + [""]
    return "\n".join(lines)
