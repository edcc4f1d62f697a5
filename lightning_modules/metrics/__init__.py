"""Explanation-quality metrics: batched torch functions and the classes the fine-tuning uses.

Functions (x (B,C,H,W), y (B,), maps (B,1,H,W); each returns (B,) per-image values):

- :func:`relevance_mass_accuracy` (maps, masks): localization, Arras et al. 2022.
- :func:`focus` (mosaic maps, target quadrants) and :func:`make_mosaics`: Arias-Duart et al. 2022.
- :func:`road` (model, x, y, maps): perturbation, Rong et al. 2022 (noisy linear imputation).
- :func:`irof` (model, x, y, maps): perturbation, Rieger & Hansen 2020 (SLIC superpixels).
- :func:`relative_input_stability` (model, x, y, explain): stability, Agarwal et al. 2022.
- :func:`gini_index` (maps): sparseness, Chalasani et al. 2020.
- :func:`map_entropy` (maps): complexity, Bhatt et al. 2020.
- :func:`pointing_game` (maps, masks): localization, Zhang et al. 2018.
- :func:`relevance_rank_accuracy` (maps, masks): localization, Arras et al. 2022.
- :func:`perturbation_curve` (model, x, y, maps): deletion / insertion, Petsiuk et al. 2018.
- :func:`max_sensitivity` (model, x, y, explain): stability, Yeh et al. 2019.

Classes (conf/metric/<name>.yaml ``metric._target_``), each with the class attributes
``name``, ``family``, ``higher_is_better``, ``needs_masks`` (the single source of these
facts; :func:`metric_class` finds the class of a metric config, :func:`metric_classes` lists them),
``score(model, x, y, explain, masks=None) -> (B,)``
(no gradient) and ``loss(model, x, y, explain, masks=None) -> scalar`` (differentiable
through ``explain(..., create_graph=True)``, lower is better):
:class:`RelevanceMassAccuracy`, :class:`Focus`, :class:`ROAD`, :class:`IROF`,
:class:`RelativeInputStability`, :class:`Sparseness`, :class:`Complexity`, :class:`PointingGame`,
:class:`RelevanceRankAccuracy`, :class:`Deletion`, :class:`Insertion`,
:class:`MaxSensitivity`. Each module's docstring says how it
follows its paper and where it differs from Quantus 0.6, the reference the tests compare against.
"""
from ..fast_forward import FastForward
from .base import Metric, MetricInputError, RemovalMetric
from .complexity import Complexity, map_entropy
from .deletion_insertion import Deletion, Insertion, perturbation_auc, perturbation_curve
from .focus import Focus, focus, make_mosaics
from .imputation import noisy_linear_imputation
from .irof import IROF, irof, irof_curves, slic_segments
from .lookup import metric_class, metric_classes
from .max_sensitivity import MaxSensitivity, max_sensitivity
from .pointing_game import PointingGame, pointing_game
from .relevance_rank_accuracy import RelevanceRankAccuracy, relevance_rank_accuracy
from .ris import RelativeInputStability, relative_input_stability
from .rma import RelevanceMassAccuracy, relevance_mass_accuracy
from .road import PERCENTAGE_PRESETS, ROAD, road, road_curve
from .sparseness import Sparseness, gini_index

__all__ = [
    "Complexity", "Deletion", "FastForward", "Focus", "IROF", "Insertion", "MaxSensitivity", "Metric",
    "MetricInputError", "PERCENTAGE_PRESETS", "PointingGame", "ROAD", "RemovalMetric", "RelativeInputStability",
    "RelevanceMassAccuracy", "RelevanceRankAccuracy", "Sparseness", "focus", "gini_index", "irof",
    "irof_curves", "make_mosaics", "map_entropy", "max_sensitivity", "metric_class", "metric_classes",
    "noisy_linear_imputation", "perturbation_auc", "perturbation_curve", "pointing_game",
    "relative_input_stability", "relevance_mass_accuracy", "relevance_rank_accuracy", "road", "road_curve",
    "slic_segments",
]
