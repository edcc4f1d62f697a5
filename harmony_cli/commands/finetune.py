"""``harmony finetune``: fine-tune a copy of a classifier so that a metric of its maps improves.

Every argument goes to Hydra unchanged::

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

import sys
from pathlib import Path

import typer
from omegaconf import DictConfig, OmegaConf

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


def resume_args(args: list[str]) -> list[str]:
    """``args`` with the run (or sweep) dir to resume added, when ``ckpt_path=last`` names none."""
    from ..hydra_app import compose_config, split_args, sweep_combinations

    overrides, flags = split_args(args)
    if "ckpt_path=last" not in overrides:
        return args
    multirun = "-m" in flags or "--multirun" in flags
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(_key(o) == dir_key for o in overrides):
        return args
    first = sweep_combinations(overrides)[0] if multirun else overrides
    outputs = Path(compose_config([o for o in first if not _key(o).startswith("hydra.")], task=TASK).paths.outputs)
    root = outputs / (f"{TASK}-multirun" if multirun else TASK)
    found = find_resumable(root, overrides, multirun=multirun)
    if found is None:
        what = "sweep" if multirun else "run with a checkpoint"
        raise UserError(f"no earlier finetune {what} under {root} has the overrides "
                        f"[{' '.join(comparable(overrides))}]: drop ckpt_path=last (or --resume) to start a new "
                        f"one, or add {dir_key}=<run dir> to resume that one")
    return [*args, f"{dir_key}={found}"]


def check_all(args: list[str]) -> None:
    """Compose every run of the command and check that it can work, before any run starts."""
    from lightning_modules.finetune import check_combination

    from ..hydra_app import compose_config, split_args, sweep_combinations

    overrides, flags = split_args(args)
    if any(f in flags for f in ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i")):
        return
    multirun = "-m" in flags or "--multirun" in flags
    for combo in sweep_combinations(overrides) if multirun else [overrides]:
        check_combination(compose_config([o for o in combo if not _key(o).startswith("hydra.")], task=TASK))


def task(cfg: DictConfig, script: str | None = None) -> dict | None:
    """The Hydra task: fine-tune in the job's output dir. User errors print one line and exit 2."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    from lightning_modules.finetune import run_finetune

    hydra_cfg = HydraConfig.get()
    saved = sys.argv
    if script:
        # Lightning's DDP launcher (strategy=ddp) starts ranks > 0 as `sys.argv[0] sys.argv[1:]
        # hydra.run.dir=<HydraConfig run.dir>`: make that this job's own single-run command and dir.
        sys.argv = [script, TASK, *hydra_cfg.overrides.task]
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        return run_finetune(cfg, hydra_cfg.runtime.output_dir, resume_missing_ok=hydra_cfg.mode == RunMode.MULTIRUN)
    except Exception as exc:
        # Inside a Hydra job an exception becomes a traceback; a user error stays one line.
        from rich.console import Console

        from ..errors import find_user_error

        error = find_user_error(exc)
        if error is None:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    finally:
        sys.argv = saved


def command(
    ctx: typer.Context,
    resume: bool = typer.Option(False, "--resume", help="Continue the latest run with the same overrides "
                                                        "from its last checkpoint (= ckpt_path=last)."),
) -> None:
    """Fine-tune a copy of the backbone so that the metric of its attribution maps improves,
    keeping its predictions close to the original's. Arguments are Hydra overrides and flags:
    `harmony finetune metric=focus backbone=resnet18`, `-m metric=rma,focus` sweeps,
    `--cfg job` prints the config. Writes outputs/finetune/<time>/ (metrics.json, finetune.png,
    checkpoints/, logs/)."""
    from functools import partial

    from ..hydra_app import run_hydra, split_args

    args = list(ctx.args)
    if resume and not any(a.startswith("ckpt_path=") for a in args):
        args.append("ckpt_path=last")
    overrides, flags = split_args(resume_args(args))
    args = [*overrides, *flags]  # Hydra's parser takes the overrides in one run, before its flags
    check_all(args)
    run_hydra(TASK, partial(task, script=sys.argv[0]), args)
