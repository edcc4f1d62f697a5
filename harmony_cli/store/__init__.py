"""The study store: studies, examples, annotators, labels and their audit (SQLAlchemy 2)."""
from ..cells import CELL_FIELDS, CHOICES, SIDES
from .accounts import NAME_MAX, LoginResult, normalize_name
from .api import Store
from .assignments import StudyRules, study_rules
from .db import StoreError, default_db_url, resolve_db_url
from .labels import AnswerRefused, CellClosed, ExampleFull, SessionEnded
from .models import (SCHEMA_VERSION, Annotator, Assignment,
                     Example, Label, LabelAudit, LoginGuard, Meta, PageSession, Study)

__all__ = [
    "AnswerRefused", "Annotator", "Assignment", "CELL_FIELDS", "CHOICES", "CellClosed",
    "default_db_url", "Example", "ExampleFull", "Label", "LabelAudit", "LoginGuard", "LoginResult", "Meta",
    "NAME_MAX", "PageSession", "SCHEMA_VERSION", "SIDES", "SessionEnded", "Store", "StoreError", "Study", "StudyRules",
    "normalize_name", "resolve_db_url", "study_rules",
]
