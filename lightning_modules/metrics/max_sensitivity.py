"""Max-sensitivity (Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (in)fidelity and sensitivity of
explanations", NeurIPS): how much a map can change when the input moves a little.

    MS(x) = max_{x'} || e_x - e_x' ||_2 / || e_x ||_2

over perturbations ``x' = x + delta`` with delta uniform in ``[-radius, radius]`` per value, the norms
running over all of a map's values. Lower = a more stable map: **lower is better**. The max is
estimated from ``n_samples`` draws (Quantus' 200 by default).

Relation to Quantus 0.6 (``quantus.MaxSensitivity()`` with its defaults: ``batch_uniform_noise`` with
``lower_bound=0.2``, ``difference``, ``fro_norm`` over numerator and denominator, no abs, no
normalisation), the tests' reference: on the same perturbations the values are equal (tested,
``perturbations=`` replays Quantus' NumPy draws). The paper's SENS_MAX is the unnormalized
``max || e_x - e_x' ||`` over a ball of radius r; Quantus (and this) divides by ``|| e_x ||`` (a map's
scale then does not count) and samples the ball as a box. Differences: a map that is all zero and
stays so scores 0 here (nothing changed), NaN in Quantus (0 / 0); one that is all zero and changes
scores inf in both. Samples whose prediction changed count, as in Quantus' default and the paper;
``nan_on_prediction_change=True`` makes such an image NaN, as Quantus'
``return_nan_when_prediction_changes=True``.

The training loss is the relative change of the maps under ``loss_samples`` draws,
``mean_b max_s ||e - e_s||_2 / (||e||_2 + ||e_s||_2)``: in [0, 1] and defined for all-zero maps
(a score's division by ``||e||`` alone blows up as a map vanishes), both maps in the graph.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Explain, Metric, MetricInputError, check_images, explain_maps
from .ris import _maps_and_predictions, perturbed_copies, sample_count


def _check_radius(radius: float) -> float:
    try:
        radius = float(radius)
    except (TypeError, ValueError):
        raise MetricInputError(f"max-sensitivity radius must be a number > 0, got {radius!r}") from None
    if not radius > 0:
        raise MetricInputError(f"max-sensitivity radius must be > 0 (the noise is uniform in [-radius, radius]), "
                               f"got {radius}")
    return radius


def sensitivity_ratio(maps: Tensor, maps_perturbed: Tensor) -> Tensor:
    """``||e - e'||_2 / ||e||_2`` over the last three dimensions, in float64; 0 where both norms are 0 and
    inf where only ``||e||`` is. maps (...,1,H,W) broadcasts against maps_perturbed (...,1,H,W) -> (...)."""
    change = (maps.double() - maps_perturbed.double()).flatten(-3).norm(dim=-1)
    scale = maps.double().flatten(-3).norm(dim=-1).expand_as(change)
    ratio = change / torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.where(scale > 0, ratio, torch.where(change > 0, torch.full_like(change, float("inf")), change))


def max_sensitivity(model: nn.Module, x: Tensor, y: Tensor, explain: Explain, n_samples: int = 200,
                    radius: float = 0.2, generator: torch.Generator | None = None, perturbations: Tensor | None = None,
                    nan_on_prediction_change: bool = False, batch_size: int = 32) -> Tensor:
    """Per-image max-sensitivity (lower is better), estimated from ``n_samples`` noisy copies of x.

    x (B,C,H,W), y (B,) -> (B,) float64. ``explain(x, y)`` gives the (B,1,H,W) maps (for the copies too,
    with the same targets y). ``perturbations`` (n_samples,B,C,H,W) replaces the random draws (delta, added
    to x). Explanations of the copies run ``batch_size // B`` samples per call. With
    ``nan_on_prediction_change`` an image any of whose samples changed the predicted class is NaN.
    """
    y, _ = check_images(x, y)
    b = x.shape[0]
    n_samples = sample_count(x, n_samples, perturbations, "max-sensitivity")
    radius = _check_radius(radius)
    if nan_on_prediction_change:
        maps, predicted = _maps_and_predictions(explain, model, x, y)
    else:
        maps, predicted = explain_maps(explain, x, y), None
    ratios = torch.empty(n_samples, b, dtype=torch.float64, device=x.device)
    for start, copies in perturbed_copies(x, n_samples, perturbations, generator, -radius, radius, batch_size):
        count = copies.shape[0]
        x_perturbed = copies.flatten(0, 1)  # (count*B,C,H,W)
        if predicted is None:
            maps_perturbed = explain_maps(explain, x_perturbed, y.repeat(count))
            ratios[start:start + count] = sensitivity_ratio(maps, maps_perturbed.view(count, *maps.shape))
            continue
        maps_perturbed, predicted_perturbed = _maps_and_predictions(explain, model, x_perturbed, y.repeat(count))
        ratio = sensitivity_ratio(maps, maps_perturbed.view(count, *maps.shape))
        changed = predicted_perturbed.view(count, b) != predicted
        ratios[start:start + count] = torch.where(changed, torch.full_like(ratio, float("nan")), ratio)
    return ratios.amax(0)  # NaN propagates (a changed prediction), as np.max


class MaxSensitivity(Metric):
    """Max-sensitivity as a fine-tuning target (conf/metric/max_sensitivity.yaml); lower is better.

    score: :func:`max_sensitivity` with ``n_samples`` draws from a generator seeded with ``seed`` on
    every call (deterministic). loss: the module docstring's relative change under ``loss_samples``
    draws from the global RNG, the copies explained in one call.
    """

    name = "max_sensitivity"
    family = "stability"
    higher_is_better = False
    needs_masks = False
    reference = "Yeh et al. 2019"
    equals = "quantus.MaxSensitivity() on the same draws"

    def __init__(self, n_samples: int = 200, radius: float = 0.2, seed: int = 0, loss_samples: int = 2,
                 nan_on_prediction_change: bool = False, batch_size: int = 32):
        if int(loss_samples) < 1:
            raise MetricInputError(f"max-sensitivity needs loss_samples >= 1, got {loss_samples}")
        self.n_samples = int(n_samples)
        self.radius = _check_radius(radius)
        self.seed = seed
        self.loss_samples = int(loss_samples)
        self.nan_on_prediction_change = nan_on_prediction_change
        self.batch_size = batch_size

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        return max_sensitivity(model, x, y, explain, self.n_samples, self.radius, generator,
                               nan_on_prediction_change=self.nan_on_prediction_change,
                               batch_size=self.batch_size).float()

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        count = self.loss_samples
        delta = self.radius * (2 * torch.rand((count, *x.shape), dtype=x.dtype, device=x.device) - 1)
        maps = explain_maps(explain, x, y, create_graph=True)
        maps_perturbed = explain_maps(explain, (x.unsqueeze(0) + delta).flatten(0, 1), y.repeat(count),
                                      create_graph=True).view(count, *maps.shape)
        change = (maps - maps_perturbed).flatten(2).norm(dim=2)  # (count,B)
        scale = maps.flatten(1).norm(dim=1) + maps_perturbed.flatten(2).norm(dim=2)
        return (change / (scale + 1e-12)).amax(0).mean()
