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

import typer

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
    from ..finetune_app import resume_args, run

    args = list(ctx.args)
    if resume and not any(a.startswith("ckpt_path=") for a in args):
        args.append("ckpt_path=last")
    run(resume_args(args))
