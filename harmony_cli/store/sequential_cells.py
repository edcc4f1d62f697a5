"""Early stopping of a sequential study's cells (``study.design: sequential``).

After a real label is stored in a sequential study, :meth:`SequentialMixin.run_due_looks` checks whether
the cell's real-label count has reached a look that has not been done (``design.look_at(n)`` above the
recorded look: concurrent writers may pass a multiple of ``look_every`` without stopping on it, so look
numbers are compared, never counts). Each due look runs the lead rule
(:func:`harmony_cli.analysis.sequential.cell_decision`) on the cell's first ``min(k x look_every,
max_labels)`` real labels in the order they were stored, as ``harmony replay`` does, outside any write
transaction; its outcome is recorded by one guarded UPDATE (``look < k`` and still undecided), so that of
two writers doing the same look, or a later one, exactly one records it, and a decision is never
overwritten. A decided cell (any verdict but undecided; ``inconclusive`` at the last look) takes no more
labels: the page's rules refuse them and its next-example query skips the cell (page_queries.py).
"""
from __future__ import annotations

from sqlalchemy import bindparam, func, select, update

from ..cells import CELL_FIELDS
from .assignments import study_rules
from .label_counts import REAL
from .models import UNDECIDED, Annotator, Example, Label, SequentialCell, Study, utcnow

# The state of one cell (params: study_id and the cell fields); the hot path's rules read it.
_in_cell_row = [SequentialCell.study_id == bindparam("study_id"),
                *[getattr(SequentialCell, f) == bindparam(f) for f in CELL_FIELDS]]
STATE = select(SequentialCell.look, SequentialCell.verdict, SequentialCell.labels).where(*_in_cell_row)
_in_cell = [Example.study_id == bindparam("study_id"), *[getattr(Example, f) == bindparam(f) for f in CELL_FIELDS]]
_EXAMPLES = select(func.count(Example.id)).where(*_in_cell)
_REAL_LABELS = (select(Label.example_id, Label.annotator_id, Label.choice)
                .join(Example, Example.id == Label.example_id).join(Annotator, Annotator.id == Label.annotator_id)
                .where(*_in_cell, REAL).order_by(Label.id))
_REAL_COUNT = (select(func.count(Label.id)).join(Example, Example.id == Label.example_id)
               .join(Annotator, Annotator.id == Label.annotator_id).where(*_in_cell, REAL))
# Records look :new_look unless it (or a later one) is recorded already or the cell is decided. (An UPDATE's
# parameters may not share its columns' names: hence the prefixes.)
_RECORD = (update(SequentialCell)
           .where(SequentialCell.study_id == bindparam("cell_study_id"),
                  *[getattr(SequentialCell, f) == bindparam(f"cell_{f}") for f in CELL_FIELDS],
                  SequentialCell.look < bindparam("new_look"), SequentialCell.verdict == UNDECIDED)
           .values(look=bindparam("new_look"), verdict=bindparam("new_verdict"), labels=bindparam("new_labels"),
                   decided_at=bindparam("new_decided_at")))
_CELLS_OF = (select(Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS], Study.config, Study.source)
             .join(Study, Study.id == Example.study_id).distinct())

CHOICE_CODES = {"original": 0, "neither": 1, "finetuned": 2}  # harmony_cli.analysis.encoding's codes


def is_decided(verdict: str | None) -> bool:
    return verdict is not None and verdict != UNDECIDED


class SequentialMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def sequential_design(self, config: dict | None, source: str | None, examples: int):
        """The study's :class:`SequentialDesign` for a cell of ``examples`` examples; None for a fixed study."""
        from ..analysis.sequential import SequentialDesign  # numpy/scipy: only where a look runs

        rules = study_rules(config, source)
        if not rules.sequential:
            return None
        return SequentialDesign.from_config(config or {}, examples, rules.labels_per_example)

    def run_due_looks(self, study_id: int, cell: dict, config: dict | None = None,
                      source: str | None = None) -> str | None:
        """Do the cell's looks that its real labels have reached and nobody has done; the cell's verdict
        afterwards (None: a fixed study). Cheap when no look is due: two counts and the state row."""
        params = {"study_id": study_id, **{f: cell[f] for f in CELL_FIELDS}}
        with self.engine.connect() as conn:
            if config is None:
                config, source = conn.execute(select(Study.config, Study.source).where(Study.id == study_id)).one()
            if not study_rules(config, source).sequential:
                return None
            state = conn.execute(STATE, params).first()
            if state is not None and is_decided(state.verdict):
                return state.verdict
            design = self.sequential_design(config, source, conn.execute(_EXAMPLES, params).scalar())
            done = 0 if state is None else state.look
            if design.look_at(conn.execute(_REAL_COUNT, params).scalar()) <= done:
                return UNDECIDED  # (the page's usual case: a count, no labels read)
            labels = conn.execute(_REAL_LABELS, params).all()
        return self._do_looks(params, design, labels, done)

    def _do_looks(self, params: dict, design, labels: list, done: int) -> str:
        """Looks ``done + 1`` .. ``design.look_at(len(labels))`` in order, each recorded by a guarded update;
        stops at a decision. A look another writer recorded first is skipped (its state re-read)."""
        import numpy as np

        from ..analysis import AnalysisSettings
        from ..analysis.sequential import cell_decision

        settings, family = AnalysisSettings.defaults(), self._study_cell_count(params["study_id"])
        example = np.array([row.example_id for row in labels])
        annotator = np.array([row.annotator_id for row in labels])
        choice = np.array([CHOICE_CODES[row.choice] for row in labels])
        self._ensure_state_row(params)
        verdict, look = UNDECIDED, done + 1
        while look <= design.look_at(len(labels)):
            used = min(look * design.look_every, design.max_labels)
            verdict, _ = cell_decision(example[:used], annotator[:used], choice[:used], design, settings, family)
            decided = is_decided(verdict)
            values = {"look": look, "verdict": verdict, "labels": used if decided else None,
                      "decided_at": utcnow() if decided else None}
            with self.write_connection() as conn:
                recorded = conn.execute(_RECORD, {**{f"cell_{k}": v for k, v in params.items()},
                                                  **{f"new_{k}": v for k, v in values.items()}}).rowcount
            if not recorded:  # another writer did this look or a later one, or decided the cell
                with self.engine.connect() as conn:
                    state = conn.execute(STATE, params).first()
                verdict, look = state.verdict, state.look
            if is_decided(verdict):
                break
            look += 1
        return verdict

    def _ensure_state_row(self, params: dict) -> None:
        with self.write_connection() as conn:
            conn.execute(self.insert(SequentialCell).values(**params, look=0, verdict=UNDECIDED)
                         .on_conflict_do_nothing(index_elements=["study_id", *CELL_FIELDS]))

    def _study_cell_count(self, study_id: int) -> int:
        """The study's number of cells: the family over which the rule splits its alpha."""
        with self.engine.connect() as conn:
            cells = select(*[getattr(Example, f) for f in CELL_FIELDS]).where(Example.study_id == study_id).distinct()
            return conn.execute(select(func.count()).select_from(cells.subquery())).scalar()

    def run_due_looks_of_examples(self, example_ids: list[int]) -> None:
        """:meth:`run_due_looks` for every cell of a sequential study among these examples' cells."""
        if not example_ids:
            return
        with self.read() as session:
            rows = session.execute(_CELLS_OF.where(Example.id.in_(sorted(set(example_ids))))).all()
        for row in rows:
            if study_rules(row.config, row.source).sequential:
                self.run_due_looks(row.study_id, {f: getattr(row, f) for f in CELL_FIELDS}, row.config, row.source)

    def cell_decided(self, study_id: int, cell: dict) -> bool:
        """Whether the cell is a decided cell of a sequential study (it takes no more labels)."""
        with self.engine.connect() as conn:
            state = conn.execute(STATE, {"study_id": study_id, **{f: cell[f] for f in CELL_FIELDS}}).first()
        return state is not None and is_decided(state.verdict)

    def sequential_cells(self, study_id: int) -> list[dict]:
        """The recorded state of every looked-at cell of a study: cell fields, look, verdict, labels
        (at the decision; None while undecided), decided_at."""
        query = (select(*[getattr(SequentialCell, f) for f in CELL_FIELDS], SequentialCell.look,
                        SequentialCell.verdict, SequentialCell.labels, SequentialCell.decided_at)
                 .where(SequentialCell.study_id == study_id))
        with self.read() as session:
            return [row._asdict() for row in session.execute(query)]

