"""The ``harmony`` command. Each stage lives in its own module and registers here."""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from .errors import find_user_error

from .commands import analyze, annotators, build_dataset, data, finetune, import_legacy, simulate, studies
from .commands import power
from .commands import export

app = typer.Typer(
    help="harmony: does an explanation-quality metric agree with what people see?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.command("finetune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    finetune.command)
app.command("build-dataset")(build_dataset.command)
app.add_typer(annotators.app, name="annotators")
app.command("studies")(studies.studies)
app.command("import-legacy")(import_legacy.command)
app.command("analyze")(analyze.analyze)
app.command("simulate-annotators")(simulate.command)
app.command("power")(power.command)
app.command("export")(export.command)


def main() -> None:
    """Console entry point: user errors print one line and exit with status 2."""
    try:
        app()
    except Exception as exc:
        error = find_user_error(exc)
        if error is None:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
