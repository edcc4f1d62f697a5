"""``harmony finetune`` as a plain Hydra app (the shape of lightning-hydra-template's ``train.py``).

The Typer command hands its arguments to :func:`run`, which gives them to :func:`main` as its
command line, so run dirs, ``-m`` sweeps, ``--cfg``, ``--hydra-help``, launcher and sweeper
plugins behave as in any Hydra app.
"""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, read_write

from harmony_cli.errors import UserError
from harmony_cli.hydra_app import CONFIG_NAME, checked_config_dir, compose_config, exit_on_user_error

TASK = "finetune"
# Hydra's flags that take a value (`--cfg job`); `--info` takes one of these words when given.
_VALUE_FLAGS = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                "--config-dir", "-cd", "--experimental-rerun"}
_INFO_WORDS = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}


@contextmanager
def _relaunchable_as_this_job() -> Iterator[None]:
    """Lightning's DDP launcher (strategy=ddp) starts ranks > 0 as ``sys.argv`` plus
    ``hydra.run.dir=<run.dir>``: make that ``harmony finetune <this job's overrides>`` in this job's dir."""
    hydra_cfg = HydraConfig.get()
    saved = sys.argv
    sys.argv = [saved[0], TASK, *hydra_cfg.overrides.task]
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved


@hydra.main(config_path=str(checked_config_dir()), config_name=CONFIG_NAME, version_base="1.3")
def main(cfg: DictConfig) -> dict | float | None:
    """One fine-tuning job in Hydra's output dir (a sweep's job tolerates a missing checkpoint).

    Returns the run's metrics.json content, or its ``optimized_metric`` entry for a sweeper
    that optimizes (``hparams_search=optuna``)."""
    from lightning_modules.finetune import run_finetune  # here: `--cfg job` and `--help` start without torch

    hydra_cfg = HydraConfig.get()
    with exit_on_user_error(), _relaunchable_as_this_job():
        metrics = run_finetune(cfg, hydra_cfg.runtime.output_dir,
                               resume_missing_ok=hydra_cfg.mode == RunMode.MULTIRUN)
    optimized = cfg.get("optimized_metric")
    return metrics[optimized] if optimized and metrics is not None else metrics


def overrides_first(args: list[str]) -> list[str]:
    """``args`` with Hydra's flags (and their values) after the overrides: Hydra's parser reads
    the overrides as one list, so ``metric=rma --cfg job trainer.max_steps=2`` would fail."""
    overrides, flags, i = [], [], 0
    while i < len(args):
        arg = args[i]
        takes_value = arg in _VALUE_FLAGS or (arg in ("--info", "-i") and i + 1 < len(args)
                                              and args[i + 1] in _INFO_WORDS)
        if arg.startswith("-"):
            flags.extend(args[i:i + 2] if takes_value else [arg])
            i += 2 if takes_value else 1
        else:
            overrides.append(arg)
            i += 1
    return [*overrides, *flags]


def run(args: list[str]) -> None:
    """Run :func:`main` on ``args`` (Hydra overrides and flags), as if they were its command line."""
    if ("-m" in args or "--multirun" in args) and ("--cfg" in args or "-c" in args):
        raise UserError("--cfg prints the config of one job: drop -m and give one value per key")
    # Hydra then raises composition errors instead of printing them: the CLI's printer makes them one line.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    watched = _output_folders(args)
    existed = {folder: folder.exists() for folder in watched}
    sweeps_before = _sweeps(watched)
    saved = sys.argv
    sys.argv = [saved[0], *overrides_first(args)]
    try:
        main()
    except BaseException:
        _discard_what_failed(watched, existed, sweeps_before)
        raise
    finally:
        sys.argv = saved


def resume_args(args: list[str]) -> list[str]:
    """``args`` with the run (or sweep) dir to resume added, when ``ckpt_path=last`` names none.

    Without ``hydra.run.dir`` it continues the latest run dir under ``<paths.outputs>/finetune`` whose
    overrides equal these (:func:`lightning_modules.finetune.rundir.find_resumable`); with ``-m`` the
    latest sweep under ``<paths.outputs>/finetune-multirun``.
    """
    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    if "ckpt_path=last" not in overrides:
        return args
    # imported here: torch comes with the run folder's module, and only a resumed run needs it
    from lightning_modules.finetune.rundir import comparable, find_resumable, override_key

    multirun = "-m" in args or "--multirun" in args
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(override_key(o) == dir_key for o in overrides):
        return args
    # where runs are kept does not depend on the swept values: compose the rest once
    fixed = [o.input_line for o in OverridesParser.create().parse_overrides(overrides)
             if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]
    outputs = Path(compose_config(fixed, task=TASK).paths.outputs)
    root = outputs / (f"{TASK}-multirun" if multirun else TASK)
    found = find_resumable(root, overrides, multirun=multirun)
    if found is None:
        what = "sweep" if multirun else "run with a checkpoint"
        raise UserError(f"no earlier finetune {what} under {root} has the overrides "
                        f"[{' '.join(comparable(overrides))}]: drop ckpt_path=last (or --resume) to start a new "
                        f"one, or add {dir_key}=<run dir> to resume that one")
    return [*args, f"{dir_key}={found}"]


def _output_folders(args: list[str]) -> list[Path]:
    """The folders a run or sweep of ``args`` creates: outputs, outputs/finetune, the sweeps' folder and
    any hydra.sweep.dir given (innermost last); none when the overrides do not compose (Hydra says why)."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-") and "=" in a])
        fixed = [o.input_line for o in parsed if not o.is_sweep_override() and not o.key_or_group.startswith("hydra")]
        outputs = Path(compose_config(fixed, task=TASK).paths.outputs)
    except Exception:
        return []
    sweep_dirs = [Path(o.value()) for o in parsed if o.key_or_group == "hydra.sweep.dir"]
    return [outputs, outputs / TASK, outputs / f"{TASK}-multirun", *sweep_dirs]


def _sweeps(watched: list[Path]) -> set[Path]:
    """The sweep folders there are now."""
    if not watched:
        return set()
    root = watched[2]
    found = set(root.iterdir()) if root.is_dir() else set()
    return found | {sweep for sweep in watched[3:] if sweep.exists()}


def _discard_what_failed(watched: list[Path], existed: dict[Path, bool], sweeps_before: set[Path]) -> None:
    """After a failed run or sweep: remove a sweep folder it made that holds nothing but its multirun.yaml
    (its jobs remove what they wrote, checkpoints excepted), then the output folders it made, if empty."""
    for sweep in _sweeps(watched) - sweeps_before:
        files = [p for p in sweep.rglob("*") if not p.is_dir()]
        if [p.relative_to(sweep) for p in files] in ([], [Path("multirun.yaml")]):
            shutil.rmtree(sweep, ignore_errors=True)
    for folder in reversed(watched):
        if not existed[folder]:
            try:
                folder.rmdir()
            except OSError:  # not empty (another run's files), or not there
                pass
