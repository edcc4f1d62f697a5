"""``harmony metrics`` and ``harmony attributions``: what exists, as :mod:`harmony_cli.catalog` lists it."""
from __future__ import annotations

from rich.table import Table

from ..console import output_console


def _print(title: str, rows: list[dict]) -> None:
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    output_console().print(table)


def metrics() -> None:
    """The metrics (conf/metric): name, family, direction, whether it needs object masks, its paper and
    the reference implementation it equals."""
    from ..catalog import metric_rows

    _print("metrics (harmony finetune metric=<name>)", metric_rows())


def attributions() -> None:
    """The attribution methods (conf/attribution): name, family, its paper and the Captum/zennit method it equals."""
    from ..catalog import attribution_rows

    _print("attribution methods (harmony finetune attribution=<name>)", attribution_rows())
