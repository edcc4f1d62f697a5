"""The ``study`` config group (conf/study/default.yaml) as a typed, checked settings object."""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from ..errors import UserError
from ..store.models import DEFAULT_LABELS_PER_EXAMPLE
from .rendering import RenderSettings


class BuildError(UserError):
    """A run or study that cannot be built; the message says what to do."""


# Settings whose change would mix differently made examples into one study (recorded in its config).
PINNED_SETTINGS = ("seed", "image_size", "colormap", "image_weight", "resample", "disjoint_images")


@dataclass(frozen=True)
class StudySettings:
    """How build-dataset makes a study (group ``study``; see conf/study/default.yaml for each key)."""

    run: Optional[str] = None
    name: Optional[str] = None
    examples_per_cell: int = 200
    seed: int = 0
    image_size: Optional[int] = 224
    resample: str = "bilinear"
    colormap: str = "inferno"
    image_weight: float = 0.35
    batch_size: int = 32
    device: str = "auto"
    db_url: Optional[str] = None
    image_dir: Optional[str] = None
    disjoint_images: bool = True
    labels_per_example: int = DEFAULT_LABELS_PER_EXAMPLE  # recorded in the study; the page hands out this many

    @classmethod
    def from_config(cls, study: Any) -> "StudySettings":
        """From the composed ``study`` group (a DictConfig or dict): each value checked, one line if wrong."""
        from omegaconf import DictConfig, OmegaConf

        values = OmegaConf.to_container(study, resolve=True) if isinstance(study, DictConfig) else dict(study)
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise BuildError(f"study.{unknown[0]} is not a study setting: choose among {', '.join(known)}")
        return cls(**{key: _typed(key, value, known[key].type) for key, value in values.items()})

    def __post_init__(self):
        for key in ("examples_per_cell", "batch_size", "labels_per_example"):
            if getattr(self, key) < 1:
                raise BuildError(f"study.{key}={getattr(self, key)} must be at least 1")
        self.render  # checks colormap, resample, image_size, image_weight

    @property
    def render(self) -> RenderSettings:
        return RenderSettings(image_size=self.image_size, colormap=self.colormap, image_weight=self.image_weight,
                              resample=self.resample)

    def pinned(self) -> dict:
        """The settings a study records and a later build must repeat."""
        return {key: getattr(self, key) for key in PINNED_SETTINGS}

    def image_root(self, outputs: str | Path) -> Path:
        return Path(self.image_dir) if self.image_dir else Path(outputs) / "study_images"


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a text"}
_EXAMPLES = {"int": "50", "float": "0.5", "bool": "true", "str": "NAME"}


def _typed(key: str, value: Any, annotation: str) -> Any:
    """``value`` as the field's type (``int``, ``Optional[int]``, ...); one line when it is not one."""
    optional = annotation.startswith("Optional[")
    kind = annotation[len("Optional["):-1] if optional else annotation
    if value is None:
        if optional:
            return None
        raise BuildError(f"study.{key} must be set: give study.{key}=...")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and number and float(value).is_integer():
        return int(value)
    if kind == "float" and number:
        return float(value)
    if kind == "str" and (number or isinstance(value, str)):
        return str(value)  # a name like 2024 arrives as a number
    hint = " or null" if optional else ""
    raise BuildError(f"study.{key}={value!r} is not {_KINDS[kind]}: give {_KINDS[kind]}{hint}, "
                     f"e.g. study.{key}={_EXAMPLES[kind]}")
