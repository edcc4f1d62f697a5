"""Studies and their examples: creating, bulk-adding, listing cells."""
from __future__ import annotations

from sqlalchemy import distinct, func, insert, select
from sqlalchemy.orm import Session

from ..cells import CELL_FIELDS
from .db import StoreError
from .models import Example, Label, Study, utcnow

COUNT_KEYS = ("examples", "labels", "annotators")
# The keys of a row of Store.cells: the study, the cell, its counts.
CELL_ROW_KEYS = ("study", *CELL_FIELDS, *COUNT_KEYS)


class StudiesMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def get_or_create_study(self, name: str, config: dict | None = None, image_dir: str | None = None,
                            source: str = "harmony") -> Study:
        with self.write() as session:
            study = session.scalar(select(Study).where(Study.name == name))
            if study is None:
                study = Study(name=name, config=config or {}, image_dir=image_dir, source=source)
                session.add(study)
                session.flush()
            return study

    def study(self, name: str) -> Study | None:
        """The study called ``name``, or None."""
        with self.read() as session:
            return session.scalar(select(Study).where(Study.name == name))

    def update_study_config(self, name: str, **values) -> dict:
        """Set keys of a study's settings (``Study.config``) in one transaction; the new settings.

        Study-level settings the page reads (``labels_per_example``, ``instructions``, ``open``)
        live here beside what the study was built with.
        """
        with self.write() as session:
            study = session.scalar(select(Study).where(Study.name == name).with_for_update())
            if study is None:
                raise StoreError(f"no study called {name!r}; `harmony studies` lists them")
            study.config = {**(study.config or {}), **values}  # a new dict: JSON columns track assignment
            return dict(study.config)

    def studies(self) -> list[Study]:
        with self.read() as session:
            return list(session.scalars(select(Study).order_by(Study.id)))

    def add_examples(self, study_id: int, rows: list[dict], session: Session | None = None) -> list[int]:
        """Insert many examples at once (one bulk insert); the id of each row, in order.

        A row whose study, cell and ``source_key`` exist already is left as it is (its id is returned). With ``session``, the work joins the caller's transaction.
        """
        if session is None:
            with self.write() as own:
                return self.add_examples(study_id, rows, session=own)
        key_fields = (*CELL_FIELDS, "source_key")

        def existing() -> dict[tuple, int]:
            query = select(Example.id, *[getattr(Example, f) for f in key_fields]).where(Example.study_id == study_id)
            return {tuple(row[1:]): row[0] for row in session.execute(query)}

        columns = [c.key for c in Example.__table__.columns if c.key != "id"]
        ids = existing()
        new, seen, now = [], set(), utcnow()
        for row in rows:
            unknown = set(row) - set(columns)
            if unknown:
                raise StoreError(f"examples have no field {', '.join(sorted(unknown))}; fields: {', '.join(columns)}")
            key = tuple(row[f] for f in key_fields)
            if key not in ids and key not in seen:
                seen.add(key)
                # every row with every column: one executemany needs the same keys in each row
                new.append({c: row.get(c) for c in columns} | {"position": row.get("position", 0),
                                                                "created_at": row.get("created_at", now),
                                                                "study_id": study_id})
        if new:
            session.execute(insert(Example.__table__), new)  # Core executemany: fast for thousands of rows
            ids = existing()
        return [ids[tuple(row[f] for f in key_fields)] for row in rows]

    def example_keys(self, study_id: int, cell: dict) -> set[str]:
        """``source_key`` of every example already in this study's cell."""
        with self.read() as session:
            return set(session.scalars(select(Example.source_key).filter_by(study_id=study_id, **cell)))

    def cells(self, study: str | None = None) -> list[dict]:
        """One row per study and cell: examples, labels, annotators with at least one label."""
        label_counts = (
            select(Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS],
                   func.count(Label.id).label("labels"),
                   func.count(distinct(Label.annotator_id)).label("annotators"))
            .join(Label, Label.example_id == Example.id)
            .group_by(Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS])
        ).subquery()
        example_counts = (
            select(Study.name.label("study"), Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS],
                   func.count(Example.id).label("examples"))
            .join(Study, Study.id == Example.study_id)
            .group_by(Study.name, Example.study_id, *[getattr(Example, f) for f in CELL_FIELDS])
        )
        if study is not None:
            example_counts = example_counts.where(Study.name == study)
        example_counts = example_counts.subquery()
        on = label_counts.c.study_id == example_counts.c.study_id
        for f in CELL_FIELDS:
            on = on & (getattr(label_counts.c, f) == getattr(example_counts.c, f))
        query = (
            select(example_counts.c.study, *[getattr(example_counts.c, f) for f in CELL_FIELDS],
                   example_counts.c.examples,
                   func.coalesce(label_counts.c.labels, 0), func.coalesce(label_counts.c.annotators, 0))
            .outerjoin(label_counts, on)
            .order_by(example_counts.c.study, *[getattr(example_counts.c, f) for f in CELL_FIELDS])
        )
        with self.read() as session:
            return [dict(zip(CELL_ROW_KEYS, row)) for row in session.execute(query)]

