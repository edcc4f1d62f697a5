"""Analysis of a study's labels: does the metric agree with people?

Modules: ``encoding`` (labels as arrays), ``significance`` (library tests), ``crossed`` (the variance
of a mean when examples and annotators are both sampled), ``clustered`` (the figures for people and for
these annotators), ``annotator_cells`` (annotators within cells, leave-one-out), ``verdict`` (the
pre-registered rule), ``agreement``, ``bootstrap``,
``regression`` (metric gain), ``cells`` (per-cell rows), ``rollups`` (groups, annotators, position),
``pipeline`` (``analyze_labels``), ``study`` (one study of a store: ``study_report``),
``report``/``markdown``/``latex``/``plot`` (the report folder), ``power`` (study planning by simulation).
Nothing here imports torch or lightning_modules.
"""
from .agreement import agreement, majority_votes
from .bootstrap import cluster_bootstrap_share
from .cells import cell_statistics
from .clustered import clustered_shares, crossed_shares
from .encoding import encode_labels, select_label_source
from .pipeline import analyze_labels
from .regression import gain_regression
from .report import REPORT_FILES, cells_frame, to_json, write_report
from .rollups import annotator_statistics, position_bias, rollups
from .settings import AnalysisSettings
from .significance import binomial_p, holm, wilson_interval
from .verdict import VERDICTS, verdicts

__all__ = [
    "AnalysisSettings", "REPORT_FILES", "VERDICTS", "agreement", "analyze_labels",
    "annotator_statistics", "binomial_p", "cell_statistics", "cells_frame", "cluster_bootstrap_share",
    "clustered_shares", "crossed_shares", "encode_labels", "gain_regression", "holm", "majority_votes",
    "position_bias", "rollups",
    "select_label_source", "to_json", "verdicts", "wilson_interval", "write_report",
]
