"""The analysis of one study of a store: ``harmony analyze``'s report and the dashboard's verdicts.

Both run :func:`analyze_study_labels`, so the page's verdicts follow the same pre-registered rule,
the same metric directions and the same Holm family as the report.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import select

from ..errors import UserError
from ..store import study_rules
from ..store.db import shown_url
from ..store.models import Annotator, Example, Label, Study
from .completeness import note_incomplete
from .decisions import add_decisions
from .encoding import select_label_source
from .pipeline import analyze_labels
from .settings import AnalysisSettings


def pick_study(store, name: str | None):
    """The study called ``name``, else the newest one (latest created); UserError when there is none."""
    studies = store.studies()
    where = shown_url(store.url)
    if not studies:
        raise UserError(f"no studies in {where}: build one (harmony build-dataset) or import one "
                        f"(harmony import-legacy PATH), or give --db the right database")
    if name is None:
        return max(studies, key=lambda s: (s.created_at.replace(tzinfo=None) if s.created_at else datetime.min, s.id))
    for study in studies:
        if study.name == name:
            return study
    known = ", ".join(s.name for s in studies[:5]) + (", ..." if len(studies) > 5 else "")
    raise UserError(f"no study named {name!r} in {where} (it has: {known}): see `harmony studies`")


def study_directions(study) -> dict[str, bool]:
    """metric -> higher_is_better as the study recorded it (``study.config["higher_is_better"]``)."""
    recorded = (study.config or {}).get("higher_is_better") or {}
    return {str(k): bool(v) for k, v in recorded.items()} if isinstance(recorded, dict) else {}


def analyze_study_labels(labels: pd.DataFrame, cells, settings: AnalysisSettings, directions: dict[str, bool],
                         per_example: int) -> dict:
    """The analysis of one label source of a study (``cells``: its cells, a frame or a list of dicts),
    cells short of ``per_example`` labels per example noted."""
    frame = pd.DataFrame(cells)
    return note_incomplete(analyze_labels(labels, settings, cells=frame, higher_is_better=directions), labels,
                           frame, per_example)


def exclude_annotators(labels: pd.DataFrame, names: list[str] | tuple[str, ...], study: str) -> pd.DataFrame:
    """``labels`` without the labels of the annotators ``names``; UserError for a name without labels in the study."""
    known = set(labels["annotator"].astype(str))
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(sorted(known)[:8]) + (", ..." if len(known) > 8 else "")
        raise UserError(f"--exclude-annotator {unknown[0]!r}: no such annotator has labels in study {study!r} "
                        f"(it has: {listed})")
    return labels[~labels["annotator"].astype(str).isin(set(names))].reset_index(drop=True)


def given_order(store, study: str, labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` (the rows of ``store.labels_frame(study)``, in label id order) with each label's ``label_id``
    and ``created_at`` (UTC), sorted in the order the labels were given: created_at, then label id."""
    query = (select(Label.id.label("label_id"), Label.created_at)  # the rows and order of labels_frame
             .join(Example, Example.id == Label.example_id).join(Study, Study.id == Example.study_id)
             .join(Annotator, Annotator.id == Label.annotator_id).where(Study.name == study).order_by(Label.id))
    with store.read() as session:
        times = pd.DataFrame(session.execute(query).all(), columns=["label_id", "created_at"])
    if len(times) != len(labels):
        raise UserError(f"the labels of study {study!r} changed while they were read: run it again")
    ordered = labels.assign(label_id=times["label_id"].to_numpy(),
                            created_at=pd.to_datetime(times["created_at"], utc=True).to_numpy())
    return ordered.sort_values(["created_at", "label_id"], kind="stable").reset_index(drop=True)


def study_labels(store, study_name: str | None = None, simulated: bool | None = None,
                 exclude: list[str] | tuple[str, ...] = (), in_given_order: bool = False):
    """(study, cells frame, all its labels, the chosen labels, "real" | "simulated") of one study of ``store``:
    the labels ``harmony analyze`` analyzes (real or simulated, never both; ``exclude``: annotators left out).
    in_given_order: the labels carry label_id and created_at and come in the order they were given."""
    study = pick_study(store, study_name)
    cells = pd.DataFrame(store.cells(study.name))
    if cells.empty:
        raise UserError(f"study {study.name!r} has no examples: build it with harmony build-dataset or "
                        f"harmony import-legacy")
    labels = store.labels_frame(study.name)
    if in_given_order and not labels.empty:
        labels = given_order(store, study.name, labels)
    if labels.empty:
        raise UserError(f"study {study.name!r} has no labels yet: annotate it (harmony serve) or "
                        f"simulate annotators (harmony simulate-annotators)")
    labels = exclude_annotators(labels, exclude, study.name)
    if labels.empty:
        raise UserError(f"study {study.name!r} has no labels once {', '.join(exclude)} are excluded: exclude fewer "
                        f"annotators")
    chosen, source = select_label_source(labels, simulated, study=f"study {study.name!r}")
    return study, cells, labels, chosen, source


def planned_labels_per_example(study, exclude: list[str] | tuple[str, ...] = ()) -> int:
    """Labels each example is planned to get, less one per excluded annotator (who is missing from every example
    they labelled), at least 1."""
    return max(study_rules(study.config, study.source).labels_per_example - len(exclude), 1)


def study_report(store, study_name: str | None = None, settings: AnalysisSettings | None = None,
                 simulated: bool | None = None, exclude: list[str] | tuple[str, ...] = ()) -> dict:
    """The analysis of one study of ``store`` as JSON-ready data, with the study's metadata.

    exclude: annotators whose labels are left out (``--exclude-annotator``), recorded in the report."""
    study, cells, labels, chosen, source = study_labels(store, study_name, simulated, exclude)
    analysis = analyze_study_labels(chosen, cells, settings or AnalysisSettings.defaults(), study_directions(study),
                                    planned_labels_per_example(study, exclude))
    report = {"study": study.name, "study_source": study.source, "database": shown_url(store.url),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "label_source": source,
              "labels_left_out": int(len(labels) - len(chosen)), "excluded_annotators": list(exclude), **analysis}
    return add_decisions(report, store, study, cells.to_dict("records"))  # a sequential study's recorded decisions
