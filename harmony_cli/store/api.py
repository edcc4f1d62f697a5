"""The store's operations. Every write is one transaction."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, distinct, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from .db import StoreError, check_schema, make_engine, resolve_db_url
from .models import CELL_FIELDS, CHOICES, SIDES, Annotator, Example, Label, LabelAudit, Study, utcnow
from .passwords import hash_password, verify_password


class Store:
    """A study store at a database URL (``--db``, ``HARMONY_DB_URL`` or the default SQLite file)."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        # Writers take SQLite's write lock up front (BEGIN IMMEDIATE); ignored elsewhere.
        self._write_engine = engine.execution_options(sqlite_begin="IMMEDIATE")

    @classmethod
    def open(cls, db: str | None = None, create: bool = True) -> "Store":
        """Open (and, when ``create``, initialise) the store; raises StoreError with one line."""
        url = resolve_db_url(db)
        engine = make_engine(url)
        check_schema(engine, url, create=create)
        return cls(engine, url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or not at all."""
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    # studies and examples -------------------------------------------------------------

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
        with self.read() as session:
            return session.scalar(select(Study).where(Study.name == name))

    def studies(self) -> list[Study]:
        with self.read() as session:
            return list(session.scalars(select(Study).order_by(Study.id)))

    def add_example(self, study_id: int, **fields: Any) -> int:
        """Insert an example unless one with the same study, cell and ``source_key`` exists; its id."""
        key = {f: fields[f] for f in (*CELL_FIELDS, "source_key")}
        with self.write() as session:
            found = session.scalar(select(Example.id).filter_by(study_id=study_id, **key))
            if found is not None:
                return found
            example = Example(study_id=study_id, **fields)
            session.add(example)
            session.flush()
            return example.id

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
        keys = ("study", *CELL_FIELDS, "examples", "labels", "annotators")
        with self.read() as session:
            return [dict(zip(keys, row)) for row in session.execute(query)]

    # annotators ----------------------------------------------------------------------

    def add_annotator(self, name: str, password: str | None, admin: bool = False, active: bool = True,
                      simulated: bool = False) -> Annotator:
        """Create an annotator; ``password=None`` makes an account that cannot log in."""
        if not name or not name.strip():
            raise StoreError("an annotator needs a non-empty name")
        with self.write() as session:
            if session.scalar(select(Annotator.id).where(Annotator.name == name)) is not None:
                raise StoreError(f"annotator {name!r} exists already: use `harmony annotators set-password {name}`")
            annotator = Annotator(name=name, password_hash=hash_password(password) if password else None,
                                  is_admin=admin, active=active, simulated=simulated)
            session.add(annotator)
            session.flush()
            return annotator

    def annotator(self, name: str) -> Annotator | None:
        with self.read() as session:
            return session.scalar(select(Annotator).where(Annotator.name == name))

    def annotators(self) -> list[Annotator]:
        with self.read() as session:
            return list(session.scalars(select(Annotator).order_by(Annotator.name)))

    def set_password(self, name: str, password: str) -> None:
        with self.write() as session:
            annotator = session.scalar(select(Annotator).where(Annotator.name == name))
            if annotator is None:
                raise StoreError(f"no annotator {name!r}: see `harmony annotators list`")
            annotator.password_hash = hash_password(password)

    def set_active(self, name: str, active: bool) -> None:
        with self.write() as session:
            annotator = session.scalar(select(Annotator).where(Annotator.name == name))
            if annotator is None:
                raise StoreError(f"no annotator {name!r}: see `harmony annotators list`")
            annotator.active = active

    def authenticate(self, name: str, password: str) -> Annotator | None:
        """The active annotator with this name and password, else None (no hint which was wrong)."""
        annotator = self.annotator(name)
        ok = verify_password(annotator.password_hash if annotator else None, password)
        return annotator if ok and annotator is not None and annotator.active else None

    # labels --------------------------------------------------------------------------

    def answer(self, annotator_id: int, example_id: int, choice: str, left_map: str | None = None,
               response_ms: int | None = None, source: str = "page") -> None:
        """Store an annotator's answer: one upsert of the (annotator, example) label plus its audit row."""
        if choice not in CHOICES:
            raise StoreError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
        if left_map is not None and left_map not in SIDES:
            raise StoreError(f"left_map must be one of {', '.join(SIDES)} or None, not {left_map!r}")
        now = utcnow()
        values = dict(annotator_id=annotator_id, example_id=example_id, choice=choice, left_map=left_map,
                      response_ms=response_ms, created_at=now, updated_at=now)
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(Label).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["annotator_id", "example_id"],
            set_=dict(choice=stmt.excluded.choice, left_map=stmt.excluded.left_map,
                      response_ms=stmt.excluded.response_ms, updated_at=stmt.excluded.updated_at),
        )
        with self.write() as session:
            previous = session.scalar(select(Label.choice).filter_by(annotator_id=annotator_id, example_id=example_id))
            session.execute(stmt)
            session.add(LabelAudit(annotator_id=annotator_id, example_id=example_id, choice=choice,
                                   previous_choice=previous, left_map=left_map, response_ms=response_ms,
                                   source=source, at=now))

    def label(self, annotator_id: int, example_id: int) -> Label | None:
        with self.read() as session:
            return session.scalar(select(Label).filter_by(annotator_id=annotator_id, example_id=example_id))

    def labels_frame(self, study: str | None = None):
        """Every label with its example's cell and scores, as a pandas DataFrame.

        Columns: study, example_id, dataset, metric, backbone, attribution,
        original_score, finetuned_score, annotator, simulated, choice, left_map, response_ms.
        """
        import pandas as pd

        query = (
            select(Study.name.label("study"), Example.id.label("example_id"),
                   *[getattr(Example, f) for f in CELL_FIELDS], Example.original_score, Example.finetuned_score,
                   Annotator.name.label("annotator"), Annotator.simulated, Label.choice, Label.left_map,
                   Label.response_ms)
            .join(Example, Example.id == Label.example_id)
            .join(Study, Study.id == Example.study_id)
            .join(Annotator, Annotator.id == Label.annotator_id)
            .order_by(Label.id)
        )
        if study is not None:
            query = query.where(Study.name == study)
        with self.engine.connect() as conn:
            return pd.read_sql(query, conn)


__all__ = ["Store", "StoreError"]
