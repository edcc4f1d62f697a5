"""The ``study`` config group (conf/study/default.yaml) as a typed, checked settings object.

Torch-free, so build-dataset checks its settings before anything heavy is imported or loaded. The
classes carry no defaults: conf/ holds them, and ``defaults(**overrides)`` builds one from there.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from ..defaults import config_default
from ..designs import DESIGNS, RULE_FIELDS, RULE_KEY
from ..errors import UserError

# Perceptually uniform colormaps of matplotlib; jet-like maps (turbo, jet) are not.
PERCEPTUAL_COLORMAPS = ("inferno", "magma", "plasma", "viridis", "cividis")
RESAMPLE_MODES = ("nearest", "bilinear", "bicubic")
SEQUENTIAL_KEYS = ("max_labels_per_cell", "look_every")


@dataclass(frozen=True)
class RenderSettings:
    """How maps and images are drawn.

    ``image_size``: side of the PNGs in pixels (None: the data's own size).
    ``image_weight``: how much of the grey image shows through the heatmap (0: none).
    """

    image_size: int | None
    colormap: str
    image_weight: float
    resample: str

    @classmethod
    def defaults(cls, **overrides: Any) -> "RenderSettings":
        """conf/study's rendering keys, with ``overrides``."""
        study = config_default("study")
        return cls(**{**{item.name: study[item.name] for item in fields(cls)}, **overrides})

    def __post_init__(self):
        if self.colormap not in PERCEPTUAL_COLORMAPS:
            raise UserError(f"study.colormap={self.colormap!r} is not a perceptually uniform colormap: "
                            f"choose one of {', '.join(PERCEPTUAL_COLORMAPS)}")
        if self.resample not in RESAMPLE_MODES:
            raise UserError(f"study.resample={self.resample!r} is unknown: choose one of {', '.join(RESAMPLE_MODES)}")
        if self.image_size is not None and not 8 <= int(self.image_size) <= 4096:
            raise UserError(f"study.image_size={self.image_size} is out of range: give 8..4096 pixels, or null")
        if not 0.0 <= float(self.image_weight) <= 1.0:
            raise UserError(f"study.image_weight={self.image_weight} must lie in [0, 1]")


class BuildError(UserError):
    """A run or study that cannot be built; the message says what to do."""


# Settings a study records and a later build must repeat to complete it: another value would mix
# two differently made studies in one.
PINNED_SETTINGS = ("seed", "image_size", "colormap", "image_weight", "resample", "disjoint_images",
                   "examples_per_cell", "labels_per_example", "design", "sequential")


@dataclass(frozen=True)
class StudySettings:
    """How build-dataset makes a study (group ``study``; see conf/study/default.yaml for each key)."""

    run: Optional[str]
    name: Optional[str]
    examples_per_cell: int
    seed: int
    image_size: Optional[int]
    resample: str
    colormap: str
    image_weight: float
    batch_size: int
    device: str
    db_url: Optional[str]
    image_dir: Optional[str]
    disjoint_images: bool
    labels_per_example: int  # recorded in the study; the page hands out this many
    instructions: Optional[str]  # Markdown for the annotators, or a file's path (study_row records it)
    design: str                  # fixed | sequential (recorded in the study; the store stops decided cells)
    sequential: dict             # max_labels_per_cell (None: examples x labels_per_example), look_every

    @classmethod
    def defaults(cls, **overrides: Any) -> "StudySettings":
        """The composed ``study`` group of conf/ with ``overrides`` (for callers without a Hydra command line)."""
        return cls.from_config({**config_default("study"), **overrides})

    @classmethod
    def from_config(cls, study: Any) -> "StudySettings":
        """From the composed ``study`` group (a DictConfig or dict): each value checked, one line if wrong."""
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
        check_design(self.design, self.sequential)
        planned, maximum = self.examples_per_cell * self.labels_per_example, self.sequential.get("max_labels_per_cell")
        if self.design == "sequential" and maximum is not None and maximum > planned:
            raise BuildError(f"study.sequential.max_labels_per_cell={maximum} is more than a cell can get "
                             f"(examples_per_cell x labels_per_example = {planned}): give at most {planned}, or null")

    @property
    def render(self) -> RenderSettings:
        return RenderSettings(image_size=self.image_size, colormap=self.colormap, image_weight=self.image_weight,
                              resample=self.resample)

    def pinned(self) -> dict:
        """The settings a study records and a later build must repeat."""
        return {key: getattr(self, key) for key in PINNED_SETTINGS}

    def image_root(self, outputs: str | Path) -> Path:
        return Path(self.image_dir) if self.image_dir else Path(outputs) / "study_images"


def pre_registered_rule(settings: "StudySettings", analysis_settings: DictConfig | dict) -> dict:
    """``{"rule": {...}}``: the analysis settings a sequential study's looks will use (conf/analysis's, those of
    ``RULE_FIELDS``); nothing for a fixed study, whose rule is analyze's at the end."""
    if settings.design != "sequential":
        return {}
    rule = OmegaConf.to_container(analysis_settings, resolve=True) if isinstance(analysis_settings, DictConfig) \
        else dict(analysis_settings)
    return {RULE_KEY: {key: rule[key] for key in RULE_FIELDS}}


def check_design(design: Any, sequential: Any) -> None:
    """``study.design`` and ``study.sequential``: a known design, and positive whole numbers (one line if not)."""
    if design not in DESIGNS:
        raise BuildError(f"study.design={design!r} is unknown: choose one of {', '.join(DESIGNS)}")
    if not isinstance(sequential, dict):
        raise BuildError(f"study.sequential={sequential!r} is not a group: give study.sequential.look_every=10 "
                         f"and study.sequential.max_labels_per_cell=N or null")
    unknown = sorted(set(sequential) - set(SEQUENTIAL_KEYS))
    if unknown:
        raise BuildError(f"study.sequential.{unknown[0]} is not a sequential setting: choose among "
                         f"{', '.join(SEQUENTIAL_KEYS)}")
    for key in SEQUENTIAL_KEYS:
        value = sequential.get(key)
        if value is None and key == "max_labels_per_cell":
            continue
        whole = isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer()
        if not whole or value < 1:
            null = " (or null: examples_per_cell x labels_per_example)" if key == "max_labels_per_cell" else ""
            raise BuildError(f"study.sequential.{key}={value!r} must be a whole number of labels, at least 1{null}")


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a text",
          "dict": "a group of settings"}
_EXAMPLES = {"int": "50", "float": "0.5", "bool": "true", "str": "NAME", "dict": "{look_every: 10}"}


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
    if kind == "dict" and isinstance(value, dict):
        return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in value.items()}
    if kind == "str" and (number or isinstance(value, str)):
        return str(value)  # a name like 2024 arrives as a number
    hint = " or null" if optional else ""
    raise BuildError(f"study.{key}={value!r} is not {_KINDS[kind]}: give {_KINDS[kind]}{hint}, "
                     f"e.g. study.{key}={_EXAMPLES[kind]}")
