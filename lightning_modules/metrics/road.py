"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A consistent
and efficient evaluation strategy for attribution methods", ICML).

For each percentage p of a grid, the p% most relevant pixels of each image (by its
map; ties by pixel index) are replaced by noisy linear imputation (:mod:`.imputation`),
and the model classifies the result: the MoRF ("most relevant first") accuracy curve
(B,P). Removing the p% *least* relevant pixels instead gives the LeRF curve. ROAD's
point is the imputation: a removed region filled from its surroundings, plus noise,
does not leak the removal mask's shape to the model.

Direction: Rong et al. report both curves: a faithful map has a *low* MoRF curve
(removing what it marks destroys the prediction) and a *high* LeRF curve (removing
what it leaves out does not). harmony's per-image scores are all **higher is better**,
in [0,1] (``curve="morf"`` | ``"lerf"``) or [-1,1] (``"combined"``):

- ``morf``  (default): ``1 - mean_p MoRF_p``, the curve's drop;
- ``lerf``: ``mean_p LeRF_p``, the accuracy kept when the least relevant pixels go;
- ``combined``: ``mean_p (LeRF_p - MoRF_p)``, the area between the two curves (both
  readings at once; twice the forward passes of one curve). Rong et al. report the two
  curves side by side and define no single number; this gap is the "symmetric relevance
  gain" of Bluecher, Vielhaben & Strodthoff 2024 ("Decoupling pixel flipping and
  occlusion strategy for consistent XAI benchmarks", TMLR), which they found ranks
  attributions consistently where MoRF and LeRF alone disagree.

The grid (``percentages``) is a setting: a list, or a preset name from
:data:`PERCENTAGE_PRESETS`: ``harmony`` (default: 5, 14, ..., 86, 10 points, cheap
enough to score during fine-tuning) or ``quantus`` (1, 3, ..., 99, Quantus' default
grid, 50 points).

Relation to Quantus 0.6 (``quantus.ROAD``), the tests' reference:

- Same ordering (``argsort(-a)``; Quantus' quicksort breaks ties arbitrarily, this a
  stable sort), same pixel count ``int(H*W*p/100)``, same imputation system and noise
  (``noise * N(0,1)`` on removed pixels; torch's generator here, NumPy's global one in
  Quantus), same correctness test (``argmax == y``). With ``noise=0`` the curves are
  equal (tested; the imputations agree to ~1e-4 of the image's standard deviation).
- Quantus ranks the map *broadcast to the input's channels*, so on RGB input its
  indices run past H*W and ``noisy_linear_imputation`` raises IndexError: Quantus'
  ROAD works on single-channel input only. Here every channel of a removed pixel is
  imputed (the original ROAD's behaviour); the tests compare RGB results against
  Quantus' own per-image code with the map ranked per pixel.
- Quantus returns the batch-mean MoRF accuracy per percentage (a dict); this returns
  the per-image curve (:func:`road_curve`) and its score (:func:`road`). Quantus has no
  LeRF option; its MoRF on the negated map is the LeRF curve (tested).
- p = 100 (every pixel removed) has no linear imputation (Quantus' solver fails on
  the singular system); here the removed pixels become 0 plus noise.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..fast_forward import FastForward
from .base import Explain, MetricInputError, RemovalMetric, box_blur, check_images, explain_maps
from .imputation import solve_imputation

PERCENTAGE_PRESETS = {"harmony": tuple(range(5, 95, 9)), "quantus": tuple(range(1, 100, 2))}
DEFAULT_PERCENTAGES = PERCENTAGE_PRESETS["harmony"]
CURVES = ("morf", "lerf", "combined")


def _percentages(percentages: Sequence[float] | str) -> list[float]:
    if isinstance(percentages, str):
        if percentages not in PERCENTAGE_PRESETS:
            raise MetricInputError(f"unknown ROAD percentage grid {percentages!r}: use one of "
                                   f"{', '.join(PERCENTAGE_PRESETS)} or a list of percentages")
        percentages = PERCENTAGE_PRESETS[percentages]
    values = [float(p) for p in percentages]
    if not values or any(not 0 < p <= 100 for p in values):
        raise MetricInputError(f"ROAD percentages must lie in (0, 100], got {list(percentages)}")
    return values


def _curve(curve: str) -> str:
    if curve not in CURVES:
        raise MetricInputError(f"unknown ROAD curve {curve!r}: use one of {', '.join(CURVES)}")
    return curve


def pixel_ranks(maps: Tensor, descending: bool = True) -> Tensor:
    """(B,1,H,W) -> (B,1,H,W) long: 0 for each image's most (``descending=False``: least)
    relevant pixel, 1 for the next, ... (a stable sort: equal values are ranked by pixel index)."""
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks.view_as(maps)


def road_curve(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor,
               percentages: Sequence[float] | str = DEFAULT_PERCENTAGES, noise: float = 0.01,
               generator: torch.Generator | None = None, batch_size: int = 64, chunk_pixels: int = 1 << 19,
               rtol: float = 3e-5, order: str = "morf") -> Tensor:
    """Correctness after removing each percentage of the most (``order="morf"``) or least
    (``order="lerf"``) relevant pixels.

    x (B,C,H,W), y (B,), maps (B,1,H,W) -> (B,P) bool: ``argmax model(x_p) == y`` with
    x_p = x with its top (bottom) ``int(H*W*p/100)`` pixels replaced by noisy linear imputation.
    ``generator`` draws the noise (seed it for reproducible scores); the model runs in
    chunks of ``batch_size`` images through :class:`FastForward`.
    """
    y, maps = check_images(x, y, maps)
    pcts = _percentages(percentages)
    b, _, h, w = x.shape
    if order not in ("morf", "lerf"):
        raise MetricInputError(f"unknown ROAD order {order!r}: use morf or lerf")
    ranks = pixel_ranks(maps.detach(), descending=order == "morf")
    predictor = FastForward(model, batch_size)
    per_image = max(1, x[0].numel())
    step = max(1, chunk_pixels // per_image)
    correct = torch.zeros(b, len(pcts), dtype=torch.bool, device=x.device)
    pending: list[tuple[Tensor, slice, int]] = []  # (perturbed images, image rows, percentage index)

    def flush():
        if not pending:
            return
        predictions = predictor.logits(torch.cat([images for images, _, _ in pending])).argmax(-1)
        start = 0
        for images, rows, j in pending:
            correct[rows, j] = predictions[start:start + len(images)] == y[rows]
            start += len(images)
        pending.clear()

    with torch.no_grad():
        for lo in range(0, b, step):
            rows = slice(lo, min(b, lo + step))
            xc, rc = x[rows], ranks[rows]
            previous = None
            for j, p in enumerate(pcts):
                unknown = rc < int(h * w * p / 100)
                # the previous (smaller) removal's solution is a close first guess for this one
                imputed, _ = solve_imputation(xc, unknown, initial=previous, rtol=rtol)
                previous = imputed
                if noise:
                    eps = torch.randn(imputed.shape, generator=generator, dtype=imputed.dtype,
                                      device=generator.device if generator is not None else imputed.device)
                    imputed = imputed + noise * eps.to(imputed.device) * unknown
                pending.append((imputed, rows, j))
                if sum(len(t) for t, _, _ in pending) >= batch_size:
                    flush()
        flush()
    return correct


def road(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor, percentages: Sequence[float] | str = DEFAULT_PERCENTAGES,
         noise: float = 0.01, generator: torch.Generator | None = None, batch_size: int = 64,
         curve: str = "morf") -> Tensor:
    """Per-image ROAD score, higher = more faithful.

    x (B,C,H,W), y (B,), maps (B,1,H,W) -> (B,) float: ``1 - mean_p MoRF_p`` (``curve="morf"``),
    ``mean_p LeRF_p`` (``"lerf"``) or ``mean_p (LeRF_p - MoRF_p)`` (``"combined"``), with the
    curves from :func:`road_curve` (MoRF first, then LeRF, from the same ``generator``).
    """
    curve = _curve(curve)
    score = torch.zeros(x.shape[0], device=x.device)
    if curve in ("morf", "combined"):
        score = score - road_curve(model, x, y, maps, percentages, noise, generator, batch_size).float().mean(1)
    if curve in ("lerf", "combined"):
        score = score + road_curve(model, x, y, maps, percentages, noise, generator, batch_size,
                                   order="lerf").float().mean(1)
    return score + 1.0 if curve == "morf" else score


class ROAD(RemovalMetric):
    """ROAD as a fine-tuning target (conf/metric/road.yaml).

    score: :func:`road` of ``explain(x, y)`` (higher is better) on the ``curve`` ("morf",
    "lerf" or "combined") over the grid ``percentages`` (a list or a preset name: "harmony",
    "quantus"), with the noise drawn from a generator seeded with ``seed`` on every call
    (the same inputs give the same score).

    loss: the model's mean probability of class y on x with the top ``loss_fraction`` of
    each map softly removed (:func:`.base.removal_loss`), the removed part blended
    towards a box-blurred copy of the image (a differentiable stand-in for the linear
    imputation, which fills a hole from its surroundings). Lower = removing what the
    map marks destroys the prediction.
    """

    name = "road"
    family = "perturbation"
    higher_is_better = True
    needs_masks = False
    reference = "Rong et al. 2022"
    equals = "quantus.ROAD() (MoRF) on single-channel images"

    def __init__(self, percentages: Sequence[float] | str = "harmony", noise: float = 0.01, seed: int = 0,
                 loss_fraction: float = 0.25, loss_temperature: float = 0.1, batch_size: int = 64,
                 curve: str = "morf"):
        super().__init__(loss_fraction, loss_temperature, batch_size)
        self.percentages = tuple(_percentages(percentages))
        self.curve = _curve(curve)
        self.noise = float(noise)
        self.seed = seed

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        return road(model, x, y, maps, self.percentages, self.noise, generator, self.batch_size, self.curve)

    def baseline(self, x: Tensor) -> Tensor:
        return box_blur(x)  # a differentiable stand-in for ROAD's linear imputation
