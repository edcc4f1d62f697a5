"""The state of a sequential study's cells (``study.design: sequential``): their looks and decisions.

The looks themselves (the rule on a cell's labels) are harmony_cli/analysis/looks.py's; the store keeps what
they need and what they record. A cell's row holds its last look and, once a look decides it, the verdict
and the real labels it was made on. :meth:`SequentialMixin.record_look` is one guarded UPDATE (``look < k``
and still undecided), so that of two writers doing the same look, or a later one, exactly one records it,
and a decision is never overwritten. A decided cell (any verdict but undecided; ``inconclusive`` at the
last look) takes no more labels: the page's rules refuse them (labels.py) and its next-example query skips
the cell (page_queries.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..cells import CELL_FIELDS
from ..designs import UNDECIDED
from .assignments import study_rules
from .label_counts import REAL
from .models import Annotator, Example, Label, SequentialCell, Study, utcnow

# The state of one cell (params: study_id and the cell fields); the answer's rules read it.
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
_LOOK_COUNTS = select(_EXAMPLES.scalar_subquery().label("examples"), _REAL_COUNT.scalar_subquery().label("labels"),
                      STATE.with_only_columns(SequentialCell.look).scalar_subquery().label("look"),
                      STATE.with_only_columns(SequentialCell.verdict).scalar_subquery().label("verdict"))


def _record(dialect_insert):
    """The guarded upsert of a look (built once per dialect; values given when it runs)."""
    statement = dialect_insert(SequentialCell)
    return statement.on_conflict_do_update(
        index_elements=["study_id", *CELL_FIELDS],
        set_={k: getattr(statement.excluded, k) for k in ("look", "verdict", "labels", "decided_at")},
        where=(SequentialCell.look < statement.excluded.look) & (SequentialCell.verdict == UNDECIDED))


_RECORD = {"sqlite": _record(sqlite_insert), "postgresql": _record(pg_insert)}
_CELLS_OF = (select(Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS], Study.config, Study.source)
             .join(Study, Study.id == Example.study_id).distinct())


def is_decided(verdict: str | None) -> bool:
    return verdict is not None and verdict != UNDECIDED


@dataclass(frozen=True)
class LookCell:
    """A cell of a sequential study that has just been given a new real label: where a look may be due."""

    study_id: int
    cell: dict
    config: dict
    source: str | None


class SequentialMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def look_counts(self, study_id: int, cell: dict) -> tuple[int, int, int, str]:
        """The cell's examples, real labels, last look done and verdict (0 and undecided before its first look):
        one prepared statement, run after every new real label of a sequential study."""
        with self.engine.connect() as conn:
            row = conn.execute(_LOOK_COUNTS, {"study_id": study_id, **{f: cell[f] for f in CELL_FIELDS}}).one()
        return row.examples, row.labels, row.look or 0, row.verdict or UNDECIDED

    def cell_real_labels(self, study_id: int, cell: dict) -> list:
        """The cell's real labels in the order they were stored: rows of example_id, annotator_id, choice."""
        with self.engine.connect() as conn:
            return conn.execute(_REAL_LABELS, {"study_id": study_id, **{f: cell[f] for f in CELL_FIELDS}}).all()

    def record_look(self, study_id: int, cell: dict, look: int, verdict: str, labels: int | None) -> bool:
        """Record look ``look`` of the cell with its verdict (and, when it decides, the labels it used), unless
        that look or a later one is recorded or the cell is decided; whether this call recorded it. One
        statement: the cell's row is made by its first look, and later looks update it only where
        ``look < :look`` and it is undecided (so two writers never both record a look)."""
        decided = is_decided(verdict)
        values = {"study_id": study_id, **{f: cell[f] for f in CELL_FIELDS}, "look": look, "verdict": verdict,
                  "labels": labels if decided else None, "decided_at": utcnow() if decided else None}
        with self.write_connection() as conn:
            return bool(conn.execute(_RECORD[self.dialect], values).rowcount)

    def study_cell_count(self, study_id: int) -> int:
        """The study's number of cells."""
        cells = select(*[getattr(Example, f) for f in CELL_FIELDS]).where(Example.study_id == study_id).distinct()
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(cells.subquery())).scalar()

    def look_cells_of(self, example_ids: list[int]) -> list[LookCell]:
        """The cells of these examples that belong to sequential studies."""
        with self.read() as session:
            rows = session.execute(_CELLS_OF.where(Example.id.in_(sorted(set(example_ids))))).all()
        return [LookCell(row.study_id, {f: getattr(row, f) for f in CELL_FIELDS}, row.config or {}, row.source)
                for row in rows if study_rules(row.config, row.source).sequential]

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
