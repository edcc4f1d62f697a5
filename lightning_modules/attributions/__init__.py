"""Differentiable, batched attribution maps: ``Method(model[, layer])(x, target, create_graph) -> (B,1,H,W)``.

Captum (GradCAM, GuidedBackprop, InputXGradient, IntegratedGradients, SmoothGrad) and zennit
(ExcitationBackprop, LRP) are the reference implementations the tests compare against (Grad-CAM++
and LayerCAM: their formulas written out, Captum has neither); these versions also keep the graph
to the model's weights (``create_graph=True``), so a metric loss on the maps trains the model.
"""
from .base import Attribution, Explanation, input_gradient, resolve_target, target_score
from .excitation_backprop import ExcitationBackprop
from .gradcam import GradCAM
from .gradcam_plus_plus import GradCAMPlusPlus
from .guided_backprop import GuidedBackprop
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .layercam import LayerCAM
from .lrp import LRP
from .saliency import Saliency
from .smoothgrad import SmoothGrad

__all__ = ["Attribution", "ExcitationBackprop", "Explanation", "GradCAM", "GradCAMPlusPlus", "GuidedBackprop",
           "InputXGradient", "IntegratedGradients", "LRP", "LayerCAM", "Saliency", "SmoothGrad", "input_gradient",
           "resolve_target", "target_score"]
