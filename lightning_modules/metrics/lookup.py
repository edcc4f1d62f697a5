"""From a metric config (or a class name) to the metric's class, whose attributes are its facts.

A metric's ``name``, ``family``, ``higher_is_better`` and ``needs_masks`` live on its class
only; conf/metric/<name>.yaml holds the ``_target_``, ``loss_weight`` and training
defaults. Code that needs a fact asks :func:`metric_class` (or walks :func:`metric_classes`); no
list of metrics is kept anywhere, so a new metric (one file + one YAML) needs no edit here.
Finding a config by name is the CLI's work (``harmony_cli.hydra_app``, the one config-folder
discovery): this package receives composed configs.
"""
from __future__ import annotations

from collections.abc import Mapping

from hydra.utils import get_class

from .base import Metric, MetricInputError


def metric_classes() -> list[type[Metric]]:
    """Every imported :class:`Metric` subclass that has a ``name``, in definition order."""
    found, todo = [], list(Metric.__subclasses__())
    while todo:
        cls = todo.pop(0)
        todo.extend(cls.__subclasses__())
        if getattr(cls, "name", "") and cls not in found:
            found.append(cls)
    return found


def metric_class(metric) -> type[Metric]:
    """The :class:`Metric` subclass for ``metric``.

    ``metric`` may be a metric config (the composed ``cfg.metric``, or any mapping with
    ``metric._target_`` or ``_target_``), a dotted class path, or the ``name`` of an imported
    metric class such as ``"rma"``. Anything else is a one-line MetricInputError.
    """
    if isinstance(metric, Mapping) or hasattr(metric, "keys"):
        target = metric.get("_target_") or (metric.get("metric") or {}).get("_target_")
        if not target:
            raise MetricInputError("a metric config needs metric._target_ (the metric's class), as in "
                                   "conf/metric/rma.yaml")
        return _checked(get_class(str(target)), str(target))
    name = str(metric)
    if "." in name:
        return _checked(get_class(name), name)
    known = {cls.name: cls for cls in metric_classes()}
    if name in known:
        return known[name]
    raise MetricInputError(f"unknown metric {name!r}: use one of {', '.join(sorted(known))} "
                           f"(or add conf/metric/{name}.yaml with its class as metric._target_)")


def _checked(cls, target: str) -> type[Metric]:
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        raise MetricInputError(f"{target} is not a lightning_modules.metrics.Metric subclass")
    return cls
