"""One annotator's view of a study, as the annotation page asks for it (hot path: prepared statements)."""
from __future__ import annotations

import secrets

from sqlalchemy import func, select

from ..cells import CELL_FIELDS
from ..designs import UNDECIDED
from . import page_queries
from .assignments import matches, study_rules
from .models import Assignment, Example, Label, Meta, SequentialCell, Study
from .sequential_cells import is_decided


def _design_keys(design: str, state) -> dict:
    """A cell's design keys for :meth:`PageMixin.annotator_cells` (``state``: its SequentialCell row or None)."""
    if design != "sequential":
        return dict(design=design, verdict=None, decided_labels=None, look=None, decided=False)
    verdict = UNDECIDED if state is None else state.verdict
    return dict(design=design, verdict=verdict, decided_labels=None if state is None else state.labels,
                look=0 if state is None else state.look, decided=is_decided(verdict))


class PageMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def annotator_cells(self, annotator_id: int, study: str | None = None) -> list[dict]:
        """One row per cell open to this annotator (assigned, in an open study), with progress.

        Keys: study, study_id, image_dir, dataset, metric, backbone, attribution, examples, done (the
        annotator's answers), labels_per_example, labels (real annotators': simulated labels never count
        toward the quota), needed (examples x labels_per_example), complete (every example has its labels),
        available (examples still taking a label from this annotator: not answered by them and not yet full),
        design (fixed | sequential), verdict (a sequential cell's recorded verdict: undecided until a look
        decides it; None in a fixed study), decided_labels (the labels it was decided at), look, decided
        (takes no more labels: available 0). Undecided cells come first.
        """
        with self.read() as session:
            assigned = [row._asdict() for row in session.execute(
                select(Assignment.study_id, *[getattr(Assignment, f) for f in CELL_FIELDS])
                .where(Assignment.annotator_id == annotator_id))]
            found = session.execute(select(Study.id, Study.name, Study.image_dir, Study.config, Study.source)
                                    .where(Study.id.in_({a["study_id"] for a in assigned}))).all()
            rules = {s.id: study_rules(s.config, s.source) for s in found if study is None or s.name == study}
            open_ids = sorted(i for i, r in rules.items() if r.open)
            rows = session.execute(page_queries.example_progress(annotator_id, open_ids)).all() if open_ids else []
            sequential = [i for i in open_ids if rules[i].sequential]
            states = {(row.study_id, *(getattr(row, f) for f in CELL_FIELDS)): row for row in session.execute(
                select(SequentialCell).where(SequentialCell.study_id.in_(sequential))).scalars()} if sequential else {}
        studies = {s.id: s for s in found}
        cells: dict[tuple, dict] = {}
        for row in rows:
            cell = {f: getattr(row, f) for f in CELL_FIELDS}
            if not any(a["study_id"] == row.study_id and matches(a, cell) for a in assigned):
                continue
            quota, s = rules[row.study_id].labels_per_example, studies[row.study_id]
            entry = cells.setdefault((row.study_id, *cell.values()), dict(
                study=s.name, study_id=s.id, image_dir=s.image_dir, **cell, examples=0, done=0,
                labels_per_example=quota, labels=0, needed=0, full=0, available=0,
                **_design_keys(rules[row.study_id].design, states.get((row.study_id, *cell.values())))))
            entry["examples"] += 1
            entry["done"] += row.mine
            entry["labels"] += row.labels
            entry["needed"] += quota
            entry["full"] += row.labels >= quota
            entry["available"] += not row.mine and row.labels < quota
        result = [cells[key] for key in sorted(cells, key=lambda key: (cells[key]["decided"], key))]
        for entry in result:
            entry["complete"] = entry.pop("full") == entry["examples"]
            if entry["decided"]:
                entry["available"] = 0
        return result

    def cell_example_ids(self, study_id: int, cell: dict) -> list[int]:
        """Ids of a cell's examples in the order they are shown (position, then id)."""
        where = {f: cell[f] for f in CELL_FIELDS}
        with self.read() as session:
            return list(session.scalars(select(Example.id).filter_by(study_id=study_id, **where)
                                        .order_by(Example.position, Example.id)))

    def next_to_label(self, annotator_id: int, study_id: int, cell: dict, quota: int,
                      after: int | None = None) -> int | None:
        """The example of the cell this annotator should label next: one they have not answered and that
        has fewer than ``quota`` labels, least-labelled first, then as :meth:`next_unlabeled`; None when
        the cell needs nothing more from them."""
        params = {"annotator_id": annotator_id, "study_id": study_id, "after": after, "quota": quota,
                  **{f: cell[f] for f in CELL_FIELDS}}
        with self.engine.connect() as conn:
            return conn.execute(page_queries.NEXT_TO_LABEL, params).scalar()

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

