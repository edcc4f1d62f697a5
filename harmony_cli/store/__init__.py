"""The study store: studies, examples, annotators, labels and their audit (SQLAlchemy 2)."""
from .api import Store
from .db import DEFAULT_DB_URL, StoreError, resolve_db_url
from .models import (CELL_FIELDS, CHOICES, SCHEMA_VERSION, SIDES, Annotator, Example, Label, LabelAudit, Meta,
                     Study)

__all__ = [
    "Annotator", "CELL_FIELDS", "CHOICES", "DEFAULT_DB_URL", "Example", "Label", "LabelAudit", "Meta",
    "SCHEMA_VERSION", "SIDES", "Store", "StoreError", "Study", "resolve_db_url",
]
