"""From a config name (or a metric config) to the metric's class, whose attributes are its facts.

A metric's ``name``, ``family``, ``higher_is_better`` and ``needs_masks`` live on its class
only; conf/metric/<name>.yaml holds the ``_target_``, ``loss_weight`` and training
defaults. Code that needs a fact asks :func:`metric_class`; no list of metrics is kept
anywhere, so a new metric (one file + one YAML) needs no edit here.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .base import Metric, MetricInputError

PACKAGE_CONF = Path(__file__).resolve().parents[2] / "conf"


def metric_class(metric) -> type[Metric]:
    """The :class:`Metric` subclass for ``metric``.

    ``metric`` may be a metric config (the composed ``cfg.metric``, or any mapping with
    ``metric._target_`` or ``_target_``), a dotted class path, or a config name such as
    ``"rma"``: the class whose ``name`` it is, among the imported Metric subclasses, else
    the ``_target_`` of ``<name>.yaml`` in the ``metric`` group of ``HARMONY_CONF`` or the
    packaged conf/. An unknown name is a one-line MetricInputError listing the known ones.
    """
    from hydra.utils import get_class

    if isinstance(metric, Mapping) or hasattr(metric, "keys"):
        target = metric.get("_target_") or (metric.get("metric") or {}).get("_target_")
        if not target:
            raise MetricInputError("a metric config needs metric._target_ (the metric's class), as in "
                                   "conf/metric/rma.yaml")
        return _checked(get_class(str(target)), str(target))
    name = str(metric)
    if "." in name:
        return _checked(get_class(name), name)
    known = {cls.name: cls for cls in _subclasses(Metric) if cls.name}
    if name in known:
        return known[name]
    for conf in _conf_dirs():
        path = conf / "metric" / f"{name}.yaml"
        if path.is_file():
            from omegaconf import OmegaConf
            return metric_class(OmegaConf.load(path))
    names = sorted(set(known) | {p.stem for conf in _conf_dirs() for p in (conf / "metric").glob("*.yaml")})
    raise MetricInputError(f"unknown metric {name!r}: use one of {', '.join(names)} "
                           f"(or add conf/metric/{name}.yaml with its class as metric._target_)")


def _checked(cls, target: str) -> type[Metric]:
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise MetricInputError(f"{target} is not a lightning_modules.metrics.Metric subclass")
    return cls


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def _conf_dirs() -> list[Path]:
    dirs = [Path(os.environ["HARMONY_CONF"])] if os.environ.get("HARMONY_CONF") else []
    return [d for d in (*dirs, PACKAGE_CONF) if (d / "metric").is_dir()]
