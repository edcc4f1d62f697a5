"""Loading a finished ``harmony finetune`` run: moved to :mod:`lightning_modules.finetune.rundir`.

Kept as a re-export so that ``from lightning_modules.runs import load_finetune_run`` keeps working.
"""
from .finetune.rundir import FinetuneRun, RunError, is_finetune_run, load_finetune_run

__all__ = ["FinetuneRun", "RunError", "is_finetune_run", "load_finetune_run"]
