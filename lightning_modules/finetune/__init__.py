"""Metric fine-tuning: a trainable copy of a classifier whose attribution maps improve a metric.

``harmony finetune metric=rma`` composes a config and calls :func:`run_finetune`. Its modules:

- :mod:`.module`: :class:`FinetuneModule` (the LightningModule; ``conf/model``) and :func:`agreement_loss`;
- :mod:`.scoring`: validation sums of both models (metric, agreement, accuracy);
- :mod:`.callbacks`: checkpointing under the agreement floor, validation log lines, progress (``conf/callbacks``);
- :mod:`.checks`: one-line errors before anything is loaded (:func:`check_combination`);
- :mod:`.data`: the run's loaders as a LightningDataModule;
- :mod:`.rundir`: the run folder's layout, resume, clean-up, and :func:`load_finetune_run`;
- :mod:`.original`: the original a run started from (``original.pt``, its digest in every checkpoint);
- :mod:`.job`: :func:`run_finetune`, the run itself.
"""
from .callbacks import BEST_CKPT, CHECKPOINT_DIR, LAST_CKPT, BestAgreeingCheckpoint, ValidateAtBudgetEnd, is_better
from .checks import check_combination
from .data import FinetuneData
from .job import build_module, explainer_factory_of, finish_run, run_finetune, summary_table
from .module import FinetuneModule, agreement_loss
from .original import ORIGINAL_FILE, OriginalError, check_recorded_original, load_recorded_original
from .rundir import (FIGURE_FILE, LOG_DIR, METRICS_FILE, METRICS_KEYS, RUN_LOG, FinetuneRun, RunError,
                     is_finetune_run, load_finetune_run, load_finetuned_weights, resolve_ckpt_path)
from .scoring import SUMS, batch_sums, evaluate, summarize

__all__ = [
    "BEST_CKPT", "CHECKPOINT_DIR", "FIGURE_FILE", "LAST_CKPT", "LOG_DIR", "METRICS_FILE", "METRICS_KEYS",
    "ORIGINAL_FILE", "OriginalError", "RUN_LOG", "check_recorded_original", "load_recorded_original",
    "SUMS", "BestAgreeingCheckpoint", "FinetuneData", "FinetuneModule", "FinetuneRun", "RunError",
    "ValidateAtBudgetEnd", "agreement_loss", "batch_sums", "build_module", "check_combination", "evaluate",
    "explainer_factory_of", "finish_run", "is_better", "is_finetune_run", "load_finetune_run",
    "load_finetuned_weights", "resolve_ckpt_path", "run_finetune", "summarize", "summary_table",
]
