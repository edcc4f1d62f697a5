"""IROF, iterative removal of features (Rieger & Hansen 2020, "IROF: a low resource
evaluation metric for explanation methods", ICLR workshop AI for affordable healthcare).

Each image is cut into SLIC superpixels (scikit-image, as Quantus). Superpixels are
removed one at a time in order of their mean relevance (highest first; ties by
superpixel label) by setting them to a baseline, and after each removal the model's
probability of class y, relative to the intact image's, is recorded: the curve
``c_k = p_y(x with the top k superpixels removed) / p_y(x)``, k = 1..n. The score is
the area *over* that curve with the fraction of removed superpixels on the x-axis (as
in the paper): ``irof = 1 - trapz(c, dx=1/n)``; higher = the map's most relevant
superpixels carry the prediction = more faithful.

Relation to Quantus 0.6 (``quantus.IROF``, ``quantus.IterativeRemovalOfFeatures``):

- Quantus' value is ``n - trapz(c, dx=1)``, in units of superpixels, so images with
  more superpixels get larger scores; this is that value divided by n (the paper's
  normalized x-axis). With the same baseline the values agree to float rounding
  (tested: ``ours * n == quantus``).
- Baseline: here the image's own per-channel mean, fixed for the whole curve (the
  paper's mean-value removal). Quantus' default ``perturb_baseline="mean"`` takes the
  mean of the *whole current batch array*, recomputed after every removal, so an
  image's score depends on the other images in its batch and drifts as superpixels
  are replaced; the tests pass our baseline to Quantus explicitly.
- Quantus pads every image's curve to the batch's largest superpixel count with
  zeros before ``np.trapz``, which adds ``c_n / 2`` of spurious area under the curve
  of every image with fewer superpixels (again batch-dependent); here each image
  uses its own n.
- Quantus' ``baseline_replacement_by_mask`` asserts that the (B,1,H,W) superpixel mask
  has the input's shape, so it fails on RGB input ("The shape of arr must be the
  same as the mask shape"); the tests and the benchmark broadcast the mask to the
  channels in a wrapper around Quantus' own function. Quantus 0.6 also calls
  ``np.trapz``, removed in NumPy 2.4 (the tests alias it to ``np.trapezoid``).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.segmentation import slic
from torch import Tensor, nn

from ..fast_forward import FastForward
from .base import Explain, MetricInputError, RemovalMetric, channel_mean, check_images, explain_maps


def slic_segments(x: Tensor, n_segments: int = 100, compactness: float = 10.0) -> Tensor:
    """SLIC superpixels of each image, as Quantus computes them.

    x (B,C,H,W) -> (B,H,W) long labels 0..n_b-1 (consecutive), from
    ``skimage.segmentation.slic(image (H,W,C) float64, n_segments, compactness, start_label=0)``
    on the image as given (Quantus passes its normalized input too). Runs on the CPU.
    """
    images = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    labels = []
    for image in images:
        segments = slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
        _, consecutive = np.unique(segments, return_inverse=True)
        labels.append(consecutive.reshape(segments.shape))
    return torch.from_numpy(np.stack(labels)).long().to(x.device)


def superpixel_ranks(maps: Tensor, segments: Tensor) -> tuple[Tensor, Tensor]:
    """Removal order of the superpixels by mean relevance.

    maps (B,1,H,W), segments (B,H,W) labels -> (pixel_rank (B,1,H,W) long: the removal step
    at which each pixel's superpixel goes, 0 first; counts (B,) long: superpixels per image).
    """
    b = maps.shape[0]
    counts = segments.flatten(1).amax(1) + 1
    n_max = int(counts.max())
    ids = (segments.flatten(1) + torch.arange(b, device=segments.device)[:, None] * n_max).flatten()
    values = maps.detach().flatten(1).to(torch.float64).flatten()
    sums = torch.bincount(ids, weights=values, minlength=b * n_max).view(b, n_max)
    sizes = torch.bincount(ids, minlength=b * n_max).view(b, n_max)
    means = torch.where(sizes > 0, sums / sizes.clamp_min(1), torch.full_like(sums, float("-inf")))
    order = torch.sort(means, dim=1, descending=True, stable=True).indices
    rank_of_segment = torch.empty_like(order)
    rank_of_segment.scatter_(1, order, torch.arange(n_max, device=order.device).expand_as(order))
    pixel_rank = rank_of_segment.gather(1, segments.flatten(1)).view(b, 1, *segments.shape[1:])
    return pixel_rank, counts


def irof_curves(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor, n_segments: int = 100,
                compactness: float = 10.0, baseline: Tensor | float | None = None, segments: Tensor | None = None,
                batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The relative class-probability curves of IROF.

    x (B,C,H,W), y (B,), maps (B,1,H,W) -> (curves (B,n_max) float64: c_k for k = 1..n_b,
    zero-padded past n_b; counts (B,) long = n_b). ``baseline``: (B,C,1,1) / (B,C,H,W)
    tensor or float; default the per-image, per-channel mean. ``segments`` (B,H,W):
    precomputed superpixel labels (default :func:`slic_segments`).
    """
    y, maps = check_images(x, y, maps)
    if segments is None:
        segments = slic_segments(x, n_segments, compactness)
    if segments.shape != (x.shape[0], *x.shape[2:]):
        raise MetricInputError(f"segments must be (B,H,W)={(x.shape[0], *x.shape[2:])} superpixel labels, "
                               f"got {tuple(segments.shape)}")
    if baseline is None:
        baseline = channel_mean(x)
    elif not isinstance(baseline, Tensor):
        baseline = torch.tensor(float(baseline))
    baseline = baseline.to(x)
    try:
        torch.broadcast_shapes(baseline.shape, x.shape)
    except RuntimeError:
        raise MetricInputError(f"IROF baseline of shape {tuple(baseline.shape)} does not broadcast to images "
                               f"{tuple(x.shape)}: give a float, (B,C,1,1) or (B,C,H,W)") from None
    if baseline.ndim < 4:
        baseline = baseline.reshape(*([1] * (4 - baseline.ndim)), *baseline.shape)
    fill = baseline.expand(x.shape[0], *baseline.shape[1:])  # indexed per image below, never materialized
    pixel_rank, counts = superpixel_ranks(maps, segments.to(x.device))
    if int(counts.min()) < 2:
        raise MetricInputError(f"IROF needs at least 2 superpixels per image, got {counts.tolist()}: "
                               f"raise n_segments or use larger images")
    b = x.shape[0]
    # every (image, step) pair, image-major: image i removes its top k = 1..n_i superpixels
    image_of = torch.repeat_interleave(torch.arange(b, device=x.device), counts)
    offsets = torch.cumsum(counts, 0) - counts
    step_of = torch.arange(int(counts.sum()), device=x.device) - offsets[image_of] + 1
    predictor = FastForward(model, batch_size)
    with torch.no_grad():
        original = predictor.probabilities(x).gather(1, y[:, None]).squeeze(1).double()
        probs = []
        for images, steps in zip(image_of.split(predictor.batch_size), step_of.split(predictor.batch_size)):
            removed = pixel_rank[images] < steps[:, None, None, None]
            perturbed = torch.where(removed, fill[images], x[images])
            probs.append(predictor.probabilities(perturbed).gather(1, y[images][:, None]).squeeze(1).double())
        probs = torch.cat(probs)
    reference = original[image_of]
    ratio = torch.where(reference > 0, probs / reference.clamp_min(torch.finfo(reference.dtype).tiny),
                        torch.full_like(probs, float("nan")))
    curves = torch.zeros(b, int(counts.max()), dtype=torch.float64, device=x.device)
    curves[image_of, step_of - 1] = ratio
    return curves, counts


def irof(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor, n_segments: int = 100, compactness: float = 10.0,
         baseline: Tensor | float | None = None, segments: Tensor | None = None, batch_size: int = 64) -> Tensor:
    """Per-image IROF: ``1 - trapz(c_1..c_n, dx=1/n)`` (area over the relative probability curve).

    x (B,C,H,W), y (B,), maps (B,1,H,W) -> (B,) float. Higher = more faithful. Equals
    Quantus' per-image value divided by n (see the module docstring). An image whose
    intact probability is 0 has no relative curve: NaN.
    """
    curves, counts = irof_curves(model, x, y, maps, n_segments, compactness, baseline, segments, batch_size)
    n = counts.to(curves.dtype)
    first = curves[:, 0]
    last = curves.gather(1, (counts - 1)[:, None]).squeeze(1)
    area = (curves.sum(1) - (first + last) / 2) / n  # trapezoids over the n points, dx = 1/n
    return (1.0 - area).float()


class IROF(RemovalMetric):
    """IROF as a fine-tuning target (conf/metric/irof.yaml).

    score: :func:`irof` of ``explain(x, y)`` (higher is better).
    loss: the model's mean probability of class y on x with the top ``loss_fraction`` of
    each map softly removed to the per-image channel mean (IROF's baseline),
    :func:`.base.removal_loss`. Lower = removing what the map marks destroys the prediction.
    """

    name = "irof"
    family = "perturbation"
    higher_is_better = True
    needs_masks = False
    reference = "Rieger & Hansen 2020"
    equals = "quantus.IROF() / n"

    def __init__(self, n_segments: int = 100, compactness: float = 10.0, loss_fraction: float = 0.25,
                 loss_temperature: float = 0.1, batch_size: int = 64):
        super().__init__(loss_fraction, loss_temperature, batch_size)
        self.n_segments = n_segments
        self.compactness = compactness

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y)
        return irof(model, x, y, maps, self.n_segments, self.compactness, batch_size=self.batch_size)

    def baseline(self, x: Tensor) -> Tensor:
        return channel_mean(x)  # IROF's per-image channel mean
