"""Fast no-grad forward passes for scoring: a BatchNorm-folded, channels-last copy of a model,
used only where it is proven to give the model's own logits.

The perturbation metrics (ROAD, IROF) run hundreds of forward passes per image, and the
fine-tuning module runs the frozen original model on every batch; both call
:class:`FastForward`. An optimization must never make a user's model fail or score
differently, so the optimized copy is checked against the plain model on the first
chunk it sees (same logits within a tolerance) and dropped, with one log line, when it
raises (e.g. a LeNet that flattens with ``.view`` cannot take channels-last tensors) or
disagrees.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging

import torch
from torch import Tensor, nn
from torch.fx.experimental.optimization import fuse

log = logging.getLogger(__name__)


class FastForward:
    """Batched no-grad forward passes, faster than calling ``model`` plainly where that is safe.

    For a model in eval mode, a traced copy (``torch.fx``) with each BatchNorm folded into
    the convolution before it (``torch.fx.experimental.optimization.fuse``), ReLUs made
    in-place where their input has no other use, and channels-last memory runs chunks of
    ``batch_size`` images: on CPU this runs the perturbation metrics' hundreds of passes
    1.5-3x faster than plain ``model(x)`` (TinyCNN, resnet18). The first chunk runs
    through both; the copy is kept only if its logits equal the model's (:func:`unequal`:
    each image's logits within ``rtol`` of their norm; BatchNorm folding changes float
    rounding, ~1e-6). Otherwise, and for a model in train mode (folding would freeze
    its batch statistics), the plain model runs. The caller's model is never modified.

    ``optimized`` is None until the first call, then whether the copy is in use.
    """

    def __init__(self, model: nn.Module, batch_size: int = 64, optimize: bool = True,
                 rtol: float = 1e-3, atol: float = 1e-4):
        self.batch_size = max(1, int(batch_size))
        self.model = model
        self.module = model
        self.rtol, self.atol = rtol, atol
        self._candidate = _optimized_copy(model) if optimize and not model.training else None
        self.optimized: bool | None = None if self._candidate is not None else False

    @property
    def channels_last(self) -> bool:
        return bool(self.optimized)

    def logits(self, x: Tensor) -> Tensor:
        """(N,C,H,W) -> (N,K) logits, in chunks."""
        outs = []
        with torch.inference_mode():
            for chunk in x.split(self.batch_size):
                if self.optimized is None:
                    outs.append(self._first_chunk(chunk))
                    continue
                # the plain model gets contiguous (N,C,H,W) memory, as a model that flattens with .view needs
                memory = torch.channels_last if self.optimized else torch.contiguous_format
                chunk = chunk.contiguous(memory_format=memory)
                outs.append(self.module(chunk).float())
        return torch.cat(outs) if outs else x.new_zeros((0, 0))

    def probabilities(self, x: Tensor) -> Tensor:
        """(N,C,H,W) -> (N,K) softmax probabilities."""
        return self.logits(x).softmax(-1)

    def _first_chunk(self, chunk: Tensor) -> Tensor:
        """The plain model's logits of the first chunk; decides whether the optimized copy is used."""
        expected = self.model(chunk.contiguous()).float()
        reason = None
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # torch.fx prints a failing traced call's frame
                got = self._candidate(chunk.contiguous(memory_format=torch.channels_last)).float()
        except Exception as exc:  # noqa: BLE001 - any failure of the copy means: use the model itself
            reason = raised(exc)
        else:
            difference = unequal(got, expected, self.rtol, self.atol)
            reason = f"its logits' {difference}" if difference else None
        self.optimized = reason is None
        if self.optimized:
            self.module = self._candidate
        else:
            log.info("scoring %s with the plain model: the BatchNorm-folded channels-last copy is not used "
                     "because %s", type(self.model).__name__, reason)
        self._candidate = None
        return expected


def unequal(got: Tensor, expected: Tensor, rtol: float, atol: float) -> str | None:
    """How a fast path's output differs from the model's (``"shape ..."``, ``"values differ by up to ..."``),
    or None where it equals it: the one test of "proven equal" that every optimized copy (this module's,
    the fine-tuning's folded twin) passes.

    Equal means: for each sample (the first axis), the L2 norm of ``got - expected`` is at most ``rtol``
    times that sample's norm in ``expected``, plus ``atol`` times the largest sample norm (for samples
    near zero). Norms, not elements: a fast path reorders float32 sums, and where a value is a sum of
    terms that nearly cancel (a guided-backprop map's channel sum) its rounding error is a fraction of
    the terms, not of the value, so an element can differ by more than its own size for rounding alone.
    Over a whole sample rounding stays near float32's 1e-7 relative; a wrong copy (a BatchNorm folded
    into an output that something else also reads) moves a sample by a large part of its norm.
    """
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, not {tuple(expected.shape)}"
    if not expected.numel():
        return None
    rows = expected.shape[0] if expected.ndim else 1
    got, expected = got.detach().double().reshape(rows, -1), expected.detach().double().reshape(rows, -1)
    difference, norm = (got - expected).norm(dim=1), expected.norm(dim=1)
    bound = rtol * norm + atol * float(norm.max())
    if not bool((difference <= bound).all()):  # NaN compares False: a non-finite output is never equal
        relative = float((difference / norm.clamp_min(torch.finfo(torch.float64).tiny)).max())
        return (f"values differ by up to {float((got - expected).abs().max()):.3g} "
                f"({relative:.3g} of a sample's norm; equal allows {rtol:g})")
    return None


def raised(exc: Exception) -> str:
    """Why a fast path was dropped after it raised: its type and the first line of its message."""
    first_line = str(exc).partition("\n")[0]
    return f"it raised {type(exc).__name__}: {first_line}"


def _optimized_copy(model: nn.Module) -> nn.Module:
    """A BatchNorm-folded (where traceable), channels-last copy of an eval-mode model."""
    try:
        fast = fuse(model, inplace=False)
        _inplace_relus(fast)
    except Exception:  # noqa: BLE001 - untraceable models (dynamic control flow) run unfused
        fast = copy.deepcopy(model)
    return fast.to(memory_format=torch.channels_last)


def _inplace_relus(graph_module) -> None:
    """Make the traced copy's ReLU modules in-place where that is safe: every call of the module
    takes an intermediate value (not the model's input) that nothing else reads."""
    calls: dict[str, list[bool]] = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), nn.ReLU):
            source = node.args[0] if node.args else None
            safe = (hasattr(source, "op") and source.op not in ("placeholder", "get_attr")
                    and len(source.users) == 1)
            calls.setdefault(node.target, []).append(safe)
    for target, safe in calls.items():
        if all(safe):
            graph_module.get_submodule(target).inplace = True
