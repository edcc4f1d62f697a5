"""Running a Hydra-configured stage from a Typer command.

``harmony finetune metric=rma -m ...`` hands its arguments to Hydra unchanged, so
run dirs, multirun sweeps and launcher plugins work as in any Hydra app. Before
Hydra starts, every combination of the overrides is composed once, so that an
unknown option or group value fails with one line instead of Hydra's report.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from .errors import UserError, find_user_error

CONFIG_DIR = Path(os.environ.get("HARMONY_CONF", Path(__file__).resolve().parent.parent / "conf"))
CONFIG_NAME = "config"

# Hydra's own flags that take no value / take a value: passed through, never composed.
_HYDRA_FLAGS = {"-m", "--multirun", "--cfg", "-c", "--resolve", "--info", "-i", "--help", "-h", "--hydra-help"}
_HYDRA_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--config-name", "-cn",
                      "--config-path", "-cp", "--config-dir", "-cd", "--experimental-rerun"}


class ConfigError(UserError):
    """An override that does not compose."""


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """(overrides, hydra flags) of a command line."""
    overrides, flags, expect_value = [], [], False
    for arg in args:
        if expect_value:
            flags.append(arg)
            expect_value = False
        elif arg in _HYDRA_VALUE_FLAGS:
            flags.append(arg)
            expect_value = arg in {"--cfg", "-c", "--package", "-p", "--config-name", "-cn", "--config-path",
                                   "-cp", "--config-dir", "-cd", "--experimental-rerun"}
        elif arg in _HYDRA_FLAGS or arg.startswith("-"):
            flags.append(arg)
        else:
            overrides.append(arg)
    return overrides, flags


def _one_line(exc: Exception, overrides: list[str]) -> str:
    """Hydra's multi-line composition errors, as one line that says what to fix."""
    from hydra.errors import MissingConfigException

    text = str(exc).strip()
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and "/" in exc.missing_cfg_file:
        group, _, value = exc.missing_cfg_file.rpartition("/")
        options = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        return f"unknown {group} {value!r}: choose one of {', '.join(options)}"
    if "is not in struct" in text or "Could not override" in text or "Could not append" in text:
        key = text.split("'")[1] if "'" in text else text
        return (f"unknown config option {key!r}: check its spelling "
                f"(`harmony <command> --cfg job` prints every option)")
    if "Missing mandatory value" in text:
        key = text.split(":")[-1].strip().splitlines()[0]
        return f"config value {key} must be set: add {key}=... to the command"
    return text.splitlines()[0] + (f" (overrides: {' '.join(overrides)})" if overrides else "")


def compose_config(overrides: list[str] | None = None, task: str = "finetune", resolve: bool = False) -> DictConfig:
    """Compose the root config with ``overrides`` (single run, no sweep syntax).

    Raises :class:`ConfigError` with one line when it does not compose.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    overrides = list(overrides or [])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(CONFIG_NAME, overrides=[f"task={task}", *overrides], return_hydra_config=False)
        if resolve:
            OmegaConf.resolve(cfg)
    except Exception as exc:  # hydra raises several unrelated types for bad overrides
        raise ConfigError(_one_line(exc, overrides)) from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """Every single-run override list of a (possibly sweeping) override list."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise ConfigError(f"cannot parse overrides ({str(exc).strip().splitlines()[0]}): write them as key=value") from exc
    batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(combo) for batch in batches for combo in batch]


def run_hydra(task: str, task_fn: Callable[[DictConfig], object], args: list[str]) -> None:
    """Run ``task_fn(cfg)`` as a Hydra app on ``args`` (overrides and Hydra flags).

    Each combination of a sweep is composed first; errors are one line.
    """
    import hydra

    overrides, flags = split_args(args)
    if not any(f in flags for f in ("--help", "-h", "--hydra-help")):
        combos = sweep_combinations(overrides) if ("-m" in flags or "--multirun" in flags) else [overrides]
        for combo in combos:
            compose_config(combo, task=task)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
    def _main(cfg: DictConfig):
        try:
            return task_fn(cfg)
        except Exception as exc:  # Hydra would print its own multi-line report: keep user errors to one line
            error = find_user_error(exc)
            if error is None:
                raise
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            sys.exit(2)

    saved = sys.argv
    # Hydra's parser wants every override before its flags (`--cfg job metric=focus` fails).
    sys.argv = [f"harmony {task}", f"task={task}", *overrides, *flags]
    try:
        _main()
    finally:
        sys.argv = saved
