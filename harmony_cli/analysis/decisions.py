"""The recorded decisions of a sequential study's cells, as ``harmony analyze`` and the dashboard show them.

The store records each cell's looks and its decision (harmony_cli/store/sequential_cells.py); here they are
read back per cell of a report or of the dashboard: ``verdict`` (a decision, or ``undecided`` while no look
has decided the cell), ``labels`` (the real labels the deciding look used; None while undecided), ``look``
(the last look done) and ``looks`` (the design's number of looks for that cell). A fixed study has none.
"""
from __future__ import annotations

from ..cells import CELL_FIELDS
from ..designs import UNDECIDED
from ..store import study_rules
from .looks import cell_design

# Said beside a fixed study's interim verdicts (the dashboard's), which peeking would misuse.
FIXED_NOTE = ("interim verdicts of a fixed design are not valid for stopping: stopping a cell when it first reads "
              "aligned inflates the error the rule promises (build the study with study.design=sequential for "
              "verdicts that hold however often they are looked at)")


def _key(row) -> tuple[str, ...]:
    return tuple(str(row[f]) for f in CELL_FIELDS)


def recorded_decisions(store, study, cells: list[dict]) -> list[dict] | None:
    """Per row of ``cells`` (cell fields and ``examples``): the cell's recorded decision (see the module);
    None for a study whose design is not sequential."""
    if not study_rules(study.config, study.source).sequential:
        return None
    states = {_key(row): row for row in store.sequential_cells(study.id)}
    decisions = []
    for cell in cells:
        design = cell_design(study.config, study.source, int(cell["examples"]))
        state = states.get(_key(cell))
        decisions.append({"verdict": UNDECIDED if state is None else state["verdict"],
                          "labels": None if state is None else state["labels"],
                          "look": 0 if state is None else int(state["look"]), "looks": int(design.n_looks)})
    return decisions


def design_of(study) -> dict:
    """The study's recorded design: ``design`` and, for a sequential one, its ``sequential`` settings."""
    config = study.config or {}
    design = study_rules(config, study.source).design
    return {"design": design, **({"sequential": dict(config.get("sequential") or {})}
                                 if design == "sequential" else {})}


def add_decisions(report: dict, store, study, cells: list[dict]) -> dict:
    """``report`` (``study_report``'s) with the study's ``design`` and, for a sequential study, each cell's
    ``sequential`` decision (``cells``: the study's ``Store.cells`` rows); a fixed study's report is returned
    unchanged."""
    examples = {_key(row): row["examples"] for row in cells}
    decisions = recorded_decisions(store, study, [{**{f: c[f] for f in CELL_FIELDS}, "examples": examples.get(_key(c), c.get("n_examples", 0))}
                                                  for c in report["cells"]])
    if decisions is None:
        return report
    for cell, decision in zip(report["cells"], decisions):
        cell["sequential"] = decision
    report["design"] = design_of(study)
    return report


def decision_text(decision: dict) -> str:
    """``aligned at 40 labels (look 4 of 8)``, or ``undecided, look 2 of 8``."""
    if decision["verdict"] == UNDECIDED:
        return f"undecided, look {decision['look']} of {decision['looks']}"
    return f"{decision['verdict']} at {decision['labels']} labels (look {decision['look']} of {decision['looks']})"
