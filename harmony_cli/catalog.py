"""What exists: one row per metric and attribution config in the config folder, with the facts its class holds.

``harmony metrics`` and ``harmony attributions`` print these rows; the facts live on the classes
(``lightning_modules.metrics.Metric`` / ``lightning_modules.attributions.Attribution`` attributes),
the list of options is the config folder's YAML files (a new file plus a YAML appears here unedited).
"""
from __future__ import annotations

from hydra.utils import get_class
from omegaconf import OmegaConf

from lightning_modules.metrics import metric_class

from .hydra_app import checked_config_dir


def _configs(group: str):
    for path in sorted((checked_config_dir() / group).glob("*.yaml")):
        yield path.stem, OmegaConf.load(path)


def metric_rows() -> list[dict]:
    """name, family, direction, needs masks, reference, equals: one row per conf/metric/*.yaml."""
    rows = []
    for name, cfg in _configs("metric"):
        cls = metric_class(cfg)
        rows.append({"name": name, "family": cls.family,
                     "direction": "higher is better" if cls.higher_is_better else "lower is better",
                     "needs masks": "yes" if cls.needs_masks else "no", "reference": cls.reference,
                     "equals": cls.equals})
    return rows


def attribution_rows() -> list[dict]:
    """name, family, reference, equals: one row per conf/attribution/*.yaml."""
    rows = []
    for name, cfg in _configs("attribution"):
        cls = get_class(str(cfg.explainer._target_))
        rows.append({"name": name, "family": getattr(cls, "family", ""),
                     "reference": getattr(cls, "reference", ""), "equals": getattr(cls, "equals", "")})
    return rows
