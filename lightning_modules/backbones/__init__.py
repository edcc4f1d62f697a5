"""Backbones: the default ``tiny`` CNN, any torchvision or timm classifier, with their weights.

A backbone config (conf/backbone/*.yaml) instantiates :func:`build_backbone`
with the untrained ``model`` (its own ``_target_``), the ``weights`` source,
the GradCAM target layer and the ``transform`` its weights expect
(:class:`lightning_modules.data.InputTransform`; data modules that read image
files take it from ``backbone.transform``).
"""
from __future__ import annotations

import os

from torch import nn

from .tiny import TinyCNN
from .torchvision_models import out_of_place, torchvision_classifier, torchvision_transform
from .weights import WeightsError, auto_weights, load_state_file, load_torchvision_weights, weights_digest


def build_backbone(model: nn.Module, name: str, weights: str | None = "auto", gradcam_layer: str | None = None,
                   datamodule=None, cache_dir: str | os.PathLike = "outputs/models", arch: str | None = None,
                   auto: dict | None = None, transform=None) -> nn.Module:
    """Return ``model`` with its weights loaded, in eval mode.

    ``weights``: ``auto`` | ``none`` | a checkpoint path | a torchvision weights
    name (``IMAGENET1K_V1``; needs ``arch``). ``gradcam_layer`` is checked to
    name a submodule so that a wrong YAML fails here, not mid-training.
    ``transform``: the backbone's input transform; the data module applies it, the model ignores it.
    """
    if gradcam_layer:
        try:
            model.get_submodule(gradcam_layer)
        except AttributeError as exc:
            raise WeightsError(f"backbone {name} has no layer {gradcam_layer!r}: set backbone.gradcam_layer "
                               f"to a module name from model.named_modules()") from exc
    if weights in (None, "none", "None", "random"):
        pass
    elif weights == "auto":
        auto_weights(model, name, datamodule, cache_dir, **(auto or {}))
    elif str(weights).isupper() and not os.path.sep in str(weights):
        load_torchvision_weights(model, arch or name, str(weights))
    else:
        load_state_file(model, weights)
    return model.eval()


__all__ = ["TinyCNN", "WeightsError", "build_backbone", "load_state_file", "out_of_place", "torchvision_classifier",
           "torchvision_transform", "weights_digest"]
