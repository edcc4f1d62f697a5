"""The original a fine-tuning run started from, recorded in the run so its maps can be rendered again.

A run writes the original's weights to ``<run>/original.pt`` before its first step, and every
checkpoint records their content digest (:func:`lightning_modules.backbones.weights_digest`) beside
the fine-tuned weights. Loading a run (build-dataset, a resume) takes the original from that file
and checks it against the checkpoint's digest; it never rebuilds the original from the config,
which could load other weights (a retrained ``backbone.weights=auto`` cache, a changed file) or
train a new base model. A run made before harmony recorded its original is refused in one line.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from ..backbones import weights_digest
from ..errors import UserError
from ..io import atomic_path

ORIGINAL_FILE = "original.pt"
# the checkpoint key of the original's digest
ORIGINAL_DIGEST_KEY = "original_sha256"


class OriginalError(UserError):
    """A run whose original cannot be recovered exactly; the message says what to do."""


def save_original(run_dir: str | os.PathLike, original: nn.Module) -> Path:
    """Write ``original``'s weights to ``<run_dir>/original.pt`` (atomically); its path."""
    path = Path(run_dir) / ORIGINAL_FILE
    with atomic_path(path) as tmp:
        torch.save(original.state_dict(), tmp)
    return path


def recorded_digest(checkpoint: str | os.PathLike) -> str | None:
    """The original's digest a checkpoint records (None: made before harmony recorded it)."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise OriginalError(f"cannot read checkpoint {checkpoint} ({type(exc).__name__}): it is damaged or not a "
                            f"harmony checkpoint; fine-tune the run again") from exc
    return state.get(ORIGINAL_DIGEST_KEY) if isinstance(state, dict) else None


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/x.ckpt``)."""
    return Path(checkpoint).absolute().parent.parent


def check_recorded_original(checkpoint: str | os.PathLike) -> str:
    """The digest ``checkpoint`` records for its original, once both it and ``original.pt`` are there."""
    run_dir = run_dir_of(checkpoint)
    digest = recorded_digest(checkpoint)
    if digest is None:
        raise OriginalError(f"finetune run {run_dir} does not record the original model it started from (it "
                            f"was made by an older harmony), so its original cannot be recovered with certainty: "
                            f"fine-tune it again (its overrides are in .hydra/overrides.yaml)")
    if not (run_dir / ORIGINAL_FILE).is_file():
        raise OriginalError(f"finetune run {run_dir} lost {ORIGINAL_FILE}, the original model it started from: "
                            f"restore the file from a copy of the run, or fine-tune it again")
    return digest


def load_recorded_original(backbone_cfg, checkpoint: str | os.PathLike) -> nn.Module:
    """The original ``checkpoint``'s run started from: the run's ``original.pt``, checked against the
    digest the checkpoint records, in the architecture of ``backbone_cfg`` (built without weights)."""
    digest = check_recorded_original(checkpoint)
    path = run_dir_of(checkpoint) / ORIGINAL_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    found = weights_digest(state)
    if found != digest:
        raise OriginalError(f"{path} is not the original {Path(checkpoint).name} was fine-tuned from (sha256 "
                            f"{found[:12]}, the checkpoint records {digest[:12]}): restore the run's own "
                            f"{ORIGINAL_FILE}, or fine-tune it again")
    model = instantiate(backbone_cfg, weights="none")  # the architecture only: nothing loaded or trained
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise OriginalError(f"{path} does not fit backbone {backbone_cfg.name} of the run's config ({first}): "
                            f"was .hydra/config.yaml edited?") from exc
    return model.eval().requires_grad_(False)
