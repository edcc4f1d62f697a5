"""Saliency (Simonyan et al. 2014): the magnitude of the target logit's input gradient.

The worked example of docs/extending.md: one file (this class) plus one YAML file
(conf/attribution/saliency.yaml) add a method to every harmony command.
"""
from __future__ import annotations

from .base import Attribution, Explanation, input_gradient


class Saliency(Attribution):
    """``|d logit_target / dx|``, the max over channels: (B,C,H,W) -> (B,1,H,W).

    ``raw`` is the per-channel magnitude, equal to Captum's ``Saliency(abs=True)``.
    """

    family = "gradient"
    reference = "Simonyan et al. 2014"
    equals = "captum Saliency, max over channels"

    def _explain(self, x, target, create_graph) -> Explanation:
        grad, logits, _ = input_gradient(self.model, x, target, create_graph)
        raw = grad.abs()
        return Explanation(raw.amax(1, keepdim=True), logits, raw)
