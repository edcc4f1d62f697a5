"""Labels: the page's answer (one upsert + audit row), bulk imports, reading them back."""
from __future__ import annotations

from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..cells import CELL_FIELDS, CHOICES, SIDES
from .assignments import study_rules
from .db import StoreError
from .label_counts import real_label_count
from .models import ANY, Annotator, Assignment, Example, Label, LabelAudit, Study, utcnow
from .sequential_cells import STATE, LookCell, is_decided


class SessionEnded(StoreError):
    """The annotator's page session ended (account deactivated or password changed): log in again."""


class AnswerRefused(StoreError):
    """The study's rules refuse a page answer; nothing was stored."""


class CellClosed(AnswerRefused):
    """The study is closed to new labels, or the example's cell is not (any more) assigned to the annotator."""


class ExampleFull(AnswerRefused):
    """The example has its ``labels_per_example`` labels from other annotators already."""


def _upsert(dialect_insert):
    values = {c: bindparam(c) for c in ("annotator_id", "example_id", "choice", "left_map", "response_ms")}
    stmt = dialect_insert(Label).values(**values, created_at=bindparam("now"), updated_at=bindparam("now"))
    return stmt.on_conflict_do_update(
        index_elements=["annotator_id", "example_id"],
        set_=dict(choice=stmt.excluded.choice, left_map=stmt.excluded.left_map,
                  response_ms=stmt.excluded.response_ms, updated_at=stmt.excluded.updated_at))


# The answer's statements, built once (building costs more Python time than SQLite takes to run them).
_UPSERT = {"sqlite": _upsert(sqlite_insert), "postgresql": _upsert(pg_insert)}
_session_row = select(Annotator.active, Annotator.session_version).where(Annotator.id == bindparam("annotator_id"))
_SESSION = {"sqlite": _session_row, "postgresql": _session_row.with_for_update()}
_PAIR_LOCK = text("SELECT pg_advisory_xact_lock(CAST(:annotator_id AS integer), CAST(:example_id AS integer))")
# A page answer's rules in one query: the example's study settings, whether its cell is assigned to the
# annotator, the annotator's previous choice and the example's label count. On PostgreSQL the example
# is locked first, in its own statement (_LOCK_EXAMPLE), so that answers to it run one at a time and
# this query's snapshot, taken after the lock, counts every label committed before. NO KEY UPDATE:
# labels' foreign-key checks (KEY SHARE) on the example are not blocked by it.
_LOCK_EXAMPLE = select(Example.id).where(Example.id == bindparam("example_id")).with_for_update(key_share=True)
_assigned = select(Assignment.id).where(
    Assignment.annotator_id == bindparam("annotator_id"), Assignment.study_id == Example.study_id,
    *[getattr(Assignment, f).in_([ANY, getattr(Example, f)]) for f in CELL_FIELDS]).exists()
_simulated = select(Annotator.simulated).where(Annotator.id == bindparam("annotator_id")).scalar_subquery()
_RULES = (select(Study.config, Study.source, _assigned.label("assigned"),
                 select(Label.choice).where(Label.annotator_id == bindparam("annotator_id"),
                                            Label.example_id == Example.id).scalar_subquery().label("previous"),
                 real_label_count(Example.id).label("labels"), Example.study_id,
                 *[getattr(Example, f) for f in CELL_FIELDS], _simulated.label("simulated"))
          .select_from(Example).join(Study, Study.id == Example.study_id)
          .where(Example.id == bindparam("example_id")))
_PREVIOUS = select(Label.choice).where(Label.annotator_id == bindparam("annotator_id"),
                                       Label.example_id == bindparam("example_id"))
_AUDIT = insert(LabelAudit).values(
    annotator_id=bindparam("annotator_id"), example_id=bindparam("example_id"), choice=bindparam("choice"),
    previous_choice=bindparam("previous"), left_map=bindparam("left_map"), response_ms=bindparam("response_ms"),
    source=bindparam("source"), at=bindparam("now"))


class LabelsMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def answer(self, annotator_id: int, example_id: int, choice: str, left_map: str | None = None,
               response_ms: int | None = None, source: str = "page",
               session_version: int | None = None) -> LookCell | None:
        """Store an annotator's answer: one upsert of the (annotator, example) label plus its audit row.

        With ``session_version`` (the account's version when the page session logged in: a page
        answer), the same transaction first checks that the account is still active and its version
        unchanged (a deactivation or password change bumps it), else raises SessionEnded; then the
        study's rules (:meth:`_check_rules`), else raises CellClosed or ExampleFull. Either way
        nothing is stored. Answers without a session (scripts, tests) skip both checks.

        A page answer returns the cell when it is a new real label in a sequential study (else None): the
        page then does the cell's due looks (harmony_cli.analysis.looks.after_answer), after this transaction,
        so that a look never holds the write lock while it computes. Answers without a session return None (a
        script runs the looks with harmony_cli.analysis.looks.run_due_looks_of_examples).
        """
        if choice not in CHOICES:
            raise StoreError(f"choice must be one of {', '.join(CHOICES)}, not {choice!r}")
        if left_map is not None and left_map not in SIDES:
            raise StoreError(f"left_map must be one of {', '.join(SIDES)} or None, not {left_map!r}")
        now = utcnow()
        params = dict(annotator_id=annotator_id, example_id=example_id, choice=choice, left_map=left_map,
                      response_ms=response_ms, now=now, source=source)
        upsert = _UPSERT[self.dialect]
        try:
            with self.write_connection() as conn:
                if session_version is not None:
                    # FOR UPDATE (PostgreSQL): a deactivation committing meanwhile waits for this answer, or
                    # this answer sees it; SQLite's BEGIN IMMEDIATE already holds the whole database.
                    row = conn.execute(_SESSION[self.dialect], params).first()
                    if row is None or not row.active or row.session_version != session_version:
                        raise SessionEnded("your session has ended (the account was deactivated or its password "
                                           "changed): log in again")
                example = None
                if session_version is not None:
                    previous, example = self._check_rules(conn, params)  # locks the example (PostgreSQL)
                else:
                    if self.dialect == "postgresql":
                        # Serialize answers to the same pair so each audit row's previous_choice is exact
                        # (SQLite's BEGIN IMMEDIATE already serializes every writer).
                        conn.execute(_PAIR_LOCK, params)
                    previous = conn.execute(_PREVIOUS, params).scalar()
                conn.execute(upsert, params)
                conn.execute(_AUDIT, {**params, "previous": previous})
        except IntegrityError as exc:
            raise StoreError(f"cannot store the answer: no annotator {annotator_id} or no example {example_id} "
                             f"in this store") from exc
        if previous is not None or example is None:  # a changed answer, or no page session: no look here
            return None
        if example.simulated or not study_rules(example.config, example.source).sequential:
            return None
        return LookCell(example.study_id, {f: getattr(example, f) for f in CELL_FIELDS}, example.config or {},
                        example.source)

    def _check_rules(self, conn, params: dict) -> tuple[str | None, object]:
        """A page answer's study rules, inside its transaction: the study is open, the example's cell is
        assigned to the annotator, and a new label does not take the example past ``labels_per_example``
        (a change of the annotator's own label always may; simulated labels never count toward it), nor
        into a decided cell of a sequential study. Returns the annotator's previous choice and the rules' row."""
        if self.dialect == "postgresql":
            conn.execute(_LOCK_EXAMPLE, params)
        example = conn.execute(_RULES, params).first()
        if example is None:
            raise StoreError(f"cannot store the answer: no example {params['example_id']} in this store")
        rules = study_rules(example.config, example.source)
        if not rules.open:
            raise CellClosed("this study is closed to new labels")
        if not example.assigned:
            raise CellClosed("this cell is not assigned to you (any more)")
        previous = example.previous
        if previous is None and rules.sequential:
            state = conn.execute(STATE, {"study_id": example.study_id,
                                         **{f: getattr(example, f) for f in CELL_FIELDS}}).first()
            if state is not None and is_decided(state.verdict):
                raise CellClosed(f"this cell is decided ({state.verdict} at {state.labels} labels): it takes no "
                                 f"more labels")
        if previous is None and example.labels >= rules.labels_per_example:
            raise ExampleFull(f"this example has its {rules.labels_per_example} labels from other annotators "
                              f"already")
        return previous, example

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

    def label(self, annotator_id: int, example_id: int) -> Label | None:
        with self.read() as session:
            return session.scalar(select(Label).filter_by(annotator_id=annotator_id, example_id=example_id))

    def labels_frame(self, study: str | None = None):
        """Every label with its example's cell and scores, as a pandas DataFrame.

        Columns: study, example_id, dataset, metric, backbone, attribution,
        original_score, finetuned_score, annotator, simulated, admin, choice, left_map, response_ms.
        """
        import pandas as pd  # heavy: the store's package loads without it (`harmony --help`, `harmony studies`)

        query = (
            select(Study.name.label("study"), Example.id.label("example_id"),
                   *[getattr(Example, f) for f in CELL_FIELDS], Example.original_score, Example.finetuned_score,
                   Annotator.name.label("annotator"), Annotator.simulated, Annotator.is_admin.label("admin"),
                   Label.choice, Label.left_map,
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

