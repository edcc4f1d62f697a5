"""How many labels count toward a study's ``labels_per_example``: real annotators' only.

Simulated labels (``harmony simulate-annotators``) answer every example; counted, they would fill
every example's quota and the page would refuse every real annotator. The page's rules, its choice
of the next example and the cells' progress all count through these two expressions.
"""
from __future__ import annotations

from sqlalchemy import false, func, select

from .models import Annotator, Label

# a label whose annotator is real (joined to Annotator)
REAL = Annotator.simulated == false()


def real_label_count(example_id):
    """A scalar subquery: the real labels of the example ``example_id`` (a column or a bind parameter)."""
    return (select(func.count(Label.id)).join(Annotator, Annotator.id == Label.annotator_id)
            .where(Label.example_id == example_id, REAL).scalar_subquery())
