"""What conf/ sets against what the library classes default to (the classes keep defaults for Python users
without Hydra; each must equal its YAML's). Used by tests/harmony_cli/test_conf_defaults.py for every option
and by each method's and metric's own tests for theirs."""
from __future__ import annotations

import inspect

from hydra.utils import get_object
from omegaconf import OmegaConf

from harmony_cli.hydra_app import compose_config


def class_defaults_against_conf(group: str, option: str) -> dict:
    """``{(class, key): (class default, conf value)}`` where the ``_target_`` of ``group=option`` has its
    own default for a key the YAML sets (a list in conf counts as the tuple a class may default to)."""
    node = compose_config([f"{group}={option}"], resolve=True)[group]
    found = {}
    nodes = [node] + [value for value in node.values() if OmegaConf.is_dict(value)]
    for item in (n for n in nodes if "_target_" in n):
        values = OmegaConf.to_container(item, resolve=True)
        parameters = inspect.signature(get_object(values.pop("_target_"))).parameters
        for key, value in values.items():
            default = getattr(parameters.get(key), "default", inspect.Parameter.empty)
            if default is not inspect.Parameter.empty:
                found[(item._target_, key)] = (default, tuple(value) if isinstance(value, list) else value)
    return found


def keys_defaulting_as_conf(group: str, option: str) -> set[str]:
    """The keys whose class default equals the YAML's value (the check's passing keys, for a test to name)."""
    return {key for (_, key), (default, configured) in class_defaults_against_conf(group, option).items()
            if default == configured}
