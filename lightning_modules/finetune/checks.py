"""Checks of a composed finetune config that fail with one line before any data or model is loaded."""
from __future__ import annotations

import torch
from hydra.utils import get_class

from ..errors import UserError
from ..metrics.lookup import metric_classes


def _check_masks(cfg) -> None:
    """A metric that needs object masks (the class's ``needs_masks``) needs a data set that has them."""
    try:
        metric = get_class(cfg.metric.metric._target_)
        data_class = get_class(cfg.data._target_)
        if hasattr(data_class, "masks_configured"):  # masks only when the config gives them (data=folder)
            has_masks = data_class.masks_configured(cfg.data)
        else:
            has_masks = bool(getattr(data_class, "has_masks", False))
    except Exception:  # an unimportable class fails later with its own message
        return
    if getattr(metric, "needs_masks", False) and not has_masks:
        others = ", ".join(sorted({c.name for c in metric_classes() if not c.needs_masks}))
        raise UserError(f"metric {cfg.metric.name} needs object masks, but data {cfg.data.name} has none: "
                        f"use data=imagenet_s, data=synthetic or data=folder with data.masks/data.boxes, or another metric ({others})")


def _number(value, kind=float):
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def _check_numbers(cfg) -> None:
    ft = cfg.finetune
    if ft.val_size is not None and not (_number(ft.val_size, int) or 0) >= 1:
        raise UserError(f"finetune.val_size must be a positive number of images (or null: the whole val split), "
                        f"not {ft.val_size}")
    agreement = _number(ft.min_agreement)
    if agreement is None or not 0.0 <= agreement <= 1.0:
        raise UserError(f"finetune.min_agreement is a share of images in [0, 1], not {ft.min_agreement}")
    lr = _number(ft.lr)
    if lr is None or not lr > 0:
        raise UserError(f"finetune.lr must be a positive number (the Adam learning rate, e.g. 1e-4), not {ft.lr}")
    for key in ("batch_size", "val_batch_size"):
        if not (_number(ft[key], int) or 0) >= 1:
            raise UserError(f"finetune.{key} must be a positive number of images, not {ft[key]}")
    steps = _number(cfg.trainer.get("max_steps"), int)
    if steps is None or steps < 1:
        raise UserError(f"trainer.max_steps must be a positive number of training steps (e.g. 300), "
                        f"not {cfg.trainer.get('max_steps')}")


def _check_accelerator(cfg) -> None:
    """``trainer=gpu`` (or ddp) on a machine where torch sees no CUDA device."""
    accelerator = str(cfg.trainer.get("accelerator", "cpu")).lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={accelerator} needs a CUDA GPU, but torch finds none here: "
                        f"use trainer=cpu (or trainer=ddp_sim for several CPU processes)")


def check_combination(cfg, environment: bool = True) -> None:
    """Fail with one line, before any data or model is loaded, on a config that cannot run.

    A metric that needs masks (RMA) needs a data set with segmentation masks; the numbers of
    ``finetune`` and ``trainer.max_steps`` must make sense; with ``environment``, the trainer's
    accelerator must exist on this machine.
    """
    _check_masks(cfg)
    _check_numbers(cfg)
    if environment:
        _check_accelerator(cfg)
