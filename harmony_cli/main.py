"""The ``harmony`` command. Each stage lives in its own module and registers here."""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from lightning_modules.errors import UserError

from . import data_cmd

app = typer.Typer(
    help="harmony: does an explanation-quality metric agree with what people see?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cmd.app, name="data")


def main() -> None:
    """Console entry point: user errors print one line and exit with status 2."""
    try:
        app()
    except UserError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
