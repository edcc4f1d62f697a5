"""SmoothGrad (Smilkov et al. 2017) on the saliency map, with its own seeded noise."""
from __future__ import annotations

import torch

from .base import Attribution, Explanation, input_gradient, resolve_target


class SmoothGrad(Attribution):
    """The mean of ``|dy_t/dx|`` over ``samples`` noisy copies of each image, max over channels.

    (B,C,H,W) -> (B,1,H,W); ``raw`` (B,C,H,W) is the mean before the channel max. The noise is
    N(0, sigma^2) with ``sigma = noise_level * (max(x) - min(x))`` per image (Smilkov et al.'s
    relative noise level). With images of one value range it equals Captum's
    ``NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", nt_samples=samples,
    stdevs=sigma)`` on the same noise. The noise comes from a generator seeded with ``seed`` at
    each call, never from the global RNG: the same images get the same noise (two models' maps
    compare on the same noise, and a score is reproducible). All copies run as one batch.
    """

    family = "gradient"
    reference = "Smilkov et al. 2017"
    equals = "captum NoiseTunnel(Saliency), same noise"

    def __init__(self, model, noise_level: float = 0.15, samples: int = 16, seed: int = 0):
        super().__init__(model)
        if samples < 1 or noise_level < 0:
            raise ValueError(f"SmoothGrad needs samples >= 1 and noise_level >= 0, got {samples}, {noise_level}")
        self.noise_level, self.samples, self.seed = noise_level, samples, seed

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,S,C,H,W) noise, image-major as Captum's ``repeat_interleave``."""
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        batch = x.shape[0]
        sigma = self.noise_level * (x.detach().flatten(1).amax(1) - x.detach().flatten(1).amin(1))
        draws = torch.randn(batch, self.samples, *x.shape[1:], generator=generator, device=x.device, dtype=x.dtype)
        return draws * sigma.view(batch, 1, 1, 1, 1)

    def _explain(self, x, target, create_graph) -> Explanation:
        with torch.set_grad_enabled(create_graph):
            logits = self.model(x)
        target = resolve_target(logits, target)
        noisy = (x.unsqueeze(1) + self.noise(x)).flatten(0, 1)
        grad, _, _ = input_gradient(self.model, noisy, target.repeat_interleave(self.samples), create_graph)
        raw = grad.abs().view(x.shape[0], self.samples, *x.shape[1:]).mean(1)
        return Explanation(raw.amax(1, keepdim=True), logits, raw)
