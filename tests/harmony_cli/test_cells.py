"""A cell's text form (the CLI's ``--cell``, the page, the reports) and reading it back."""
from __future__ import annotations

import pytest

from harmony_cli.cells import CHOICES, REPORT_ORDER, cell_text, parse_cell
from harmony_cli.errors import UserError

CELL = {"dataset": "imagenet_s", "metric": "rma", "backbone": "resnet18", "attribution": "gradcam"}


def test_a_cell_written_as_text_reads_back():
    assert cell_text(CELL) == "rma/resnet18/gradcam"
    assert cell_text(CELL, with_dataset=True) == "imagenet_s/rma/resnet18/gradcam"
    assert parse_cell(cell_text(CELL, with_dataset=True)) == CELL
    assert parse_cell(cell_text(CELL)) == {**CELL, "dataset": None}
    assert cell_text(CELL, separator=" · ") == "rma · resnet18 · gradcam"


@pytest.mark.parametrize("text", ["rma/resnet18", "a/b/c/d/e", "rma//gradcam", " / / "])
def test_a_cell_that_is_not_three_or_four_names_is_refused(text):
    with pytest.raises(UserError, match="write it as metric/backbone/attribution"):
        parse_cell(text)


def test_reports_list_every_choice_once_with_neither_between_the_maps():
    assert sorted(REPORT_ORDER) == sorted(CHOICES) and len(set(CHOICES)) == 3
    assert REPORT_ORDER[1] == "neither" and {REPORT_ORDER[0], REPORT_ORDER[2]} == {"original", "finetuned"}
