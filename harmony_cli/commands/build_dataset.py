"""``harmony build-dataset``: the command line of :mod:`harmony_cli.study.build`.

Kept apart so that ``harmony --help`` and the other commands start without importing torch.
"""
from __future__ import annotations

from typing import Optional

import typer

from .options import DbOption


def translate_overrides(overrides: list[str]) -> list[str]:
    """``run=PATH`` (the documented short form) is ``study.run=PATH`` in the config."""
    return [f"study.{arg}" if arg.startswith("run=") else arg for arg in overrides]


def command(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="run=PATH (a finetune run or multirun dir; default: the latest) and Hydra overrides, "
                   "e.g. study.examples_per_cell=50 study.name=pilot"),
    db: DbOption = None,
    cfg_only: Optional[str] = typer.Option(None, "--cfg", help="'job': print the composed config and exit."),
) -> None:
    """Render paired original / fine-tuned maps of finetune runs into a blinded study."""
    from omegaconf import OmegaConf
    from ..console import output_console

    from ..errors import UserError
    from ..hydra_app import compose_config

    console = output_console()
    cfg = compose_config(translate_overrides(list(overrides or [])), task="build_dataset")
    if cfg_only is not None:
        if cfg_only != "job":
            raise UserError(f"--cfg {cfg_only} is not supported here: use --cfg job")
        print(OmegaConf.to_yaml(cfg))
        return
    from ..study.build import build_study
    from ..study.table import summary_table

    outcome = build_study(cfg, console=console, db=db)
    console.print(summary_table(outcome))
    console.print(f"study [bold]{outcome.name}[/]: {sum(r.examples for r in outcome.results)} examples in "
                  f"{len(outcome.results)} cell(s); `harmony studies` lists it")
