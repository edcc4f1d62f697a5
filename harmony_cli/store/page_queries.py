"""Statements on the annotation page's hot path, built once with bind parameters.

Building a SQLAlchemy statement costs more Python time than SQLite takes to run it, and the
page runs these on every answer of every annotator, so they are built at import and only
executed with values (``Store.next_unlabeled``, ``Store.annotator_example``).
"""
from __future__ import annotations

from sqlalchemy import and_, bindparam, case, exists, func, or_, select
from sqlalchemy.orm import aliased

from ..cells import CELL_FIELDS
from ..designs import UNDECIDED
from .label_counts import REAL, real_label_count
from .models import Annotator, Example, Label, SequentialCell

_in_cell = [Example.study_id == bindparam("study_id"), *[getattr(Example, f) == bindparam(f) for f in CELL_FIELDS]]
_unanswered = ~exists().where(Label.annotator_id == bindparam("annotator_id"), Label.example_id == Example.id)

# Examples after the one with id :after in shown order (position, then id); with :after NULL, none is "after".
_after = aliased(Example)
_after_position = select(_after.position).where(_after.id == bindparam("after")).scalar_subquery()
_later = or_(Example.position > _after_position,
             and_(Example.position == _after_position, Example.id > bindparam("after")))

# params: annotator_id, study_id, dataset, metric, backbone, attribution, after
NEXT_UNLABELED = (
    select(Example.id)
    .where(*_in_cell, _unanswered)
    .order_by(case((_later, 0), else_=1), Example.position, Example.id)  # later ones first, then wrap around
    .limit(1)
)

# The example of the cell this annotator should label next: not answered by them, fewer than :quota labels,
# in a cell that is not decided (a sequential study's: sequential_cells.py), least-labelled first (so that
# every example reaches the quota), then as NEXT_UNLABELED.
# params: annotator_id, study_id, dataset, metric, backbone, attribution, after, quota
_label_count = real_label_count(Example.id)  # simulated labels never fill a real annotator's quota
_undecided = ~exists().where(SequentialCell.study_id == bindparam("study_id"),
                             *[getattr(SequentialCell, f) == bindparam(f) for f in CELL_FIELDS],
                             SequentialCell.verdict != UNDECIDED)
NEXT_TO_LABEL = (
    select(Example.id)
    .where(*_in_cell, _unanswered, _label_count < bindparam("quota"), _undecided)
    .order_by(_label_count, case((_later, 0), else_=1), Example.position, Example.id)
    .limit(1)
)

# How many examples of the outer example's cell the annotator answered.
_answered, _answered_example = aliased(Label), aliased(Example)
_done = (
    select(func.count(_answered.id))
    .join(_answered_example, _answered_example.id == _answered.example_id)
    .where(_answered.annotator_id == bindparam("annotator_id"), _answered_example.study_id == Example.study_id,
           *[getattr(_answered_example, f) == getattr(Example, f) for f in CELL_FIELDS])
    .scalar_subquery()
)

# params: annotator_id, example_id
ANNOTATOR_EXAMPLE = (
    select(*Example.__table__.c, Label.choice, _done.label("done"))
    .select_from(Example)
    .outerjoin(Label, and_(Label.example_id == Example.id, Label.annotator_id == bindparam("annotator_id")))
    .where(Example.id == bindparam("example_id"))
)


def example_progress(annotator_id: int, study_ids: list[int]):
    """Per example of the studies: study_id, its cell, ``labels`` (real annotators': the ones that count toward
    the quota) and ``mine`` (0/1)."""
    counts = (select(Label.example_id, func.count(Label.id).label("n"))
              .join(Example, Example.id == Label.example_id).join(Annotator, Annotator.id == Label.annotator_id)
              .where(Example.study_id.in_(study_ids), REAL)
              .group_by(Label.example_id).subquery())
    mine = select(Label.example_id).where(Label.annotator_id == annotator_id).subquery()
    return (select(Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS],
                   func.coalesce(counts.c.n, 0).label("labels"),
                   case((mine.c.example_id.is_(None), 0), else_=1).label("mine"))
            .outerjoin(counts, counts.c.example_id == Example.id)
            .outerjoin(mine, mine.c.example_id == Example.id)
            .where(Example.study_id.in_(study_ids)))
