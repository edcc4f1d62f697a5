"""The ``harmony`` command. Each stage lives in its own module and registers here."""
from __future__ import annotations

import sys

import typer

from .errors import usage_error
from .hydra_app import exit_on_user_error

from . import __version__
from .commands import (analyze, annotators, build_dataset, catalog, data, export, finetune, import_legacy, power,
                       replay, serve, simulate, studies)

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
app.command("metrics")(catalog.metrics)
app.command("attributions")(catalog.attributions)
app.add_typer(annotators.app, name="annotators")
app.add_typer(studies.app, name="studies")
app.command("import-legacy")(import_legacy.command)
app.command("analyze")(analyze.analyze)
app.command("simulate-annotators")(simulate.command)
app.command("power")(power.command)
app.command("replay")(replay.command)
app.command("export")(export.command)
app.command("serve")(serve.serve)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"harmony {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print harmony's version and exit.")) -> None:
    """harmony: does an explanation-quality metric agree with what people see?"""


def main() -> None:
    """Console entry point: user errors, the command line's included, print one line and exit with status 2."""
    with exit_on_user_error():
        try:
            code = app(standalone_mode=False)
        except typer.Abort:  # Ctrl+C or end of input at a prompt
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        except Exception as exc:
            # Click's usage errors (vendored by Typer, so matched by shape, as Typer's own handler does)
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":  # the help is printed already
                sys.exit(exc.exit_code)
            raise usage_error(exc) from exc
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
