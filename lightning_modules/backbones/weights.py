"""Where a backbone's weights come from: ``auto``, a checkpoint file, or torchvision's.

- ``auto``: train the backbone once on the data module (the synthetic set) until
  it reaches ``target_accuracy`` on the test split, cache the weights under the
  models folder (one file per seed, data, recipe and torch version), and load them
  from there afterwards. The embedded default's weights ship in the package
  (:mod:`.shipped`): the default needs no training.
- a path to a ``.pt``/``.pth``/``.ckpt`` file: a state dict or a Lightning checkpoint.
- a torchvision weights name such as ``IMAGENET1K_V1``: loaded from the local
  torch hub cache only; never downloaded.
- ``none``: random initialisation (timing runs).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torchvision import models

from ..classifier import ClassifierModule, TrainingProgress, accuracy, seconds_per_step
from ..errors import UserError
from ..logs import minutes, quiet_lightning
from .shipped import shipped_name, shipped_weights_path

log = logging.getLogger(__name__)


class WeightsError(UserError):
    """Weights that cannot be found or loaded; the message says what to do."""


def load_state_file(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state dict or a Lightning checkpoint (keys prefixed ``model.``) into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: give backbone.weights a checkpoint path, "
                           f"'auto' (synthetic data) or a torchvision weights name")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path} ({type(exc).__name__}): is it a torch checkpoint?") from exc
    for key in ("state_dict", "model"):  # Lightning and timm training checkpoints hold the weights under a key
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict: save "
                           f"model.state_dict() (or a Lightning checkpoint)")
    for prefix in ("model.", "finetuned.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    check_keys(model, state, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise WeightsError(f"weights file {path} does not fit this backbone ({first}): check backbone= and data.num_classes") from exc
    return model


def check_keys(model: nn.Module, state: dict, path: Path, shown: int = 3) -> None:
    """One line naming a few of the keys ``model`` lacks in ``state`` and the keys it does not have."""
    own = set(model.state_dict())
    missing = [k for k in model.state_dict() if k not in state]
    unexpected = [k for k in state if k not in own]
    if not missing and not unexpected:
        return
    parts = [f"{len(keys)} {what} (e.g. {', '.join(keys[:shown])})"
             for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    raise WeightsError(f"weights file {path} does not fit {type(model).__name__}: {'; '.join(parts)} keys: "
                       f"check backbone= / backbone.arch and data.num_classes")


def load_torchvision_weights(model: nn.Module, arch: str, weights_name: str) -> nn.Module:
    """Load torchvision's ``weights_name`` for ``arch`` from the torch hub cache, never the network."""
    try:
        weights = models.get_model_weights(arch)[weights_name]
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"torchvision has no weights {weights_name!r} for {arch}: use e.g. IMAGENET1K_V1, "
                           f"a checkpoint path, or 'auto'") from exc
    filename = os.path.basename(weights.url)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / filename
    if not path.is_file():
        raise WeightsError(f"{arch} {weights_name} weights are not in the torch hub cache: place {filename} "
                           f"(from {weights.url}) in {folder}/")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's content: every tensor's name, dtype, shape and bytes, in name order.

    Equal for equal weights however they were saved or loaded; any changed value changes it.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def auto_weights_path(model: nn.Module, name: str, datamodule, cache_dir: str | os.PathLike, target_accuracy: float,
                      max_epochs: int, lr: float, seed: int) -> Path:
    """The cache file of ``auto_weights``: named by the seed and a hash of everything the trained weights
    depend on (the architecture, the data, the recipe and the torch version, whose kernels round differently)."""
    recipe = _recipe(target_accuracy, max_epochs, lr, seed)
    shapes = [tuple(p.shape) for p in model.state_dict().values()]
    torch_version = torch.__version__.split("+")[0]
    key = json.dumps([name, datamodule.fingerprint(), str(shapes), sorted(recipe.items()), torch_version])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{name}-{datamodule.name}-seed{int(seed)}-{digest}.pt"


def _recipe(target_accuracy: float, max_epochs: int, lr: float, seed: int) -> dict:
    return {"target_accuracy": float(target_accuracy), "max_epochs": int(max_epochs), "lr": float(lr),
            "seed": int(seed)}


def auto_weights(model: nn.Module, name: str, datamodule, cache_dir: str | os.PathLike,
                 target_accuracy: float = 0.95, max_epochs: int = 30, lr: float = 3e-3, seed: int = 0,
                 shipped: bool = True) -> nn.Module:
    """Train ``model`` on ``datamodule`` once and cache it; later calls load the cache.

    Trains in rounds of epochs until the test accuracy reaches ``target_accuracy``
    (or ``max_epochs``) from initial weights drawn from ``seed`` (each module's
    ``reset_parameters``), seeded and with torch's deterministic algorithms, so that the
    same recipe on the same machine, thread count and torch version gives the same
    weights. The cache file (:func:`auto_weights_path`) records the recipe and the
    accuracy reached. ``shipped``: without a cache file, use the weights the package ships
    for exactly this backbone, data and recipe (:mod:`.shipped`), when there are some.
    """
    if datamodule is None:
        raise WeightsError("backbone.weights=auto trains on the data module, but none was given: "
                           "pass a checkpoint path or torchvision weights name instead")
    recipe = _recipe(target_accuracy, max_epochs, lr, seed)
    path = auto_weights_path(model, name, datamodule, cache_dir, **recipe)
    found = path if path.is_file() else shipped_weights_path(model, name, datamodule, recipe) if shipped else None
    if found is not None:
        payload = torch.load(found, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["state_dict"])
        origin = "cached" if found == path else "shipped"
        log.info("loaded %s %s weights from %s (test accuracy %.3f)", origin, name, found,
                 float(payload["test_accuracy"]))
        return model
    if not getattr(datamodule, "trainable_auto", datamodule.name == "synthetic"):
        raise WeightsError(f"backbone.weights=auto only trains on the synthetic data set, not {datamodule.name}: "
                           f"use backbone.weights=IMAGENET1K_V1 or a checkpoint path")
    log.warning("no trained %s weights for this data and recipe (seed %d): training the base model first, once "
                "(cached as %s); faster: backbone.weights=<a weights file>, or the default backbone=tiny with "
                "seed 0 and the default data sizes, whose weights ship with harmony", name, recipe["seed"], path)
    datamodule.setup()
    deterministic = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        with quiet_lightning():
            test_acc, epochs_done = _train(model, name, datamodule, recipe)
    finally:  # the flag is process-wide: the caller's setting comes back
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"state_dict": model.state_dict(), "test_accuracy": test_acc, "epochs": epochs_done,
                "recipe": recipe, "torch": str(torch.__version__)}, tmp)
    os.replace(tmp, path)
    return model


def train_base(model: nn.Module, name: str, datamodule, cache_dir: str | os.PathLike, auto: dict) -> tuple[Path, str]:
    """Train ``model`` by the ``auto`` recipe (or load what it trained before), never from the shipped
    weights: (its cache file, the name it ships under). How the shipped weights are reproduced."""
    recipe = {key: value for key, value in auto.items() if key != "shipped"}
    auto_weights(model, name, datamodule, cache_dir, shipped=False, **recipe)
    path = auto_weights_path(model, name, datamodule, cache_dir, **_recipe(**recipe))
    return path, shipped_name(model, name, datamodule, _recipe(**recipe))


def _train(model: nn.Module, name: str, datamodule, recipe: dict) -> tuple[float, int]:
    """Train in two rounds of epochs, stopping after the first that reaches the target accuracy:
    (test accuracy, epochs trained)."""
    steps_per_epoch = len(datamodule.train_dataloader())
    max_epochs = recipe["max_epochs"]
    rounds = (max_epochs // 2, max_epochs - max_epochs // 2)
    _announce(model, name, datamodule, steps_per_epoch, rounds)  # before the seed: its batch draws random numbers
    pl.seed_everything(recipe["seed"], workers=True)
    # the seed decides the initial weights too, not the random state at the model's construction
    # (which depends on what the process ran before)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    test_acc, epochs_done = 0.0, 0
    for epochs in rounds:
        module = ClassifierModule(model, lr=recipe["lr"], total_steps=epochs * steps_per_epoch)
        progress = TrainingProgress(f"the {name} base model", log, total_steps=epochs * steps_per_epoch)
        # "warn": an op without a deterministic kernel (some CUDA backward passes) warns instead of failing;
        # no validation loop: the accuracy is measured on the test split after each round
        trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, callbacks=[progress],
                             enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
                             num_sanity_val_steps=0, limit_val_batches=0, deterministic="warn")
        trainer.fit(module, train_dataloaders=datamodule.train_dataloader())
        epochs_done += epochs
        test_acc = accuracy(model, datamodule.test_dataloader())
        log.info("%s after %d epochs: test accuracy %.3f", name, epochs_done, test_acc)
        if test_acc >= recipe["target_accuracy"]:
            break
    return test_acc, epochs_done


def _announce(model: nn.Module, name: str, datamodule, steps_per_epoch: int, rounds: tuple[int, int]) -> None:
    """Say how long the training will take: one measured step of this model times the steps to come."""
    step = seconds_per_step(model, next(iter(datamodule.train_dataloader())))
    parameters = sum(p.numel() for p in model.parameters())
    first = step * steps_per_epoch * rounds[0]
    log.warning("training %s (%.1f M parameters): %d epochs of %d steps at %.2f s per step, expected %s "
                "(%s more if it falls short of the target accuracy)", name, parameters / 1e6, rounds[0],
                steps_per_epoch, step, minutes(first), minutes(step * steps_per_epoch * rounds[1]))
