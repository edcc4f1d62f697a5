"""conf/ as the one source of every default: the values code needs without a Hydra command line.

Settings classes carry no defaults of their own; a caller without a composed config (the Python
API, the page, a test) takes them from here. Torch-free, so the store and the page import it.

:func:`config_default` composes the whole config once per config folder and environment (a few
hundred milliseconds); :func:`outputs_root` and :func:`default_db_url`, which every store opening
needs, read the two YAML files that define them instead (a few milliseconds).
"""
from __future__ import annotations

import copy
import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from .hydra_app import checked_config_dir, compose_config

# The environment variables the config reads (conf/paths/default.yaml, conf/config.yaml): a change
# in any of them changes the composed values, so they are part of the cache key.
CONFIG_ENV = ("HARMONY_CONF", "HARMONY_OUTPUTS", "HARMONY_DB_URL")
# Hydra's composition uses one global state: the page's sessions (threads) compose one at a time.
_COMPOSING = threading.Lock()


def _environment() -> tuple:
    return tuple(os.environ.get(name) for name in CONFIG_ENV)


@lru_cache(maxsize=8)
def _composed(environment: tuple) -> dict:
    with _COMPOSING:
        return OmegaConf.to_container(compose_config(resolve=True), resolve=True)


def config_default(key: str) -> Any:
    """The composed default of a dotted ``key`` (``study.labels_per_example``, ``analysis.settings``).

    A mapping comes back as a copy, so a caller may change it without changing the cached config.
    """
    value: Any = _composed(_environment())
    for part in key.split("."):
        value = value[part]
    return copy.deepcopy(value)


@lru_cache(maxsize=8)
def _paths(environment: tuple) -> dict:
    folder = checked_config_dir()
    root = OmegaConf.masked_copy(OmegaConf.load(folder / "config.yaml"), ["db_url"])
    root.paths = OmegaConf.load(folder / "paths" / "default.yaml")
    return OmegaConf.to_container(root, resolve=True)


def outputs_root() -> Path:
    """``paths.outputs``: the folder everything harmony writes lives under."""
    return Path(_paths(_environment())["paths"]["outputs"])


def default_db_url() -> str:
    """The root ``db_url``: ``$HARMONY_DB_URL``, else the SQLite file under :func:`outputs_root`."""
    return _paths(_environment())["db_url"]
