"""Noisy linear imputation (Rong et al. 2022, ROAD), batched in torch.

Each removed pixel takes the weighted mean of its 8 neighbours (weight 1/6 for the 4
direct neighbours, 1/12 for the diagonals; neighbours outside the image are left out
and the weights renormalized), where neighbours that are themselves removed are
unknowns too. Per image and channel this is the sparse linear system

    d_i v_i - sum_{j removed} w_ij v_j = sum_{j kept} w_ij x_j      for every removed i

(d_i = sum of the in-image weights of i), symmetric positive definite whenever at
least one pixel is kept. Quantus 0.6 (``quantus.functions.perturb_func.noisy_linear_imputation``,
after tleemann/road_evaluation) builds it as a ``lil_matrix`` and calls
``scipy.sparse.linalg.spsolve`` per image; here all images of a batch are solved at
once by conjugate gradients preconditioned with a geometric multigrid V-cycle
(the same 3x3 stencil on every level, so each operator application is one depthwise
convolution; Jacobi smoothing; bilinear prolongation), to a relative residual of ``rtol``. The result equals
Quantus' to ~1e-4 of the image's standard deviation (tested); then ``noise * N(0,1)`` is added to the removed pixels,
as in Quantus (the noise itself comes from torch's generator, not NumPy's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_WEIGHTS = ((1 / 12, 1 / 6, 1 / 12), (1 / 6, 0.0, 1 / 6), (1 / 12, 1 / 6, 1 / 12))
_CL = torch.channels_last


class _Level:
    """One grid of the multigrid hierarchy: the mask of unknowns and the operator on it."""

    def __init__(self, unknown: Tensor):
        # unknown: (1,S,h,w) float {0,1} for S = images x channels systems, channels-last: the
        # systems are the channels, so every stencil, pooling and upsampling vectorizes over them
        # (3-4x faster on CPU than (N,C,h,w) with 3 channels).
        channels, (h, w) = unknown.shape[1], unknown.shape[2:]
        self.unknown = unknown
        stencil = torch.tensor(_WEIGHTS, dtype=unknown.dtype, device=unknown.device)
        self.stencil = stencil.expand(channels, 1, 3, 3).contiguous()
        self.neg_stencil = -self.stencil
        ones = torch.ones(1, channels, h, w, dtype=unknown.dtype, device=unknown.device)
        self.diag = F.conv2d(ones.contiguous(memory_format=_CL), self.stencil, padding=1, groups=channels)
        self.inv_diag = (unknown / self.diag).contiguous(memory_format=_CL)  # zero at known pixels

    def residual(self, r: Tensor, e: Tensor) -> Tensor:
        """r - A e with A e = d*e - S e (rows of known pixels are not masked here)."""
        return F.conv2d(e, self.stencil, padding=1, groups=e.shape[1]).add_(r).addcmul_(self.diag, e, value=-1.0)

    def apply(self, v: Tensor) -> Tensor:
        """A v = d*v - S v."""
        return F.conv2d(v, self.neg_stencil, padding=1, groups=v.shape[1]).addcmul_(self.diag, v)


def _hierarchy(unknown: Tensor, min_size: int = 4) -> list[_Level]:
    """Coarser grids by 2x2 blocks; a coarse cell is unknown iff all its children are (so a
    coarse correction never touches a kept pixel)."""
    levels = [_Level(unknown)]
    while min(unknown.shape[-2:]) >= 2 * min_size:
        h, w = unknown.shape[-2:]
        coarse = -F.max_pool2d(-F.pad(unknown, (0, w % 2, 0, h % 2)), 2)
        if not coarse.any():
            break
        unknown = coarse.contiguous(memory_format=_CL)
        levels.append(_Level(unknown))
    return levels


def _prolong(coarse: Tensor) -> Tensor:
    """P: bilinear interpolation by 2, (1,S,h,w) -> (1,S,2h,2w)."""
    return F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)


def _restrict(fine: Tensor) -> Tensor:
    """R = P^T exactly (upsampling's own backward kernel), (1,S,2h,2w) -> (1,S,h,w), so the
    V-cycle stays symmetric."""
    (_, systems, h, w) = fine.shape
    return torch.ops.aten.upsample_bilinear2d_backward(fine, [h, w], [1, systems, h // 2, w // 2], False, 2.0, 2.0)


def _vcycle(levels: list[_Level], r: Tensor, i: int = 0, coarse_sweeps: int = 3) -> Tensor:
    """Approximate A^-1 r by a V-cycle: one Jacobi sweep before and after a coarse-grid
    correction with bilinear prolongation P and restriction P^T, both masked to the unknowns
    (symmetric, so CG may use it as its preconditioner). The result is zero at kept
    pixels, whatever r holds there."""
    level = levels[i]
    e = r * level.inv_diag
    if i == len(levels) - 1:
        for _ in range(coarse_sweeps):
            e.addcmul_(level.residual(r, e), level.inv_diag)
        return e
    residual = level.residual(r, e).mul_(level.unknown)
    h, w = r.shape[-2:]
    if h % 2 or w % 2:
        residual = F.pad(residual, (0, w % 2, 0, h % 2))
    coarse = levels[i + 1]
    coarse_e = _vcycle(levels, _restrict(residual).mul_(coarse.unknown).contiguous(memory_format=_CL), i + 1,
                       coarse_sweeps)
    up = _prolong(coarse_e)
    e.addcmul_(up if up.shape[-2:] == (h, w) else up[..., :h, :w], level.unknown)
    return e.addcmul_(level.residual(r, e), level.inv_diag)


def _dot(a: Tensor, b: Tensor) -> float:
    # a channels-last (1,S,H,W) tensor is contiguous as (1,H,W,S): a flat view, no copy
    return float(torch.dot(a.permute(0, 2, 3, 1).reshape(-1), b.permute(0, 2, 3, 1).reshape(-1)))


def _dots(a: Tensor, b: Tensor) -> Tensor:
    """Per-system dot products: (1,S,H,W) x2 -> (S,) float64."""
    return (a * b).sum((0, 2, 3)).double()


def solve_imputation(x: Tensor, unknown: Tensor, initial: Tensor | None = None, rtol: float = 3e-5,
                     max_iter: int = 200) -> tuple[Tensor, int]:
    """Linear imputation of the ``unknown`` pixels of x (no noise).

    x (N,C,H,W) float, unknown (N,1,H,W) bool -> ((N,C,H,W), CG iterations): kept pixels
    unchanged, removed ones solving the neighbour-mean system above. ``initial``
    (N,C,H,W), if given, is the starting guess at the removed pixels (x itself by
    default; ROAD passes the previous, smaller removal's solution). Stops when every
    image's and channel's preconditioned residual ``r.Mr <= rtol^2 b.Mb``: the default
    3e-5 leaves errors below ~1e-3 of the image's standard deviation (float32 CG on
    large holes stalls near there; ~2e-4 at 64x64), 10x below ROAD's default noise. An
    image with every pixel removed has no solution; its pixels are set to 0.
    """
    n, c, h, w = x.shape
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32

    def systems(t: Tensor) -> Tensor:  # (N,C,H,W) -> (1,N*C,H,W) channels-last
        return t.to(dtype).reshape(1, n * c, h, w).contiguous(memory_format=_CL)

    xs = systems(x)
    u = systems(unknown.expand(n, c, h, w))
    kept = xs * (1 - u)
    levels = _hierarchy(u)
    top = levels[0]
    b = F.conv2d(kept, top.stencil, padding=1, groups=n * c).mul_(u)  # the kept neighbours' pull
    reference = _dots(b, _vcycle(levels, b))
    start = xs if initial is None else systems(initial)
    v = start * u
    if not torch.isfinite(v).all():
        v = torch.zeros_like(v)
    v.mul_(1 - u.amin((2, 3), keepdim=True))  # fully removed images: b = 0, start (and stay) at 0
    r = top.residual(b, v).mul_(u)
    # One CG over the whole batch (a block-diagonal system, scalar step sizes) that stops when
    # every system's preconditioned residual r.Mr is below rtol^2 of its b.Mb. z = M r never
    # reads r at kept pixels and p, z vanish there, so A p needs no mask.
    z = _vcycle(levels, r)
    p = z.clone()
    rz = _dot(r, z)
    limit = rtol ** 2 * reference.clamp_min(1e-12 * float(reference.max()) + 1e-30)
    total_limit = float(limit.sum())
    iterations = 0
    while iterations < max_iter:
        # sum(rz) > sum(limit) means some system is unconverged: the per-system check (a full
        # pass more) is only needed once the total is below
        if rz <= total_limit and bool((_dots(r, z) <= limit).all()):
            break
        iterations += 1
        ap = top.apply(p)
        pap = _dot(p, ap)
        if pap <= 0:
            break
        alpha = rz / pap
        v.add_(p, alpha=alpha)
        r.add_(ap, alpha=-alpha)
        z = _vcycle(levels, r)
        rz_new = _dot(r, z)
        p = z.add_(p, alpha=rz_new / rz)
        rz = rz_new
    return (kept + v * u).contiguous().view(n, c, h, w).to(x.dtype), iterations


def noisy_linear_imputation(x: Tensor, unknown: Tensor, noise: float = 0.01, generator: torch.Generator | None = None,
                            rtol: float = 3e-5, chunk_pixels: int = 1 << 19) -> Tensor:
    """ROAD's noisy linear imputation of the ``unknown`` pixels, for a batch.

    x (N,C,H,W); unknown (N,1,H,W) bool (True = removed) -> (N,C,H,W) with removed pixels
    replaced by their linear imputation plus ``noise * N(0,1)`` (drawn from
    ``generator``). Images are solved in chunks of about ``chunk_pixels`` values
    (cache-sized; larger chunks run slower on CPU).
    """
    if x.ndim != 4 or unknown.shape != (x.shape[0], 1, *x.shape[2:]):
        raise ValueError(f"noisy_linear_imputation needs x (N,C,H,W) and unknown (N,1,H,W), got "
                         f"{tuple(x.shape)} and {tuple(unknown.shape)}")
    unknown = unknown.bool()
    step = max(1, chunk_pixels // max(1, x[0].numel()))
    out = torch.cat([solve_imputation(xc, uc, rtol=rtol)[0] for xc, uc in zip(x.split(step), unknown.split(step))])
    if noise:
        device = generator.device if generator is not None else out.device
        eps = torch.randn(out.shape, generator=generator, dtype=out.dtype, device=device).to(out.device)
        out = out + noise * eps * unknown
    return out
