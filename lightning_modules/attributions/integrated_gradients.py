"""Integrated gradients (Sundararajan et al. 2017), batched over the path and differentiable in the weights."""
from __future__ import annotations

import numpy as np
import torch

from .base import Attribution, Explanation, input_gradient, resolve_target

METHODS = ("gausslegendre", "riemann_trapezoid")


def path_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """The path's (alphas, step sizes), as Captum's ``approximation_parameters`` gives them (its trapezoid
    weighs the n points by 1/n, halved at both ends: they sum to 1 - 1/n, not 1)."""
    if steps < 2:
        raise ValueError(f"integrated gradients needs steps >= 2, got {steps}")
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if method == "riemann_trapezoid":
        sizes = np.full(steps, 1.0 / steps)
        sizes[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), sizes
    raise ValueError(f"unknown integration method {method!r}: use one of {', '.join(METHODS)}")


class IntegratedGradients(Attribution):
    """``(x - x0) * sum_s w_s dy_t/dx (x0 + alpha_s (x - x0))``, summed over channels.

    (B,C,H,W) -> (B,1,H,W); ``raw`` (B,C,H,W) equals Captum's ``IntegratedGradients.attribute(
    x, baselines=baseline, target=..., n_steps=steps, method=method)``. All ``steps`` points of
    the path run as one batch of ``steps * B`` images (memory grows with it).

    baseline: the constant image x0 (0.0: the data's mean in normalized space).
    steps, method: the quadrature of the path integral ("gausslegendre", Captum's default, or
        "riemann_trapezoid").
    """

    family = "gradient"
    reference = "Sundararajan et al. 2017"
    equals = "captum IntegratedGradients"

    def __init__(self, model, baseline: float = 0.0, steps: int = 16, method: str = "gausslegendre"):
        super().__init__(model)
        path_points(steps, method)  # checks the settings now, not at the first batch
        self.baseline, self.steps, self.method = baseline, steps, method

    def _explain(self, x, target, create_graph) -> Explanation:
        with torch.set_grad_enabled(create_graph):
            logits = self.model(x)
        target = resolve_target(logits, target)
        alphas, sizes = (torch.as_tensor(v, dtype=x.dtype, device=x.device)
                         for v in path_points(self.steps, self.method))
        delta = x - self.baseline
        path = (self.baseline + alphas.view(-1, 1, 1, 1, 1) * delta).flatten(0, 1)  # (S*B,C,H,W), step-major
        grad, _, _ = input_gradient(self.model, path, target.repeat(self.steps), create_graph)
        raw = delta * (sizes.view(-1, 1, 1, 1, 1) * grad.view(self.steps, *x.shape)).sum(0)
        return Explanation(raw.sum(1, keepdim=True), logits, raw)
