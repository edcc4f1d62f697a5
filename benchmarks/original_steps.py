"""The published study's fine-tuning step per metric family, re-expressed as a speed reference.

The study's own code (a trainer class per family and a metric class per metric, built on
Quantus 0.5 and NumPy) is not part of harmony; what matters for a speed comparison is the
work one of its steps does, carried over here as facts:

- two networks: the frozen original and the one being fine-tuned; per step the original
  predicts the batch under ``no_grad``, then runs *again with a graph* for the agreement
  term, and the fine-tuned net runs on the plain batch for that term (a forward pass of
  its own, beside the attribution's);
- agreement term ``mean(1 - (cos(o_orig, o_student) + 1) / 2)`` (row-wise cosine);
- RMA (its mask trainer): ``explain(x)`` with a graph, ``sum(r * m) / sum(r)``, weight 0.05,
  gradient clipping at norm 1;
- Focus: half-resolution H x W mosaics of four images; the fine-tuned net first classifies
  the batch and the mosaics under ``no_grad`` to pick each mosaic's target image, then
  explains the mosaics with a graph; weight 0.01;
- ROAD / IROF (its masked-similarity trainer): ``explain(x)`` (no graph needed, the map
  only chooses pixels), then per image *on the CPU in NumPy* a random share (5-95%) of the
  most relevant pixels removed (ROAD: Quantus' noisy linear imputation; IROF: SLIC
  superpixels, the most relevant ones set to the image mean), then the fine-tuned net on
  the removed copy; loss ``p(masked) / p(plain)`` of the original's class, weight
  ``0.1 * accuracy`` of the previous step;
- RIS (its attribution-similarity trainer): ``explain(x)`` without a graph, ``explain(x')``
  with one for ``x' = x + U(0.02, 0.2)``, the relative change of the normalised maps over
  the relative change of the input, weight 5e-6;
- ``gc.collect()`` after every step (and ``torch.cuda.empty_cache()``, a no-op on CPU).

The attribution itself is harmony's (the same GradCAM / guided backprop as the study's),
called once per attribution the study made; the study's code computed the logits for it
in a separate ``model(x)`` call that is *not* counted here, so this reference errs on the
fast side.
"""
from __future__ import annotations

import gc
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

Explain = Callable[..., Tensor]  # explain(x, y, create_graph=...) -> (B,1,H,W)


def _agreement(o_orig: Tensor, o_student: Tensor) -> Tensor:
    """mean_b (1 - (cos(o_orig_b, o_student_b) + 1) / 2), rows of (B,K) logits."""
    cosine = (F.normalize(o_orig, dim=-1) * F.normalize(o_student, dim=-1)).sum(-1)
    return (1 - (cosine + 1) / 2).mean()


def _predict_and_agree(orig: nn.Module, learn: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        predicted = orig(x).argmax(-1)
    return predicted, _agreement(orig(x), learn(x))  # the original again, with a graph (as the study did)


def _rma_loss(learn, orig, explain, x, y, masks, state) -> Tensor:
    _, agreement = _predict_and_agree(orig, learn, x)
    maps = explain(x, y, create_graph=True)
    mass = (maps * masks).flatten(1).sum(-1) / (maps.flatten(1).sum(-1) + 1e-9)
    return agreement + 0.05 * (1 - mass).mean()


def _half_mosaics(x: Tensor) -> Tensor:
    """(B,C,H,W) -> (B//4,C,H,W): four half-resolution images per mosaic, quadrants in order."""
    b, c, h, w = x.shape
    small = F.interpolate(x, (h // 2, w // 2), mode="bilinear")
    quarter = b // 4
    mosaics = torch.zeros(quarter, c, h, w)
    for k, (top, left) in enumerate(((0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2))):
        mosaics[:, :, top:top + h // 2, left:left + w // 2] = small[k * quarter:(k + 1) * quarter]
    return mosaics


def _focus_loss(learn, orig, explain, x, y, masks, state) -> Tensor:
    _, agreement = _predict_and_agree(orig, learn, x)
    b, _, h, w = x.shape
    quarter = b // 4
    mosaics = _half_mosaics(x)
    with torch.no_grad():
        probabilities = learn(x).softmax(-1)
        mosaic_targets = learn(mosaics).argmax(-1)
    rows = torch.arange(quarter)
    per_quadrant = torch.stack([probabilities[k * quarter:(k + 1) * quarter][rows, mosaic_targets]
                                for k in range(4)], 1)
    chosen = per_quadrant.argmax(-1)
    maps = explain(mosaics, mosaic_targets, create_graph=True)
    quadrants = torch.stack([maps[:, :, :h // 2, :w // 2].flatten(1).sum(-1), maps[:, :, :h // 2, w // 2:].flatten(1).sum(-1),
                             maps[:, :, h // 2:, :w // 2].flatten(1).sum(-1), maps[:, :, h // 2:, w // 2:].flatten(1).sum(-1)], 1)
    focus = quadrants[rows, chosen] / (quadrants.sum(-1) + 1e-9)
    return agreement + 0.01 * (1 - focus).mean()


def _road_removal(image: np.ndarray, relevance: np.ndarray, share: float) -> np.ndarray:
    from quantus.functions.perturb_func import noisy_linear_imputation

    order = np.argsort(relevance, axis=None)[::-1]
    top = order[: int(image.shape[1] * image.shape[2] * share)]
    return noisy_linear_imputation(arr=image, indices=top, noise=0.01)


def _irof_removal(image: np.ndarray, relevance: np.ndarray, share: float) -> np.ndarray:
    from quantus.helpers import utils

    segments = utils.get_superpixel_segments(img=np.moveaxis(image, 0, -1).astype("double"), segmentation_method="slic")
    count = len(np.unique(segments))
    segment_relevance = np.array([relevance[:, segments == s].mean() for s in range(count)])
    out, fill = image.copy(), image.mean()
    for s in np.argsort(-segment_relevance)[: int(count * share)]:
        keep = 1 - (segments == s)
        out = out * keep + fill * (1 - keep)
    return out


def _removal_loss(removal):
    def loss(learn, orig, explain, x, y, masks, state) -> Tensor:
        with torch.no_grad():
            predicted = orig(x).argmax(-1)
        maps = explain(x, predicted).detach().cpu().numpy()
        shares = (torch.rand(x.shape[0]) * 0.9 + 0.05).numpy()
        removed = torch.stack([torch.from_numpy(np.asarray(removal(image, relevance, share), dtype=np.float32))
                               for image, relevance, share in zip(x.numpy(), maps, shares)])
        o_orig, o_student, o_removed = orig(x), learn(x), learn(removed)
        rows = torch.arange(x.shape[0])
        kept = (o_removed.softmax(-1)[rows, predicted] / (o_student.softmax(-1)[rows, predicted] + 1e-9)).mean()
        total = _agreement(o_orig, o_student) + 0.1 * state.get("accuracy", 0.0) * kept
        state["accuracy"] = float((o_student.argmax(-1) == o_orig.argmax(-1)).float().mean())
        return total
    return loss


def _normalised(maps: Tensor) -> Tensor:
    return maps / (maps.flatten(1).abs().amax(-1).view(-1, 1, 1, 1) + 1e-9)


def _ris_loss(learn, orig, explain, x, y, masks, state) -> Tensor:
    with torch.no_grad():
        predicted = orig(x).argmax(-1)
    maps = explain(x, predicted)
    perturbed = x + torch.rand_like(x) * 0.18 + 0.02
    maps_perturbed = explain(perturbed, predicted, create_graph=True)
    target = _normalised(maps).detach()
    upper = ((target - _normalised(maps_perturbed)) / (target + 1e-9)).abs().flatten(1).sum(-1)
    lower = ((x - perturbed) / (x + 1e-9)).abs().flatten(1).sum(-1)
    return _agreement(orig(x), learn(x)) + 5e-6 * (upper / lower).mean()


LOSSES = {"rma": _rma_loss, "focus": _focus_loss, "road": _removal_loss(_road_removal),
          "irof": _removal_loss(_irof_removal), "ris": _ris_loss}


def original_step(metric: str, learn: nn.Module, orig: nn.Module, explain: Explain, optimizer: torch.optim.Optimizer,
                  x: Tensor, y: Tensor, masks: Tensor) -> Callable[[], None]:
    """One step of the study's code for ``metric``, as a no-argument callable (for timing).

    x (B,C,H,W) with B divisible by 4 (Focus' mosaics), y (B,), masks (B,1,H,W).
    """
    loss_of, state = LOSSES[metric], {}

    def step() -> None:
        optimizer.zero_grad()
        loss_of(learn, orig, explain, x, y, masks, state).backward()
        if metric == "rma":
            torch.nn.utils.clip_grad_norm_(learn.parameters(), 1.0)
        optimizer.step()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    return step
