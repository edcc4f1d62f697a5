"""What a label and a study's cell are, for the store, the analysis, the CLI and the page alike.

A label is one annotator's choice for one example (:data:`CHOICES`); a cell is the
(dataset, metric, backbone, attribution) an example belongs to. Torch-free and free of the store's
and the analysis's libraries, so each of them imports it.
"""
from __future__ import annotations

from .errors import UserError

# The two maps of a pair, and the choices a label makes: one of them, or neither.
SIDES = ("original", "finetuned")
NEITHER = "neither"
CHOICES = (*SIDES, NEITHER)  # the simulator draws in this order: a seed keeps its labels
# How reports list the choices (count columns, shares, bars): "neither" between the two maps.
REPORT_ORDER = (SIDES[0], NEITHER, SIDES[1])
CELL_FIELDS = ("dataset", "metric", "backbone", "attribution")
CELL_KEYS = CELL_FIELDS[1:]  # what names a cell; its dataset is optional
# Between a cell's fields in the report's tables and figure titles: spaced, so a narrow column wraps.
REPORT_SEPARATOR = " / "


def cell_text(cell: dict, with_dataset: bool = False, separator: str = "/") -> str:
    """A cell as text: ``metric/backbone/attribution`` (``dataset/...`` with ``with_dataset``), the
    CLI's ``--cell`` form; the page and the reports join with their own ``separator``."""
    return separator.join(str(cell[f]) for f in (CELL_FIELDS if with_dataset else CELL_KEYS))


def parse_cell(text: str) -> dict:
    """``metric/backbone/attribution`` or ``dataset/metric/backbone/attribution`` as a cell dict."""
    parts = [p.strip() for p in text.split("/")]
    if len(parts) not in (3, 4) or not all(parts):
        raise UserError(f"cannot read the cell {text!r}: write it as metric/backbone/attribution, e.g. "
                        f"rma/resnet18/gradcam (or dataset/metric/backbone/attribution)")
    return dict(zip(CELL_KEYS, parts[-3:]), dataset=parts[0] if len(parts) == 4 else None)
