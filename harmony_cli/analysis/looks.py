"""The looks of a sequential study's cells (``study.design: sequential``): early stopping.

After a new real label in a sequential study (``Store.answer`` returns its cell), :func:`after_answer` checks
whether the cell's real-label count has reached a look that has not been done: ``design.look_at(n)`` above the
recorded look (concurrent writers may pass a multiple of ``look_every`` without stopping on it, so look numbers
are compared, never counts). Each due look, in order, runs the rule
(:func:`harmony_cli.analysis.sequential.cell_decision`) on the cell's first ``min(k x look_every,
max_labels)`` real labels in the order they were stored (as ``harmony replay`` replays them), outside any
write transaction, and the store records it with a guarded update (``Store.record_look``): a look another
writer recorded first is skipped, and a decision is never overwritten. The rule's settings are those the study
recorded at build (``study_rule``) and its family the study's cells, as in ``harmony analyze``. Labels stored without a look (a script's
``Store.answer``) are caught up by the next look that runs: :func:`run_due_looks`.
"""
from __future__ import annotations

import numpy as np

from ..store import study_rules
from ..store.sequential_cells import LookCell, is_decided
from .encoding import FINETUNED, NEITHER, ORIGINAL
from .sequential import SequentialDesign, cell_decision, study_rule

CHOICE_CODES = {"original": ORIGINAL, "neither": NEITHER, "finetuned": FINETUNED}


def cell_design(config: dict | None, source: str | None, examples: int) -> SequentialDesign | None:
    """The study's sequential design for a cell of ``examples`` examples; None for a study of the fixed design."""
    rules = study_rules(config, source)
    if not rules.sequential:
        return None
    return SequentialDesign.from_config(config or {}, examples, rules.labels_per_example)


def after_answer(store, cell: LookCell | None) -> str | None:
    """The due looks of the cell ``Store.answer`` returned (None: not a new real label in a sequential study,
    nothing to do); the cell's verdict afterwards."""
    return None if cell is None else run_due_looks(store, cell)


def run_due_looks(store, cell: LookCell) -> str:
    """Do the cell's looks that its real labels have reached and nobody has done; its verdict afterwards.
    Cheap when no look is due (the page's usual case): the state row and two counts, no labels read."""
    examples, count, done, verdict = store.look_counts(cell.study_id, cell.cell)
    design = cell_design(cell.config, cell.source, examples)
    if is_decided(verdict) or design.look_at(count) <= done:
        return verdict
    labels = store.cell_real_labels(cell.study_id, cell.cell)
    example, annotator = (np.array([row[i] for row in labels], dtype=np.int64) for i in (0, 1))
    choice = np.array([CHOICE_CODES[row.choice] for row in labels], dtype=np.int64)
    settings, family = study_rule(cell.config), store.study_cell_count(cell.study_id)
    look = done + 1
    while look <= design.look_at(len(labels)):
        used = min(look * design.look_every, design.max_labels)
        verdict, _ = cell_decision(example[:used], annotator[:used], choice[:used], design, settings, family)
        if not store.record_look(cell.study_id, cell.cell, look, verdict, used):
            # another writer recorded this look or a later one: go on from what it recorded
            _, _, look, verdict = store.look_counts(cell.study_id, cell.cell)
        if is_decided(verdict):
            break
        look += 1
    return verdict


def run_due_looks_of_examples(store, example_ids: list[int]) -> None:
    """:func:`run_due_looks` for each sequential study's cell among these examples' (after labels stored without
    looks: an import, a script)."""
    for cell in store.look_cells_of(example_ids):
        run_due_looks(store, cell)


__all__ = ["after_answer", "cell_design", "run_due_looks", "run_due_looks_of_examples"]
