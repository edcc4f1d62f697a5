"""Any torchvision classifier by name (resnet18, vgg16, ...)."""
from __future__ import annotations

from torch import nn
from torchvision import models


def torchvision_classifier(arch: str, num_classes: int = 1000) -> nn.Module:
    """An untrained torchvision classifier ``arch`` with ``num_classes`` outputs.

    In-place ReLUs are replaced by out-of-place ones: attribution hooks and
    second-order gradients need the activations that in-place ops overwrite.
    """
    if arch not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision classifier {arch!r}: use a name from "
                         f"torchvision.models.list_models(), e.g. resnet18, vgg16")
    model = models.get_model(arch, weights=None, num_classes=num_classes)
    for module in model.modules():
        if isinstance(module, (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish)) and getattr(module, "inplace", False):
            module.inplace = False
    return model
