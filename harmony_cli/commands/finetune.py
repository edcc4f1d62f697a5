"""``harmony finetune``: fine-tune a copy of a classifier so that a metric of its maps improves.

Every argument goes to the Hydra app (harmony_cli/finetune_app.py) unchanged::

    harmony finetune metric=rma                              # one run: outputs/finetune/<time>/
    harmony finetune -m metric=rma,focus attribution=gradcam,guided_backprop   # a sweep
    harmony finetune metric=rma ckpt_path=last               # resume (same as --resume)
    harmony finetune hydra.run.dir=outputs/finetune/<time> ckpt_path=last       # resume that run

Resuming (``ckpt_path=last`` or ``--resume``) without ``hydra.run.dir`` continues the latest
run dir under ``<paths.outputs>/finetune`` whose overrides equal this command's, ignoring
``ckpt_path`` and the budget keys ``trainer.max_steps`` / ``trainer.max_time`` (so a budget can
be extended). With ``-m`` it continues the latest sweep under ``<paths.outputs>/finetune-multirun``
started with the same overrides; its jobs that never saved a checkpoint start afresh.
"""
from __future__ import annotations

from pathlib import Path

import typer
from omegaconf import OmegaConf

from ..errors import UserError

TASK = "finetune"
# Override keys that may differ between a run and its resumption.
RESUME_IGNORED_KEYS = {"ckpt_path", "task", "trainer.max_steps", "trainer.max_time"}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def comparable(overrides: list[str]) -> list[str]:
    """The overrides that identify a run, sorted (resume matching)."""
    return sorted(o for o in overrides if _key(o) not in RESUME_IGNORED_KEYS and not _key(o).startswith("hydra."))


def find_resumable(root: Path, overrides: list[str], multirun: bool = False) -> Path | None:
    """The newest run (or sweep) dir under ``root`` started with the same ``overrides``."""
    if not root.is_dir():
        return None
    wanted = comparable(overrides)
    for run in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True):
        if multirun:
            spec = run / "multirun.yaml"
            if not spec.is_file():
                continue
            recorded = list(OmegaConf.load(spec).hydra.overrides.task)
        else:
            spec = run / ".hydra" / "overrides.yaml"
            if not spec.is_file() or not (run / "checkpoints" / "last.ckpt").is_file():
                continue
            recorded = list(OmegaConf.load(spec))
        if comparable(recorded) == wanted:
            return run
    return None


def _parsed(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(overrides)


def resume_args(args: list[str]) -> list[str]:
    """``args`` with the run (or sweep) dir to resume added, when ``ckpt_path=last`` names none."""
    from ..hydra_app import compose_config

    overrides = [a for a in args if not a.startswith("-") and "=" in a]
    if "ckpt_path=last" not in overrides:
        return args
    multirun = "-m" in args or "--multirun" in args
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(_key(o) == dir_key for o in overrides):
        return args
    # where runs are kept does not depend on the swept values: compose the rest once
    fixed = [o.input_line for o in _parsed(overrides)
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


def command(
    ctx: typer.Context,
    resume: bool = typer.Option(False, "--resume", help="Continue the latest run with the same overrides "
                                                        "from its last checkpoint (= ckpt_path=last)."),
) -> None:
    """Fine-tune a copy of the backbone so that the metric of its attribution maps improves,
    keeping its predictions close to the original's. Arguments are Hydra overrides and flags:
    `harmony finetune metric=focus backbone=resnet18`, `-m metric=rma,focus` sweeps,
    `--cfg job` prints the config, `--hydra-help` lists Hydra's flags. Writes
    outputs/finetune/<time>/ (metrics.json, finetune.png, checkpoints/, logs/)."""
    from ..finetune_app import run

    args = list(ctx.args)
    if resume and not any(a.startswith("ckpt_path=") for a in args):
        args.append("ckpt_path=last")
    run(resume_args(args))
