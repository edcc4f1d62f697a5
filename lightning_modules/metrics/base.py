"""What every metric shares: the :class:`Metric` interface the fine-tuning module calls,
input checks with one-line errors, fast scoring forward passes, and the soft removal
loss of the perturbation metrics.

Shapes: x (B,C,H,W) images, y (B,) long class indices, maps (B,1,H,W) attribution
maps at input resolution, masks (B,1,H,W) {0,1} object masks. ``explain`` is any
callable ``explain(x, y, create_graph=False) -> (B,1,H,W)`` (``lightning_modules.attributions``).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

Explain = Callable[..., Tensor]


class MetricInputError(UserError, ValueError):
    """Inputs of the wrong shape or kind for a metric (a ValueError too, for library callers)."""


# --------------------------------------------------------------------------- input checks

def as_maps(maps: Tensor, name: str = "maps") -> Tensor:
    """(B,1,H,W) or (B,H,W) -> (B,1,H,W); anything else is a one-line MetricInputError."""
    if not isinstance(maps, Tensor):
        raise MetricInputError(f"{name} must be a torch.Tensor of shape (B,1,H,W), got {type(maps).__name__}")
    if maps.ndim == 3:
        maps = maps[:, None]
    if maps.ndim != 4 or maps.shape[1] != 1:
        raise MetricInputError(f"{name} must have shape (B,1,H,W) or (B,H,W), got {tuple(maps.shape)}: "
                               f"reduce channels first, e.g. maps.sum(1, keepdim=True)")
    return maps


def check_images(x: Tensor, y: Tensor, maps: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Validate x (B,C,H,W), y (B,) and optional maps (B,1,H,W) against each other."""
    if not isinstance(x, Tensor) or x.ndim != 4:
        raise MetricInputError(f"x must be a (B,C,H,W) image tensor, got "
                               f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not isinstance(y, Tensor) or y.shape != (x.shape[0],):
        raise MetricInputError(f"y must be a ({x.shape[0]},) tensor of class indices for {x.shape[0]} images, got "
                               f"{tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__}")
    if maps is not None:
        maps = as_maps(maps)
        if maps.shape[0] != x.shape[0] or maps.shape[2:] != x.shape[2:]:
            raise MetricInputError(f"maps {tuple(maps.shape)} do not match images {tuple(x.shape)}: expected "
                                   f"({x.shape[0]},1,{x.shape[2]},{x.shape[3]})")
    return y.long(), maps


def share(inside: Tensor, total: Tensor) -> Tensor:
    """inside / total per image for 0 <= inside <= total, 0 where total == 0 (a map with no
    positive relevance puts none anywhere), with a finite gradient there. (B,), (B,) -> (B,)."""
    return inside / torch.where(total > 0, total, torch.ones_like(total))


# --------------------------------------------------------------------------- the interface

class Metric:
    """An explanation-quality metric as the fine-tuning module uses it.

    Class attributes, the single source of a metric's facts (its YAML holds none): ``name``, ``family``
    (localization | perturbation | stability | complexity), ``higher_is_better`` (of :meth:`score`),
    ``needs_masks``, ``reference`` (the paper) and ``equals`` (the implementation it equals, e.g. Quantus').

    - :meth:`score` (B,) per-image evaluation value, no gradient; computes the maps
      with ``explain(x, y)`` itself.
    - :meth:`loss` a differentiable scalar, lower is better, whose gradient reaches the
      model's parameters through ``explain(..., create_graph=True)``.
    """

    name: str = ""
    family: str = ""
    higher_is_better: bool = True
    needs_masks: bool = False
    reference: str = ""  # the paper that defines it
    equals: str = ""     # the reference implementation it equals (with the settings where that holds)

    def score(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def given_masks(self, masks: Tensor | None) -> Tensor:
        """The (B,H,W) object masks a ``needs_masks`` metric scores against; a one-line error without them."""
        if masks is None:
            raise MetricInputError(f"metric={self.name} needs object masks, but the data module gives none: use a "
                                   "dataset with masks (data=synthetic, data=imagenet_s, or data=folder with "
                                   "masks or boxes)")
        return masks

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


def explain_maps(explain: Explain, x: Tensor, y: Tensor, create_graph: bool = False) -> Tensor:
    """``explain(x, y)`` as checked (B,1,H,W) maps; detached unless ``create_graph``.

    Runs with gradients enabled even under ``torch.no_grad`` or ``torch.inference_mode``
    (a validation loop): gradient-based maps need them.
    """
    with grad_mode():
        x, y = grad_ready(x), grad_ready(y)
        maps = explain(x, y, create_graph=create_graph) if create_graph else explain(x, y)
    maps = as_maps(maps, "explain(x, y)")
    if maps.shape[0] != x.shape[0] or maps.shape[2:] != x.shape[2:]:
        raise MetricInputError(f"explain(x, y) returned {tuple(maps.shape)} for images {tuple(x.shape)}: "
                               f"attribution maps must be (B,1,H,W) at input resolution")
    return maps if create_graph else maps.detach()


class grad_mode:
    """Autograd on, inference mode off, for the body (restores both on exit)."""

    def __enter__(self):
        self._contexts = [torch.inference_mode(False), torch.enable_grad()]
        for context in self._contexts:
            context.__enter__()

    def __exit__(self, *exc):
        for context in reversed(self._contexts):
            context.__exit__(*exc)


def grad_ready(t: Tensor) -> Tensor:
    """An inference-mode tensor cannot enter an autograd graph (not even as a gather index): clone it
    (inside :class:`grad_mode`)."""
    return t.clone() if t.is_inference() else t


# --------------------------------------------------------------------------- removal loss

def soft_top_fraction(maps: Tensor, fraction: float, temperature: float = 0.1) -> Tensor:
    """A soft mask of a map's ``fraction`` most relevant pixels, differentiable in the map.

    (B,1,H,W) -> (B,1,H,W) in (0,1): ``sigmoid((a - q) / (temperature * std(a)))`` with
    q the image's (1 - fraction) quantile value, so about ``fraction`` of the image is removed
    whatever the map's scale (a map cannot lower the loss by growing everywhere). A
    constant map gives 0.5 everywhere.
    """
    if not 0.0 < fraction < 1.0:
        raise MetricInputError(f"loss fraction must lie in (0, 1), got {fraction}")
    flat = maps.flatten(1)
    flat = flat if flat.dtype == torch.float64 else flat.float()  # half precision ranks in float32; float64 stays
    rank = min(flat.shape[1], max(1, round((1.0 - fraction) * flat.shape[1])))
    threshold = flat.kthvalue(rank, dim=1, keepdim=True).values  # differentiable; no size limit
    spread = flat.std(1, keepdim=True) if flat.shape[1] > 1 else torch.zeros_like(threshold)
    spread = spread.clamp_min(1e-12)
    return torch.sigmoid((flat - threshold) / (temperature * spread)).view_as(maps).to(maps.dtype)


def removal_loss(model: nn.Module, x: Tensor, y: Tensor, maps: Tensor, baseline: Tensor, fraction: float,
                 temperature: float = 0.1) -> Tensor:
    """Mean class probability after softly removing the top ``fraction`` of each map.

    ``x_removed = x + m * (baseline - x)`` with ``m = soft_top_fraction(maps)``; returns
    ``mean_b softmax(model(x_removed))[b, y_b]``. Lower = removing what the map marks
    destroys the prediction = a more faithful map. Gradients reach the model both
    through the map (create_graph) and through the forward pass on ``x_removed``.
    """
    m = soft_top_fraction(maps, fraction, temperature)
    removed = x + m * (baseline - x)
    probs = model(removed).softmax(-1)
    return probs.gather(1, y[:, None]).mean()


class RemovalMetric(Metric):
    """A perturbation metric whose training term is :func:`removal_loss` toward :meth:`baseline`.

    loss_fraction, loss_temperature: the soft top share of each map removed in the loss.
    batch_size: images per forward pass when scoring.
    """

    def __init__(self, loss_fraction: float = 0.25, loss_temperature: float = 0.1, batch_size: int = 64):
        self.loss_fraction = loss_fraction
        self.loss_temperature = loss_temperature
        self.batch_size = batch_size

    def baseline(self, x: Tensor) -> Tensor:
        """(B,C,H,W) -> what a removed pixel becomes (broadcastable to x)."""
        raise NotImplementedError

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, explain: Explain, masks: Tensor | None = None) -> Tensor:
        y, _ = check_images(x, y)
        maps = explain_maps(explain, x, y, create_graph=True)
        return removal_loss(model, x, y, maps, self.baseline(x), self.loss_fraction, self.loss_temperature)


def channel_mean(x: Tensor) -> Tensor:
    """(B,C,H,W) -> (B,C,1,1) per-image, per-channel mean (the IROF baseline)."""
    return x.mean(dim=(2, 3), keepdim=True)


def box_blur(x: Tensor, width: int | None = None) -> Tensor:
    """(B,C,H,W) -> (B,C,H,W) local mean over a ``width`` box (default ~H/8, odd): a cheap,
    differentiable stand-in for filling a removed region from its surroundings."""
    if width is None:
        width = max(3, int(math.ceil(min(x.shape[2:]) / 8)) | 1)
    # separable: a row then a column mean (each renormalized at the border) is the 2D box mean
    rows = F.avg_pool2d(x, (1, width), stride=1, padding=(0, width // 2), count_include_pad=False)
    return F.avg_pool2d(rows, (width, 1), stride=1, padding=(width // 2, 0), count_include_pad=False)
