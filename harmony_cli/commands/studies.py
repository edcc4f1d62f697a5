"""``harmony studies``: what the store holds, one row per study and cell."""
from __future__ import annotations

from typing import Optional

import typer

STUDY_KEYS = ("study", "dataset", "metric", "backbone", "attribution", "examples", "labels", "annotators")


def studies(
    db: Optional[str] = typer.Option(None, "--db", help="Store URL or SQLite file (default: $HARMONY_DB_URL, "
                                                        "else outputs/harmony.db)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of objects instead of a table."),
) -> None:
    """List studies by cell: examples, labels, and annotators with at least one label."""
    import json

    from rich.console import Console
    from rich.table import Table

    from ..store import Store

    store = Store.open(db, create=False)
    try:
        rows = [{k: row[k] for k in STUDY_KEYS} for row in store.cells()]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("the store holds no examples yet: build a study (harmony build-dataset) or import one "
                   "(harmony import-legacy)")
        return
    n_studies = len({r['study'] for r in rows})
    table = Table(title=f"{n_studies} {'study' if n_studies == 1 else 'studies'}, {len(rows)} cells")
    for key in STUDY_KEYS:
        table.add_column(key, justify="right" if key in ("examples", "labels", "annotators") else "left")
    for r in rows:
        table.add_row(*[str(r[k]) for k in STUDY_KEYS])
    console = Console()
    if not console.is_terminal:  # piped: print whole names rather than cutting them at 80 columns
        console.width = max(console.width, 160)
    console.print(table)
