"""Any torchvision classifier by name (resnet18, vgg16, ...), and the input transform of its weights."""
from __future__ import annotations

from torch import nn
from torchvision import models

from ..data.transforms import IMAGENET_TRANSFORM, InputTransform


def out_of_place(model: nn.Module) -> nn.Module:
    """Turn every in-place activation of ``model`` (ReLU, ReLU6, SiLU, ...: any module with an ``inplace``
    flag) out-of-place: attribution hooks and second-order gradients need the activations that in-place
    ops overwrite."""
    for module in model.modules():
        if isinstance(getattr(module, "inplace", None), bool) and module.inplace:
            module.inplace = False
    return model


def torchvision_classifier(arch: str, num_classes: int = 1000) -> nn.Module:
    """An untrained torchvision classifier ``arch`` with ``num_classes`` outputs, activations out-of-place."""
    if arch not in models.list_models(module=models):
        raise ValueError(f"unknown torchvision classifier {arch!r}: use a name from "
                         f"torchvision.models.list_models(), e.g. resnet18, vgg16")
    return out_of_place(models.get_model(arch, weights=None, num_classes=num_classes))


def torchvision_transform(arch: str, weights: str | None = None) -> InputTransform:
    """The input transform of torchvision's ``weights`` for ``arch`` (as its weights enum's ``transforms()``
    give it: mean, std, crop and resize sizes, interpolation); ImageNet's for other weights (``auto``,
    ``none``, a checkpoint), the scale harmony's own data and trainings use."""
    if weights is None or not str(weights).isupper():
        return IMAGENET_TRANSFORM
    try:
        preset = models.get_model_weights(arch)[str(weights)].transforms()
    except (KeyError, ValueError):
        return IMAGENET_TRANSFORM  # build_backbone names the unknown weights
    crop = preset.crop_size[0]
    return InputTransform(mean=tuple(preset.mean), std=tuple(preset.std), input_size=crop,
                          crop_pct=crop / preset.resize_size[0], interpolation=preset.interpolation.value)
