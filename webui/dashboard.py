"""The admin dashboard: where each study stands, and the accounts (admin accounts only).

Admins land on it after login (``?view=dashboard``, the default for them) and switch to their own
annotation cells with "Annotate" (``?view=annotate``). Every run re-reads the logged-in account from
the store: a non-admin (or an admin demoted or deactivated meanwhile) never gets the dashboard, and a
request for it (the URL's ``view=dashboard``) is refused with a message. The figures come from
harmony_cli.analysis.progress; the verdicts from ``harmony analyze``'s analysis
(``harmony_cli.analysis.study.analyze_study_labels`` with the study's metric directions and the settings
of ``conf/analysis``: the same pre-registered rule and Holm family).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st
from hydra.utils import instantiate

from harmony_cli.analysis import AnalysisSettings, select_label_source
from harmony_cli.analysis.decisions import FIXED_NOTE, decision_text, recorded_decisions
from harmony_cli.analysis.progress import annotator_progress, left_choice, open_examples, study_overview
from harmony_cli.analysis.study import analyze_study_labels, pick_study, study_directions
from harmony_cli.cells import CELL_FIELDS, cell_text
from harmony_cli.errors import UserError
from harmony_cli.hydra_app import compose_config
from harmony_cli.store import Store, study_rules
from webui import admin_accounts

VIEW_KEY = "view"  # query parameter: "dashboard" | "annotate"
REFUSED = "The dashboard is for admin accounts only."
ALL_CELLS = "All cells"
CELL_SEPARATOR = " · "  # between a cell's fields wherever the page names a cell


# figures (no Streamlit) ---------------------------------------------------------------------

@dataclass
class StudyFigures:
    """What the dashboard shows for one study (see harmony_cli.analysis.progress for each figure)."""

    study: str
    per_example: int          # labels_per_example (harmony_cli.store.study_rules)
    open: bool                # the study takes new labels
    assignments: list[dict]   # Store.assignments rows of the study
    label_source: str | None  # "real" | "simulated" (never both, as in harmony analyze); None: no labels
    labels: pd.DataFrame      # the labels of that source
    cells: list[dict]         # study_overview rows
    notes: list[str] = field(default_factory=list)
    real_labels: int = 0      # all the study's labels, shown apart: only real ones count toward the quota
    simulated_labels: int = 0
    decisions: list[dict] | None = None  # a sequential study's recorded decision per cell (None: fixed design)


def study_figures(store: Store, name: str, settings,
                  analysis: Callable[..., dict] = analyze_study_labels) -> StudyFigures:
    """The figures of study ``name`` with the analysis ``settings`` (an AnalysisSettings); ``analysis``:
    :func:`analyze_study_labels` or a cached stand-in with its signature."""
    study = store.study(name)
    rules = study_rules(study.config, study.source)
    cells = store.cells(name)
    labels = store.labels_frame(name)
    simulated = int(labels["simulated"].fillna(False).astype(bool).sum()) if len(labels) else 0
    real = len(labels) - simulated
    source, report, notes = None, None, []
    if len(labels):
        chosen, source = select_label_source(labels, study=f"study {name!r}")
        report = analysis(chosen, cells, settings, study_directions(study), rules.labels_per_example)
        notes = list(report["notes"])
        if len(chosen) < len(labels):
            notes.insert(0, f"{len(labels) - len(chosen)} {'real' if source == 'simulated' else 'simulated'} "
                            f"labels left out (real and simulated labels are never mixed)")
        labels = chosen
    rows = study_overview(labels, cells, rules.labels_per_example, report, settings.confidence)
    return StudyFigures(name, rules.labels_per_example, rules.open, store.assignments(name), source, labels, rows,
                        notes, real_labels=real, simulated_labels=simulated,
                        decisions=recorded_decisions(store, study, rows))


def _number(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _share(share, interval) -> str:
    if share is None:
        return "–"
    return f"{share:.0%} [{interval[0]:.0%}, {interval[1]:.0%}]"


def cell_names(figures: StudyFigures) -> list[str]:
    """The cells' names as shown (with the dataset only when the study has several)."""
    several = len({c["dataset"] for c in figures.cells}) > 1
    return [cell_text(c, several, CELL_SEPARATOR) for c in figures.cells]


def cells_table(figures: StudyFigures) -> pd.DataFrame:
    """One line per cell, as shown. A sequential study's verdict is the decision its looks recorded (the one
    that holds however often it is looked at); a fixed study's is the rule's on the labels so far."""
    table = _fixed_cells_table(figures)
    if figures.decisions is not None:
        table["verdict"] = [decision_text(d) for d in figures.decisions]
        table = table.drop(columns="for these annotators", errors="ignore")
    return table


def _fixed_cells_table(figures: StudyFigures) -> pd.DataFrame:
    return pd.DataFrame([{
        "cell": name, "examples": c["examples"], "labels": c["labels"],
        "progress": f"{c['counted']} / {c['needed']} ({c['progress']:.0%})",
        "Fleiss κ": _number(c["fleiss_kappa"]), "Krippendorff α": _number(c["krippendorff_alpha"]),
        "chose left": _share(c["left_share"], c["left_interval"]),
        "verdict": (c["verdict"] or "–") + (" †" if c["neither_dominant"] else "")
                   + (f" ({c['people_caveat']})" if c.get("people_caveat") else "")
                   + (f" ({c['caveat']})" if c["caveat"] else ""),
        "for these annotators": c.get("verdict_these_annotators") or "–",
    } for name, c in zip(cell_names(figures), figures.cells)])


def annotators_table(figures: StudyFigures, scope: str) -> pd.DataFrame:
    """One line per annotator with labels in ``scope`` (a cell's name, or ALL_CELLS)."""
    cells = [c for name, c in zip(cell_names(figures), figures.cells) if scope in (ALL_CELLS, name)]
    labels = figures.labels
    if scope != ALL_CELLS and len(labels):
        [cell] = cells
        labels = labels[(labels[list(CELL_FIELDS)].astype(str) == pd.Series({f: str(cell[f]) for f in CELL_FIELDS})
                         ).all(axis=1)]
    scoped = [{**c, "study": figures.study} for c in cells]
    rows = annotator_progress(labels, sum(c["examples"] for c in cells), open_examples(figures.assignments, scoped))
    return pd.DataFrame([{
        "annotator": r["annotator"], "labels": r["labels"], "cells": r["cells"],
        "of the examples": "not assigned" if r["examples"] is None else (
            "–" if r["progress"] is None else f"{r['progress']:.0%} of {r['examples']}"),
        "median s / answer": _number(r["median_seconds"], 1),
    } for r in rows], columns=["annotator", "labels", "cells", "of the examples", "median s / answer"])


# page ---------------------------------------------------------------------------------------

@st.cache_resource(show_spinner=False)
def analysis_settings():
    """``harmony analyze``'s settings (conf/analysis, no overrides): the dashboard's verdicts use the same rule."""
    return instantiate(compose_config([], task="analyze").analysis.settings)


@st.cache_data(show_spinner=False, max_entries=8)
def _cached_analysis(_labels: pd.DataFrame, cells: str, settings: str, directions: str, per_example: int,
                     fingerprint: int) -> dict:
    return analyze_study_labels(_labels, json.loads(cells), AnalysisSettings(**json.loads(settings)),
                                json.loads(directions), per_example)


def cached_analysis(labels: pd.DataFrame, cells: list[dict], settings, directions: dict[str, bool],
                    per_example: int) -> dict:
    """:func:`analyze_study_labels`, computed again only when the labels (their full content), cells, settings or
    metric directions change: every click on the dashboard reruns the page."""
    fingerprint = int(pd.util.hash_pandas_object(labels, index=False).sum())
    return _cached_analysis(labels, json.dumps(cells, sort_keys=True, default=str),
                            json.dumps(settings.to_dict(), sort_keys=True), json.dumps(directions, sort_keys=True),
                            per_example, fingerprint)


def is_admin(store: Store) -> bool:
    """Whether the logged-in account is an active admin now (read from the store on every run)."""
    annotator = store.annotator_by_id(st.session_state.annotator_id)
    return annotator is not None and annotator.is_admin and annotator.active and not annotator.simulated


def set_view(view: str) -> None:
    st.session_state.pop("cursor", None)  # leave the annotation cell, if any
    st.query_params[VIEW_KEY] = view


def show(store: Store) -> bool:
    """The hook in webui/app.py, after login: whether the dashboard took the page (admins only).

    Non-admins asking for it get REFUSED and their own cells. Nothing here runs in a widget callback:
    account changes happen in this function's run, after the admin check.
    """
    wanted = st.query_params.get(VIEW_KEY)
    if not is_admin(store):
        if wanted == "dashboard":
            del st.query_params[VIEW_KEY]
            st.error(REFUSED)
        return False
    if wanted == "annotate":
        st.button("Dashboard", key="header-dashboard", on_click=set_view, args=("dashboard",))
        return False
    st.button("Annotate", key="dashboard-annotate", on_click=set_view, args=("annotate",))
    dashboard(store)
    return True


def dashboard(store: Store) -> None:
    st.title("Dashboard")
    studies = [s.name for s in store.studies()]
    name = None
    if studies:
        name = st.selectbox("Study", studies, index=studies.index(pick_study(store, None).name), key="dashboard-study")
    progress_tab, accounts_tab, assign_tab = st.tabs(["Progress", "Accounts", "Assignments"])
    with accounts_tab:  # the forms first (each tab keeps its place): the progress shows their changes
        admin_accounts.accounts_panel(store)
    with assign_tab:
        if name is not None:
            admin_accounts.assignments_panel(store, name)
    with progress_tab:
        if name is None:
            st.info("No study yet: build one (harmony build-dataset) or import one (harmony import-legacy).")
        else:
            progress_panel(store, name)


def progress_panel(store: Store, name: str) -> None:
    settings = analysis_settings()
    try:
        figures = study_figures(store, name, settings, cached_analysis)
    except UserError as exc:
        st.error(str(exc))
        return
    source = f"figures of the {figures.label_source} labels" if figures.label_source else "no labels yet"
    if figures.label_source:
        source += f" · {figures.real_labels} real labels · {figures.simulated_labels} simulated labels"
        if figures.simulated_labels:
            source += " (never counted toward the labels per example that real annotators fill)"
    state = "open to new labels" if figures.open else f"closed to new labels (`harmony studies open {name}`)"
    rule = ("verdicts by the rule of `harmony analyze` (so far; † Neither dominant)" if figures.decisions is None
            else "verdicts by the sequential rule, as its looks recorded them")
    st.caption(f"{source} · {figures.per_example} labels per example · {state} · {rule}; verdict for "
               f"{settings.generalize.replace('_', ' ')} ('for people' treats the annotators as a sample of people, "
               f"'for these annotators' does not)")
    if figures.decisions is None:
        st.caption(f"Note: {FIXED_NOTE}.")
    else:
        st.caption("Sequential design: each verdict is the one a look recorded when it decided the cell (the cell "
                   "then takes no more labels), or the look the cell has reached.")
    st.table(cells_table(figures), hide_index=True)
    bias = left_choice(figures.labels, settings.confidence) if len(figures.labels) else None
    if bias and bias["decisive"]:
        low, high = bias["left_interval"]
        st.markdown(f"Position bias: **{bias['chose_left']} of {bias['decisive']}** decisive labels chose the map "
                    f"shown on the left ({bias['left_share']:.0%}, {settings.confidence:.0%} interval "
                    f"{low:.0%}–{high:.0%}).")
    scope = st.selectbox("Annotators in", [ALL_CELLS, *cell_names(figures)], key="dashboard-scope")
    st.table(annotators_table(figures, scope), hide_index=True)
    for note in figures.notes:
        st.caption(f"note: {note}")
