"""``harmony export``: the command line of :mod:`harmony_cli.study.export`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .options import DbOption


def command(
    study: str = typer.Option(..., "--study", help="The study to export (see `harmony studies`)."),
    fmt: str = typer.Option("csv", "--format", help="csv, jsonl, parquet, or label-studio (Label Studio's JSON "
                                                     "export, its labeling config written beside it as .xml)."),
    out: Optional[Path] = typer.Option(None, "--out", help="File to write (default: outputs/exports/STUDY.<ext>)."),
    names: bool = typer.Option(False, "--names", help="Add the annotators' login names beside their pseudonyms."),
    force: bool = typer.Option(False, "--force", help="Replace files that exist already (never the store)."),
    db: DbOption = None,
) -> None:
    """Write every label of a study (pseudonymous annotators, cell, choice, side shown, times, scores)."""
    from ..errors import UserError
    from ..outputs import store_files
    from ..store import Store
    from ..study.export import FORMATS, check_export_targets, export_study, export_targets

    if fmt not in FORMATS:  # before opening anything
        raise UserError(f"unknown --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    protected = store_files(db)
    check_export_targets(export_targets(fmt, out, study), force, protected, default=out is None)
    store = Store.open(db, create=False)
    try:
        path, count = export_study(store, study, fmt, out=out, names=names, force=force, protected=protected)
    finally:
        store.close()
    typer.echo(f"wrote {count} labels of study {study!r} to {path}")
