"""The pre-registered decision settings of ``harmony analyze`` (``conf/analysis/default.yaml``).

They are fixed before anyone looks at the labels and printed at the top of every report, so a
reader sees the rule that produced each verdict. The class carries no defaults: conf/ holds them,
and ``AnalysisSettings.defaults(**overrides)`` builds one from there.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..defaults import config_default
from ..errors import UserError

# Whom a verdict is about: the crossed inference (annotators sampled too) or the example-clustered one.
GENERALIZE = ("people", "these_annotators")


@dataclass(frozen=True)
class AnalysisSettings:
    """How the analysis decides (group ``analysis.settings``).

    alpha: family-wise level; the direction and equivalence tests are Holm-corrected over the cells.
    confidence: level of every interval (decisive rate, net preference, Wilson, bootstrap).
    perceptibility_margin: a cell is ``imperceptible`` when the upper bound of its decisive rate d
        (share of labels that are not Neither) lies below this; ``perceptible`` when the lower bound
        reaches it.
    equivalence_margin: ``no_preference`` when the net preference lies within +-this margin by two
        one-sided tests.
    min_examples: fewer labelled examples than this make the clustered tests unreliable: no direction
        or equivalence verdict (the cell can still be ``imperceptible``).
    min_decisive_bootstrap: below this many decisive labels no bootstrap interval is reported.
    neither_dominant: a Neither share above this sets the ``neither_dominant`` flag.
    bootstrap_resamples, seed: the cluster bootstrap over examples of the decisive fine-tuned share
        (a descriptive figure; 0: none).
    generalize: whom the verdict is about: ``people`` (examples and annotators are samples: the crossed
        inference) or ``these_annotators`` (examples only: new images seen by the same people). The
        report shows both verdicts; this one is the cell's ``verdict``.
    leave_one_out_max: leave-one-annotator-out verdicts for studies of at most this many annotators (each
        removal reruns the analysis's inferences); above it, a note.
    """

    alpha: float
    confidence: float
    perceptibility_margin: float
    equivalence_margin: float
    min_examples: int
    min_decisive_bootstrap: int
    neither_dominant: float
    bootstrap_resamples: int
    seed: int
    generalize: str
    leave_one_out_max: int

    @classmethod
    def defaults(cls, **overrides: Any) -> "AnalysisSettings":
        """conf/analysis's ``settings`` with ``overrides`` (for callers without a Hydra command line)."""
        return cls(**{**_configured(), **overrides})

    def __post_init__(self):
        self._check_types()
        if self.generalize not in GENERALIZE:
            raise UserError(f"analysis generalize must be one of {', '.join(GENERALIZE)}, not {self.generalize!r}: "
                            f"set analysis.settings.generalize")
        for name in ("alpha", "confidence", "perceptibility_margin", "equivalence_margin", "neither_dominant"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise UserError(f"analysis {name} must lie between 0 and 1, not {value}: "
                                f"set analysis.settings.{name}")
        for name in ("min_examples", "min_decisive_bootstrap", "bootstrap_resamples", "leave_one_out_max"):
            if getattr(self, name) < 0:
                raise UserError(f"analysis {name} must be >= 0, not {getattr(self, name)}: "
                                f"set analysis.settings.{name}")

    def _check_types(self) -> None:
        """Numbers given as text on the command line (``analysis.settings.alpha=abc``) say which key to fix."""
        for item in fields(self):
            if item.type in ("str", str):
                continue
            kind = float if item.type in ("float", float) else int
            value = getattr(self, item.name)
            try:
                number = kind(value)
            except (TypeError, ValueError):
                number = None
            if number is None or isinstance(value, bool) or (kind is int and number != float(value)):
                what = "number" if kind is float else "whole number"
                raise UserError(f"analysis.settings.{item.name}={value!r} is not a {what}: "
                                f"set e.g. analysis.settings.{item.name}={_configured()[item.name]}")
            object.__setattr__(self, item.name, number)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """The rule in one line, as printed at the top of every report."""
        return (f"alpha {self.alpha} (Holm over cells), {self.confidence:.0%} intervals, perceptibility margin "
                f"{self.perceptibility_margin}, equivalence margin {self.equivalence_margin}, at least "
                f"{self.min_examples} examples for a direction/equivalence verdict, Neither dominant above "
                f"{self.neither_dominant:.0%}; verdict for {self.generalize.replace('_', ' ')}")


def _configured() -> dict:
    """The keys of conf/analysis's ``settings`` (without Hydra's ``_target_``)."""
    settings = config_default("analysis.settings")
    settings.pop("_target_", None)
    return settings
