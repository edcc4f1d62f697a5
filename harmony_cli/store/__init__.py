"""The study store: studies, examples, annotators, labels and their audit (SQLAlchemy 2)."""
from .accounts import NAME_MAX, LoginResult, normalize_name
from .api import Store
from .db import StoreError, default_db_url, resolve_db_url
from .labels import SessionEnded
from .models import (CELL_FIELDS, CHOICES, SCHEMA_VERSION, SIDES, Annotator, Example, Label, LabelAudit, LoginGuard,
                     Meta, Study)

__all__ = [
    "Annotator", "CELL_FIELDS", "CHOICES", "default_db_url", "Example", "Label", "LabelAudit", "LoginGuard",
    "LoginResult", "Meta", "NAME_MAX", "SCHEMA_VERSION", "SIDES", "SessionEnded", "Store", "StoreError", "Study",
    "normalize_name", "resolve_db_url",
]
