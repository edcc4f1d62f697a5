"""The store's operations. Every write is one transaction."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, distinct, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import page_queries
from .db import StoreError, check_schema, make_engine, precheck, resolve_db_url
from .models import CELL_FIELDS, CHOICES, SIDES, Annotator, Example, Label, LabelAudit, Meta, Study, utcnow
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
        precheck(url, create=create)  # a foreign SQLite file is refused before anything writes to it
        engine = make_engine(url)
        try:
            check_schema(engine, url, create=create)
        except BaseException:
            engine.dispose()
            raise
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

    def add_examples(self, study_id: int, rows: list[dict], session: Session | None = None) -> list[int]:
        """Insert many examples at once (one bulk insert); the id of each row, in order.

        Like :meth:`add_example`, a row whose study, cell and ``source_key`` exist already is left as it is
        (its id is returned). With ``session``, the work joins the caller's transaction.
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

    def add_labels(self, rows: list[dict], source: str = "import", session: Session | None = None) -> dict:
        """Insert many labels at once, each with its audit row; existing labels are left as they are.

        ``rows``: dicts with annotator_id, example_id, choice and optionally left_map, response_ms
        (a pair given twice: the last row counts). Meant for imports and simulations, where re-running
        must not overwrite answers given since. Returns counts ``added``, ``kept`` (the pair had a label)
        and ``kept_different`` (of those, with another choice than the row's).
        """
        if session is None:
            with self.write() as own:
                return self.add_labels(rows, source=source, session=own)
        latest: dict[tuple[int, int], dict] = {}
        for row in rows:
            if row["choice"] not in CHOICES:
                raise StoreError(f"choice must be one of {', '.join(CHOICES)}, not {row['choice']!r}")
            if row.get("left_map") is not None and row["left_map"] not in SIDES:
                raise StoreError(f"left_map must be one of {', '.join(SIDES)} or None, not {row['left_map']!r}")
            latest[(row["annotator_id"], row["example_id"])] = row
        annotator_ids = sorted({a for a, _ in latest})
        have: dict[tuple[int, int], str] = {}
        for start in range(0, len(annotator_ids), 500):  # stay under the bound-parameter limits
            query = select(Label.annotator_id, Label.example_id, Label.choice).where(
                Label.annotator_id.in_(annotator_ids[start:start + 500]))
            have.update({(a, e): c for a, e, c in session.execute(query)})
        now = utcnow()
        labels, audit = [], []
        kept_different = 0
        for (annotator_id, example_id), row in latest.items():
            if (annotator_id, example_id) in have:
                kept_different += have[(annotator_id, example_id)] != row["choice"]
                continue
            values = dict(annotator_id=annotator_id, example_id=example_id, choice=row["choice"],
                          left_map=row.get("left_map"), response_ms=row.get("response_ms"))
            labels.append({**values, "created_at": now, "updated_at": now})
            audit.append({**values, "previous_choice": None, "source": source, "at": now})
        try:
            if labels:
                session.execute(insert(Label.__table__), labels)  # Core executemany: fast for thousands of rows
                session.execute(insert(LabelAudit.__table__), audit)
        except IntegrityError as exc:
            raise StoreError("cannot add the labels: an annotator or example is missing, or labels changed "
                             "meanwhile: run it again") from exc
        return {"added": len(labels), "kept": len(latest) - len(labels), "kept_different": kept_different}

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
        if not password:
            raise StoreError("a password cannot be empty")
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
        try:
            with self.write() as session:
                if self.engine.dialect.name == "postgresql":
                    # Serialize answers to the same pair so each audit row's previous_choice is exact
                    # (SQLite's BEGIN IMMEDIATE already serializes every writer).
                    session.execute(text("SELECT pg_advisory_xact_lock(CAST(:a AS integer), CAST(:e AS integer))"),
                                    {"a": annotator_id, "e": example_id})
                previous = session.scalar(select(Label.choice).filter_by(annotator_id=annotator_id,
                                                                         example_id=example_id))
                session.execute(stmt)
                session.add(LabelAudit(annotator_id=annotator_id, example_id=example_id, choice=choice,
                                       previous_choice=previous, left_map=left_map, response_ms=response_ms,
                                       source=source, at=now))
        except IntegrityError as exc:
            raise StoreError(f"cannot store the answer: no annotator {annotator_id} or no example {example_id} "
                             f"in this store") from exc

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

    # one annotator's view of the study (the annotation page) ----------------------------

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
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        with self.write() as session:  # two servers starting at once: the first one's secret wins
            session.execute(dialect_insert(Meta).values(key=key, value=secrets.token_hex(32))
                            .on_conflict_do_nothing(index_elements=["key"]))
            return session.scalar(select(Meta.value).where(Meta.key == key))


__all__ = ["Store", "StoreError"]
