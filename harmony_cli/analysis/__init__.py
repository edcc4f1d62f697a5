"""Analysis of a study's labels: statistics (stats), report files (report), the bar chart (plot).

Everything works on a pandas frame of labels (``Store.labels_frame``); ``harmony analyze``
(harmony_cli/analyze_cmd.py) reads the store and writes the report folder.
"""
from .report import REPORT_FILES, cells_frame, markdown, to_json, write_report
from .stats import (CELL_FIELDS, CHOICES, AnalysisSettings, agreement, analyze_labels, annotator_statistics,
                    cell_statistics, cluster_bootstrap_share, encode_labels, gain_regression, holm,
                    majority_votes, position_bias, rollups, select_label_source, wilson_interval)

__all__ = [
    "AnalysisSettings", "CELL_FIELDS", "CHOICES", "REPORT_FILES", "agreement", "analyze_labels",
    "annotator_statistics", "cell_statistics", "cells_frame", "cluster_bootstrap_share", "encode_labels",
    "gain_regression", "holm", "majority_votes", "markdown", "position_bias", "rollups", "select_label_source",
    "to_json", "wilson_interval", "write_report",
]
