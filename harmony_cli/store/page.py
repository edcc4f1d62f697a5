"""One annotator's view of a study, as the annotation page asks for it (hot path: prepared statements)."""
from __future__ import annotations

import secrets

from sqlalchemy import func, select

from . import page_queries
from .models import CELL_FIELDS, Example, Label, Meta, Study


class PageMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def annotator_cells(self, annotator_id: int, study: str | None = None) -> list[dict]:
        """One row per study and cell with this annotator's own progress.

        Keys: study, study_id, image_dir, dataset, metric, backbone, attribution, examples, done.
        """
        cell_columns = [getattr(Example, f) for f in CELL_FIELDS]
        mine = select(Label.example_id).where(Label.annotator_id == annotator_id).subquery()
        query = (
            select(Study.name, Study.id, Study.image_dir, *cell_columns, func.count(Example.id),
                   func.count(mine.c.example_id))
            .join(Study, Study.id == Example.study_id)
            .outerjoin(mine, mine.c.example_id == Example.id)
            .group_by(Study.id, Study.name, Study.image_dir, *cell_columns)
            .order_by(Study.id, *cell_columns)
        )
        if study is not None:
            query = query.where(Study.name == study)
        keys = ("study", "study_id", "image_dir", *CELL_FIELDS, "examples", "done")
        with self.read() as session:
            return [dict(zip(keys, row)) for row in session.execute(query)]

    def cell_example_ids(self, study_id: int, cell: dict) -> list[int]:
        """Ids of a cell's examples in the order they are shown (position, then id)."""
        where = {f: cell[f] for f in CELL_FIELDS}
        with self.read() as session:
            return list(session.scalars(select(Example.id).filter_by(study_id=study_id, **where)
                                        .order_by(Example.position, Example.id)))

    def count_answered(self, annotator_id: int, study_id: int, cell: dict) -> int:
        """How many examples of the cell this annotator has answered."""
        where = {f: cell[f] for f in CELL_FIELDS}
        query = (select(func.count(Label.id)).join(Example, Example.id == Label.example_id)
                 .where(Label.annotator_id == annotator_id).filter_by(study_id=study_id, **where))
        with self.read() as session:
            return session.scalar(query)

    def next_unlabeled(self, annotator_id: int, study_id: int, cell: dict, after: int | None = None) -> int | None:
        """The first example of the cell after example ``after`` (in shown order) that this annotator
        has not answered, wrapping around to the cell's start; None when every example is answered."""
        params = {"annotator_id": annotator_id, "study_id": study_id, "after": after,
                  **{f: cell[f] for f in CELL_FIELDS}}
        with self.engine.connect() as conn:
            return conn.execute(page_queries.NEXT_UNLABELED, params).scalar()

    def annotator_example(self, annotator_id: int, example_id: int):
        """An example as this annotator sees it, in one query: a row with the example's columns,
        ``choice`` (their answer, or None) and ``done`` (how many examples of its cell they answered);
        None when there is no such example."""
        with self.engine.connect() as conn:
            return conn.execute(page_queries.ANNOTATOR_EXAMPLE,
                                {"annotator_id": annotator_id, "example_id": example_id}).first()

    def secret(self, name: str) -> str:
        """A random server-side secret kept in the database under ``name``, made on first use.

        The page derives each annotator's left/right order from it, so the order is stable across
        sessions and page servers yet cannot be computed by someone who only knows the code.
        """
        key = f"secret.{name}"
        with self.read() as session:
            found = session.scalar(select(Meta.value).where(Meta.key == key))
        if found is not None:
            return found
        with self.write() as session:  # two servers starting at once: the first one's secret wins
            session.execute(self.insert(Meta).values(key=key, value=secrets.token_hex(32))
                            .on_conflict_do_nothing(index_elements=["key"]))
            return session.scalar(select(Meta.value).where(Meta.key == key))

