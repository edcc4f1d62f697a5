"""The store's operations, one class assembled from one module per concern. Every write is one transaction.

- base.py: opening, closing (also ``with Store.open(url) as store:``), read/write sessions;
- studies.py: studies and examples; labels.py: answers, bulk labels, reading labels;
- accounts.py: annotators, passwords, session versions, login throttling;
- sessions.py: logins on the annotation page (revoked at logout, with a server-side lifetime);
- page.py: one annotator's view of a study (the annotation page's queries);
- assignments.py: which studies and cells are open to whom, and a study's page rules;
- sequential_cells.py: early stopping of a sequential study's cells (their looks and decisions).
"""
from __future__ import annotations

from .accounts import AccountsMixin, LoginResult
from .assignments import AssignmentsMixin, StudyRules
from .base import StoreBase
from .db import StoreError
from .labels import AnswerRefused, CellClosed, ExampleFull, LabelsMixin, SessionEnded
from .page import PageMixin
from .sequential_cells import SequentialMixin
from .sessions import PageSessionsMixin
from .studies import StudiesMixin


class Store(StudiesMixin, LabelsMixin, AccountsMixin, PageSessionsMixin, AssignmentsMixin, PageMixin,
            SequentialMixin, StoreBase):
    """A study store at a database URL (``--db``, ``HARMONY_DB_URL`` or the default SQLite file)."""


__all__ = ["AnswerRefused", "CellClosed", "ExampleFull", "LoginResult", "SessionEnded", "Store", "StoreError",
           "StudyRules"]
