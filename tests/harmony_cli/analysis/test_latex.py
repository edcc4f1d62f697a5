"""report.tex (harmony_cli/analysis/latex.py): one row per cell with both verdicts, in as many columns as declared."""
from __future__ import annotations

import numpy as np
import pandas as pd

from harmony_cli.analysis import AnalysisSettings, analyze_labels
from harmony_cli.analysis.latex import latex_table


def test_latex_rows_carry_both_verdicts_in_the_declared_columns():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame([{"example_id": f"{m}{e}", "dataset": "d", "metric": m, "backbone": "b", "attribution": "g_c",
                           "annotator": f"a{a}", "choice": ("original", "neither", "finetuned")[rng.choice(3)]}
                          for m in ("rma", "focus") for e in range(12) for a in range(3)])
    report = analyze_labels(frame, AnalysisSettings.defaults(bootstrap_resamples=0))
    text = latex_table(report)
    declared = text.split(r"\begin{tabular}{")[1].split("}")[0]
    body = text.split(r"\midrule")[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(rows) == 2 and all(line.count(" & ") == len(declared) - 1 for line in rows)
    assert "for people & for these 3 annotators" in text and r"g\_c" in text
    for cell, line in zip(report["cells"], rows):
        people, these = line.removesuffix(r" \\").split(" & ")[-2:]
        assert (people, these) == (cell["verdicts"]["people"].replace("_", r"\_"),
                                   cell["verdicts"]["these_annotators"].replace("_", r"\_"))
