"""Who may label what: assignments of studies and cells to annotators, and a study's page rules
(open or closed to new labels, labels per example)."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..cells import CELL_FIELDS, CELL_KEYS, cell_text
from ..defaults import config_default
from .db import StoreError
from .models import ANY, Annotator, Assignment, Example, Study

@dataclass(frozen=True)
class StudyRules:
    """What the page may do in a study: take new labels at all (``open``), how many per example, and whether
    its cells stop once decided (``design`` sequential: see sequential_cells.py)."""

    open: bool
    labels_per_example: int
    design: str = "fixed"

    @property
    def sequential(self) -> bool:
        return self.design == "sequential"


def study_rules(config: dict | None, source: str | None) -> StudyRules:
    """A study's rules from its settings.

    ``open`` missing: open for studies harmony built, closed for imported (``legacy``) ones, whose
    labels are a finished study's. ``labels_per_example`` missing: conf/study's default. ``design``
    missing (a study built before designs, an imported one): fixed.
    """
    config = config or {}
    return StudyRules(open=bool(config.get("open", source != "legacy")),
                      labels_per_example=int(config.get("labels_per_example")
                                             or config_default("study.labels_per_example")),
                      design=str(config.get("design") or "fixed"))


def matches(assignment: dict, cell: dict) -> bool:
    """Whether an assignment row (cell fields, ANY for every value) covers ``cell``."""
    return all(assignment[f] in (ANY, cell[f]) for f in CELL_FIELDS)


def _cell_key(cell: dict) -> dict:
    """An assignment's cell fields from a user's cell dict (metric, backbone, attribution[, dataset])."""
    missing = [k for k in CELL_KEYS if not cell.get(k)]
    if missing:
        raise StoreError(f"a cell needs metric, backbone and attribution (missing {', '.join(missing)}): write it "
                         f"as metric/backbone/attribution")
    return {f: str(cell.get(f) or ANY) for f in CELL_FIELDS}


class AssignmentsMixin:
    """Part of :class:`harmony_cli.store.Store` (needs ``read``/``write`` from StoreBase)."""

    def _study_and_annotator(self, session: Session, annotator: str, study: str) -> tuple[int, int]:
        annotator_id = session.scalar(select(Annotator.id).where(Annotator.name == annotator))
        if annotator_id is None:
            raise StoreError(f"no annotator {annotator!r}: see `harmony annotators list`, or add it with "
                             f"`harmony annotators add {annotator}`")
        study_id = session.scalar(select(Study.id).where(Study.name == study))
        if study_id is None:
            raise StoreError(f"no study called {study!r}; `harmony studies` lists them")
        return annotator_id, study_id

    def _assignment_rows(self, session: Session, study_id: int, cells: list[dict] | None) -> list[dict]:
        """The assignment rows for ``cells`` (None: the whole study); an unknown cell is refused."""
        if cells is None:
            return [{f: ANY for f in CELL_FIELDS}]
        have = [dict(zip(CELL_FIELDS, row)) for row in session.execute(
            select(*[getattr(Example, f) for f in CELL_FIELDS]).where(Example.study_id == study_id).distinct())]
        rows = []
        for cell in cells:
            row = _cell_key(cell)
            if not any(matches(row, found) for found in have):
                known = ", ".join(sorted({cell_text(c) for c in have})[:6]) or "none"
                raise StoreError(f"the study has no cell {cell_text(row)}"
                                 f"{' in dataset ' + row['dataset'] if row['dataset'] else ''}: its cells are "
                                 f"{known} (metric/backbone/attribution)")
            rows.append(row)
        return rows

    def assign(self, annotator: str, study: str, cells: list[dict] | None = None) -> int:
        """Open a study (``cells`` None) or some of its cells to an annotator; how many assignments were new."""
        with self.write() as session:
            annotator_id, study_id = self._study_and_annotator(session, annotator, study)
            added = 0
            for row in self._assignment_rows(session, study_id, cells):
                added += len(session.execute(
                    self.insert(Assignment).values(annotator_id=annotator_id, study_id=study_id, **row)
                    .on_conflict_do_nothing(index_elements=["annotator_id", "study_id", *CELL_FIELDS])
                    .returning(Assignment.id)).all())
            return added

    def unassign(self, annotator: str, study: str, cells: list[dict] | None = None) -> int:
        """Close a study (``cells`` None: every assignment of the annotator in it) or some of its cells to
        an annotator; how many assignments were removed. Their labels stay."""
        with self.write() as session:
            annotator_id, study_id = self._study_and_annotator(session, annotator, study)
            mine = (Assignment.annotator_id == annotator_id) & (Assignment.study_id == study_id)
            if cells is None:
                return session.execute(delete(Assignment).where(mine)).rowcount
            whole = session.scalar(select(Assignment.id).where(mine, *[getattr(Assignment, f) == ANY
                                                                       for f in CELL_FIELDS]))
            if whole is not None:
                raise StoreError(f"{annotator} is assigned the whole study {study}: unassign the study, then "
                                 f"assign the cells {annotator} should keep")
            removed = 0
            for row in self._assignment_rows(session, study_id, cells):
                # the cell's assignments: in its dataset or every dataset (a cell given without one: any)
                datasets = [] if row["dataset"] == ANY else [Assignment.dataset.in_([ANY, row["dataset"]])]
                removed += session.execute(delete(Assignment).where(
                    mine, *datasets, *[getattr(Assignment, f) == row[f] for f in CELL_KEYS])).rowcount
            return removed

    def assignments(self, study: str | None = None) -> list[dict]:
        """Every assignment (of ``study``): annotator, study, dataset, metric, backbone, attribution
        (None fields: every value; all four None: the whole study)."""
        query = (select(Annotator.name, Study.name, *[getattr(Assignment, f) for f in CELL_FIELDS])
                 .join(Annotator, Annotator.id == Assignment.annotator_id)
                 .join(Study, Study.id == Assignment.study_id)
                 .order_by(Study.name, Annotator.name, *[getattr(Assignment, f) for f in (*CELL_KEYS, "dataset")]))
        if study is not None:
            query = query.where(Study.name == study)
        with self.read() as session:
            return [{"annotator": row[0], "study": row[1], **{f: (v or None) for f, v in zip(CELL_FIELDS, row[2:])}}
                    for row in session.execute(query)]

    def study_rules(self, study_id: int) -> StudyRules:
        with self.read() as session:
            row = session.execute(select(Study.config, Study.source).where(Study.id == study_id)).first()
        if row is None:
            raise StoreError(f"no study with id {study_id} in this store")
        return study_rules(*row)

    def cell_open_to(self, annotator_id: int, study_id: int, cell: dict) -> bool:
        """Whether the page takes this annotator's labels in the cell: the study is open and the cell assigned."""
        if not self.study_rules(study_id).open:
            return False
        with self.read() as session:
            assigned = [row._asdict() for row in session.execute(
                select(*[getattr(Assignment, f) for f in CELL_FIELDS])
                .where(Assignment.annotator_id == annotator_id, Assignment.study_id == study_id))]
        return any(matches(a, cell) for a in assigned)

    def cell_annotators(self, study_id: int, cell: dict) -> list[int]:
        """Ids of the annotators the cell is assigned to (directly or with its whole study), ascending."""
        with self.read() as session:
            rows = [row._asdict() for row in session.execute(
                select(Assignment.annotator_id, *[getattr(Assignment, f) for f in CELL_FIELDS])
                .where(Assignment.study_id == study_id))]
        return sorted({row["annotator_id"] for row in rows if matches(row, cell)})

    def study_open(self, name: str) -> bool:
        """Whether the page takes new labels in the study (its ``open`` setting; see :func:`study_rules`)."""
        study = self.study(name)
        if study is None:
            raise StoreError(f"no study called {name!r}; `harmony studies` lists them")
        return study_rules(study.config, study.source).open
