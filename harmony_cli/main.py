"""The ``harmony`` command. Each stage lives in its own module and registers here."""
from __future__ import annotations

import sys

import typer
from rich.console import Console

from lightning_modules.errors import find_user_error

from . import build_dataset_cmd
from . import annotators_cmd, data_cmd, import_legacy, studies_cmd
from . import analyze_cmd
from . import finetune_cmd
from . import simulate

app = typer.Typer(
    help="harmony: does an explanation-quality metric agree with what people see?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cmd.app, name="data")
app.command("finetune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    finetune_cmd.command)
app.command("build-dataset")(build_dataset_cmd.command)
app.add_typer(annotators_cmd.app, name="annotators")
app.command("studies")(studies_cmd.studies)
app.command("import-legacy")(import_legacy.import_legacy_cmd)
app.command("analyze")(analyze_cmd.analyze)
app.command("simulate-annotators")(simulate.command)


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
