"""Differentiable, batched attribution maps: ``Method(model[, layer])(x, target, create_graph) -> (B,1,H,W)``.

Captum (GradCAM, GuidedBackprop, InputXGradient) and zennit (ExcitationBackprop) are the
reference implementations the tests compare against; these versions also keep the graph
to the model's weights (``create_graph=True``), so a metric loss on the maps trains the model.
"""
from .base import Attribution, Explanation, input_gradient, target_score
from .excitation_backprop import ExcitationBackprop
from .gradcam import GradCAM
from .guided_backprop import GuidedBackprop
from .input_x_gradient import InputXGradient
from .saliency import Saliency

__all__ = ["Attribution", "ExcitationBackprop", "Explanation", "GradCAM", "GuidedBackprop", "InputXGradient",
           "Saliency", "input_gradient", "target_score"]
