"""Base-model weights that ship inside the package, so the embedded default starts without training.

``shipped/`` holds what ``backbone.weights=auto`` trains on the embedded synthetic default (the
``tiny`` CNN, the default data set and recipe, seed 0). :func:`shipped_weights_path` finds a file
only when everything the weights depend on matches: the backbone's name and parameter shapes, the
data set's fingerprint and the recipe, seed included. The torch version is left out of the key
(unlike the training cache's): a model trained under another version classifies as well, it only
rounds differently. Anything else (another seed, data size, recipe or backbone) trains as before.

Reproducing them: ``harmony data train-base`` runs the same recipe (README, "The base model").
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from torch import nn

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"


def shipped_name(model: nn.Module, name: str, datamodule, recipe: dict) -> str:
    """The file name weights trained by ``recipe`` ship under: named by the seed and a hash of the
    architecture, the data and the recipe (no torch version)."""
    shapes = [tuple(p.shape) for p in model.state_dict().values()]
    key = json.dumps([name, datamodule.fingerprint(), str(shapes), sorted(recipe.items())])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return f"{name}-{datamodule.name}-seed{int(recipe['seed'])}-{digest}.pt"


def shipped_weights_path(model: nn.Module, name: str, datamodule, recipe: dict) -> Path | None:
    """The shipped weights of exactly this backbone, data set and recipe, or None."""
    path = SHIPPED_DIR / shipped_name(model, name, datamodule, recipe)
    return path if path.is_file() else None
