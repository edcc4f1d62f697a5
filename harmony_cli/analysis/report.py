"""Writing an analysis report: report.json, cells.csv, report.md (and preferences.png via plot.py).

The folder is written as a whole: into a temporary sibling that is renamed into place, so a
reader never sees half a report.
"""
from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from pathlib import Path

import pandas as pd

from .stats import CHOICES

REPORT_FILES = ("report.json", "cells.csv", "report.md", "preferences.png")


def to_json(report: dict) -> str:
    """The report as JSON text; fails on NaN or infinity (undefined values must be None)."""
    return json.dumps(report, indent=2, allow_nan=False, ensure_ascii=False)


def _flatten(value, prefix: str, out: dict) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}_{key}" if prefix else key, out)
    elif isinstance(value, list) and len(value) == 2 and "interval" in prefix:
        out[f"{prefix}_low"], out[f"{prefix}_high"] = value
    elif value is None and "interval" in prefix:
        out[f"{prefix}_low"] = out[f"{prefix}_high"] = None
    elif isinstance(value, list):
        out[prefix] = "; ".join(map(str, value))
    else:
        out[prefix] = value


def cells_frame(report: dict) -> pd.DataFrame:
    """One flat row per cell (nested fields joined with ``_``, intervals as ``_low``/``_high``)."""
    rows = []
    for cell in report["cells"]:
        flat: dict = {}
        _flatten({k: v for k, v in cell.items() if k != "gain_regression"}, "", flat)
        if cell.get("gain_regression") is not None:
            _flatten(cell["gain_regression"], "gain_regression", flat)
        rows.append(flat)
    return pd.DataFrame(rows)


def _num(value, digits: int = 2, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if percent:
        return f"{value:.0%}"
    return f"{value:.{digits}f}"


def _sig(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def _p(value) -> str:
    if value is None:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _interval(pair, percent: bool = True) -> str:
    if not pair or pair[0] is None:
        return ""
    return f" [{_num(pair[0], percent=percent)}, {_num(pair[1], percent=percent)}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def cell_name(cell: dict, with_dataset: bool = False) -> str:
    parts = [cell["metric"], cell["backbone"], cell["attribution"]]
    return " / ".join(([cell["dataset"]] if with_dataset else []) + parts)


def markdown(report: dict) -> str:
    """The report as Markdown: summary, per-cell table, metric-gain regression, roll-ups, annotators, notes."""
    cells = report["cells"]
    several_datasets = len({c["dataset"] for c in cells}) > 1
    settings = report["settings"]
    level = f"{settings['confidence']:.0%}"
    test = ("label-level exact binomial test" if settings["verdict_test"] == "binomial"
            else "per-example majority sign test")
    lines = [f"# harmony report: {report['study']}", ""]
    lines += [f"- database: `{report.get('database', '')}`", f"- written: {report.get('created', '')}",
              f"- labels analyzed: **{report['label_source']}** ({report['n_labels']} labels, "
              f"{report['n_annotators']} annotators; {report.get('labels_left_out', 0)} "
              f"{'real' if report['label_source'] == 'simulated' else 'simulated'} labels left out: real and "
              f"simulated labels are never mixed)",
              f"- significance: alpha = {settings['alpha']}, Holm-corrected over the {len(cells)} cells; verdict "
              f"from the {test}",
              f"- intervals: {level} Wilson; cluster bootstrap over examples with {settings['bootstrap_resamples']} "
              f"resamples (seed {settings['seed']})", ""]
    tally = {v: sum(c["verdict"] == v for c in cells) for v in ("aligned", "misaligned", "imperceptible", "no_labels")}
    lines += ["## Verdicts", "",
              f"aligned (people prefer the fine-tuned maps): **{tally['aligned']}**, misaligned (they prefer the "
              f"original): **{tally['misaligned']}**, imperceptible (no significant preference): "
              f"**{tally['imperceptible']}**" + (f", no labels: {tally['no_labels']}" if tally["no_labels"] else "")
              + f" of {len(cells)} cells.", "", "![preferences](preferences.png)", ""]

    header = (["dataset"] if several_datasets else []) + [
        "metric", "backbone", "attribution", "examples", "annotators", "labels", "original", "neither", "finetuned",
        f"decisive fine-tuned share [{level} Wilson] (bootstrap)", "p (Holm)", "sign test p (Holm)", "Fleiss κ",
        "Krippendorff α", "majority o/n/f/tie", "verdict"]
    rows = []
    for c in cells:
        boot = c["decisive_bootstrap_interval"]
        share = _num(c["decisive_finetuned_share"], percent=True) + _interval(c["decisive_interval"])
        if boot:
            share += f" ({_num(boot[0], percent=True)}–{_num(boot[1], percent=True)})"
        m = c["majority"]
        rows.append(([c["dataset"]] if several_datasets else []) + [
            c["metric"], c["backbone"], c["attribution"], c["n_examples"], c["n_annotators"], c["n_labels"],
            *(f"{c['counts'][k]} ({_num(c['shares'][k], percent=True)})" for k in CHOICES), share,
            f"{_p(c['p_value'])} ({_p(c['p_value_holm'])})",
            f"{_p(c['sign_test']['p_value'])} ({_p(c['sign_test']['p_value_holm'])})",
            _num(c["fleiss_kappa"], 3), _num(c["krippendorff_alpha"], 3),
            f"{m['original']}/{m['neither']}/{m['finetuned']}/{m['tie']}", f"**{c['verdict']}**"])
    lines += ["## Cells", "", *_table(header, rows), ""]

    regressions = [c for c in cells if c.get("gain_regression")]
    if regressions:
        lines += ["## Does a bigger metric gain look better?", "",
                  "Logistic regression of the choice (fine-tuned vs original, decisive labels only) on the "
                  "example's metric gain (fine-tuned minus original score, sign flipped where lower is better).", ""]
        rows = []
        for c in regressions:
            g = c["gain_regression"]
            rows.append([cell_name(c, several_datasets), g["n_labels"], _num(g.get("mean_gain"), 4),
                         _num(g["coefficient"], 3), _sig(g["odds_ratio_per_sd"]), _p(g["p_value"]),
                         _p(g.get("p_value_holm"))])
        lines += _table(["cell", "decisive labels", "mean gain", "coefficient (log-odds per unit gain)",
                         "odds ratio per SD of gain", "p", "p (Holm)"], rows) + [""]

    lines += ["## Roll-ups", ""]
    for field, groups in report["rollups"].items():
        rows = [[g[field], g["n_cells"], g["n_labels"], *(_num(g["shares"][k], percent=True) for k in CHOICES),
                 _num(g["decisive_finetuned_share"], percent=True) + _interval(g["decisive_interval"]),
                 f"{_p(g['p_value'])} ({_p(g['p_value_holm'])})",
                 ", ".join(f"{k} {v}" for k, v in g["verdicts"].items() if v)] for g in groups]
        lines += [f"### per {field}", "", *_table(
            [field, "cells", "labels", "original", "neither", "finetuned", "decisive fine-tuned share",
             "p, pooled labels (Holm)", "cell verdicts"], rows), ""]

    lines += ["## Annotators", "", "Agreement with the majority: share of the annotator's labels equal to the "
              "strict majority of the other annotators on the same example.", ""]
    rows = [[a["annotator"] + (" (simulated)" if a["simulated"] else ""), a["n_labels"], a["n_cells"],
             *(_num(a["shares"][k], percent=True) for k in CHOICES),
             _num(a["decisive_finetuned_share"], percent=True), _num(a["agreement_with_majority"], percent=True),
             _num(a["position"]["left_share"], percent=True) + (f" (p {_p(a['position']['p_value'])})"
                                                                if a["position"]["left_share"] is not None else "")]
            for a in report["annotators"]]
    lines += _table(["annotator", "labels", "cells", "original", "neither", "finetuned", "decisive fine-tuned share",
                     "agreement with majority", "chose left (decisive)"], rows) + [""]

    bias = report["position_bias"]
    lines += ["## Position bias", ""]
    if bias["left_share"] is None:
        lines += ["No side was recorded for the decisive labels (e.g. an imported study): position bias cannot "
                  "be measured.", ""]
    else:
        by_side = {k: _num(v["decisive_finetuned_share"], percent=True)
                   for k, v in bias["finetuned_share_by_side"].items()}
        lines += [f"Of {bias['n_decisive_with_side']} decisive labels with a recorded side, "
                  f"{_num(bias['left_share'], percent=True)}{_interval(bias['left_interval'])} chose the left map "
                  f"(binomial test against 50%: p {_p(bias['p_value'])}). Decisive fine-tuned share with the "
                  f"fine-tuned map on the left: {by_side['finetuned_left']}, on the right: "
                  f"{by_side['finetuned_right']}.", ""]

    noted = [(c, n) for c in cells for n in c["notes"]]
    if noted:
        lines += ["## Notes", ""] + [f"- {cell_name(c, several_datasets)}: {n}" for c, n in noted] + [""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: Path, plot: bool = True) -> dict[str, Path]:
    """Write report.json, cells.csv, report.md and preferences.png into ``out_dir`` at once.

    The files are written into a temporary folder next to ``out_dir`` and moved into place
    only when all of them are complete. Returns {file name: path}.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    text = to_json(report)  # fails before anything is written if a NaN slipped in
    staging = out_dir.parent / f".{out_dir.name}.tmp-{secrets.token_hex(4)}"
    staging.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions for the renamed folder
    try:
        (staging / "report.json").write_text(text + "\n", encoding="utf-8")
        cells_frame(report).to_csv(staging / "cells.csv", index=False)
        (staging / "report.md").write_text(markdown(report), encoding="utf-8")
        if plot:
            from .plot import preferences_plot

            preferences_plot(report, staging / "preferences.png")
        if out_dir.exists():
            # An existing folder (--out given twice): replace our files one by one, atomically each.
            for path in staging.iterdir():
                os.replace(path, out_dir / path.name)
            staging.rmdir()
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: out_dir / name for name in REPORT_FILES if (out_dir / name).exists()}


__all__ = ["REPORT_FILES", "cell_name", "cells_frame", "markdown", "to_json", "write_report"]
