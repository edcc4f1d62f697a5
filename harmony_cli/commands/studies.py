"""``harmony studies``: what the store holds, one row per study and cell; and a study's settings
(``open``/``close`` to new labels, ``set-labels-per-example``, ``set-instructions``)."""
from __future__ import annotations

import csv
import io
import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from ..store.studies import CELL_ROW_KEYS, COUNT_KEYS
from .options import DbOption

# A row of `harmony studies`: the study, its design (fixed | sequential), the cell, its counts.
STUDY_KEYS = (CELL_ROW_KEYS[0], "design", *CELL_ROW_KEYS[1:])


class Format(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"


def as_markdown(rows: list[dict]) -> str:
    """A GitHub-flavoured Markdown table (counts right-aligned)."""
    lines = ["| " + " | ".join(STUDY_KEYS) + " |",
             "|" + "|".join("---:" if k in COUNT_KEYS else "---" for k in STUDY_KEYS) + "|"]
    lines += ["| " + " | ".join(str(r[k]).replace("|", "\\|") for k in STUDY_KEYS) + " |" for r in rows]
    return "\n".join(lines)


def as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=STUDY_KEYS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def print_table(rows: list[dict]) -> None:
    """A rich table; printed in full (never cut to the terminal's width) when stdout is not a terminal."""
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    n_studies = len({r["study"] for r in rows})
    table = Table(title=f"{n_studies} {'study' if n_studies == 1 else 'studies'}, {len(rows)} cells")
    for key in STUDY_KEYS:
        table.add_column(key, justify="right" if key in COUNT_KEYS else "left", no_wrap=True)
    for r in rows:
        table.add_row(*[str(r[k]) for k in STUDY_KEYS])
    console = Console()
    if not console.is_terminal:  # piped or in a log: as wide as the table needs
        unbounded = Console(width=100_000)
        console = Console(width=max(80, Measurement.get(unbounded, unbounded.options, table).maximum))
    console.print(table)


app = typer.Typer(help="List studies by cell (without a subcommand), or change a study's settings.",
                  invoke_without_command=True)


@app.callback()
def studies(
    ctx: typer.Context,
    db: DbOption = None,
    fmt: Format = typer.Option(Format.table, "--format", help="table (rich), markdown, csv or json."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """List studies by cell: the study's design (fixed, or sequential: cells stop once decided), examples,
    labels, and annotators with at least one label."""
    from ..store import Store, study_rules

    if ctx.invoked_subcommand is not None:
        return
    store = Store.open(db, create=False)
    try:
        designs = {s.name: study_rules(s.config, s.source).design for s in store.studies()}
        rows = [{k: designs[row["study"]] if k == "design" else row[k] for k in STUDY_KEYS} for row in store.cells()]
    finally:
        store.close()
    fmt = Format.json if as_json else fmt
    if fmt is Format.json:
        typer.echo(json.dumps(rows, indent=2))
    elif not rows:
        typer.echo("the store holds no examples yet: build a study (harmony build-dataset) or import one "
                   "(harmony import-legacy)")
    elif fmt is Format.markdown:
        typer.echo(as_markdown(rows))
    elif fmt is Format.csv:
        typer.echo(as_csv(rows))
    else:
        print_table(rows)


# study settings (assign) ----------------------------------------------------------------------

def _set(study: str, db: Optional[str], **values) -> dict:
    from ..store import Store

    with Store.open(db, create=False) as store:
        return store.update_study_config(study, **values)


@app.command("open")
def open_(
    study: str = typer.Argument(..., help="Study name (see `harmony studies`)."),
    db: DbOption = None,
) -> None:
    """Open a study to new labels on the page (imported studies are closed until opened)."""
    _set(study, db, open=True)
    typer.echo(f"study {study} is open to new labels from the annotators assigned to it")


@app.command("close")
def close(
    study: str = typer.Argument(..., help="Study name (see `harmony studies`)."),
    db: DbOption = None,
) -> None:
    """Close a study to new labels: the page refuses them, even from sessions already open; labels stay."""
    _set(study, db, open=False)
    typer.echo(f"study {study} is closed to new labels")


@app.command("set-labels-per-example")
def set_labels_per_example(
    study: str = typer.Argument(..., help="Study name (see `harmony studies`)."),
    count: int = typer.Argument(..., help="Labels each example gets (the page hands out examples until each "
                                          "has this many)."),
    db: DbOption = None,
) -> None:
    """Set how many labels each example of a study gets (default: conf/study's labels_per_example)."""
    from ..errors import UserError

    if count < 1:
        raise UserError(f"labels per example must be at least 1, not {count}")
    _set(study, db, labels_per_example=count)
    typer.echo(f"study {study}: {count} labels per example")


# `harmony studies set-instructions` (instructions) ----------------------------------------------

@app.command("set-instructions")
def set_instructions(
    study: str = typer.Argument(..., help="Study name (see `harmony studies`)."),
    file: Optional[Path] = typer.Option(None, "--file", help="A UTF-8 Markdown file with the instructions."),
    text: Optional[str] = typer.Option(None, "--text", help="The instructions themselves (Markdown)."),
    db: DbOption = None,
) -> None:
    """Set a study's instructions (Markdown), shown before an annotator's first example and behind Help."""
    from ..errors import UserError
    from ..study import instructions

    fix = "give --file PATH (a Markdown file) or --text TEXT"
    if (file is None) == (text is None):
        raise UserError(f"set-instructions takes exactly one of --file and --text: {fix}")
    value = instructions.read_file(file, fix) if file is not None else instructions.checked_text(text, "--text", fix)
    _set(study, db, **{instructions.CONFIG_KEY: value})
    typer.echo(f"study {study}: instructions set ({len(value):,} characters); annotators see them before their "
               f"first example and behind the page's Help button")
