"""Input x Gradient (Shrikumar et al. 2016): the input times the target logit's gradient."""
from __future__ import annotations

from .base import Attribution, Explanation, input_gradient


class InputXGradient(Attribution):
    """``x * d logit_target / dx`` summed over channels: (B,C,H,W) -> (B,1,H,W).

    ``raw`` is the per-channel product, equal to Captum's ``InputXGradient``. The channel
    sum is the reduction Quantus' ``explain`` applies, so metrics see the same maps.
    """

    family = "gradient"
    reference = "Shrikumar et al. 2016"
    equals = "captum InputXGradient"

    def _explain(self, x, target, create_graph) -> Explanation:
        grad, logits, x = input_gradient(self.model, x, target, create_graph)
        raw = x * grad
        return Explanation(raw.sum(1, keepdim=True), logits, raw)
