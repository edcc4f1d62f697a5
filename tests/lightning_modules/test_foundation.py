"""The foundation: synthetic data, backbones and their weights, config groups, clear errors."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from harmony_cli.hydra_app import CONFIG_DIR, ConfigError, compose_config
from lightning_modules.backbones import TinyCNN, WeightsError, build_backbone, torchvision_classifier
from lightning_modules.classifier import accuracy
from lightning_modules.data import CLASS_NAMES, SyntheticDataModule, SyntheticShapes
from lightning_modules.data.synthetic import CLASSES, render
from tests.helpers import HARMONY


def test_synthetic_is_deterministic_byte_for_byte(tmp_path):
    a = SyntheticShapes("val", size=16, seed=3)
    b = SyntheticShapes("val", size=16, seed=3, cache_dir=tmp_path)
    c = SyntheticShapes("val", size=16, seed=3, cache_dir=tmp_path)  # from the cache file
    for x, y in ((a, b), (a, c)):
        assert torch.equal(x.images, y.images) and torch.equal(x.masks, y.masks) and torch.equal(x.labels, y.labels)
    other = SyntheticShapes("val", size=16, seed=4)
    assert not torch.equal(a.images, other.images)
    # an item does not depend on the split size it was generated with
    assert torch.equal(SyntheticShapes("val", size=4, seed=3).images, a.images[:4])


def test_synthetic_items_have_the_documented_shape():
    ds = SyntheticShapes("train", size=64, image_size=48)
    item = ds[5]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (1, 48, 48) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["class_name"] == CLASS_NAMES[item["label"]]
    assert len(CLASS_NAMES) >= 8 and len({c[1] for c in CLASSES}) == len(CLASSES)  # distinct shapes
    assert len({c[2] for c in CLASSES}) == len(CLASSES)  # distinct colours
    assert set(ds.labels.tolist()) == set(range(len(CLASSES)))


def test_mask_covers_exactly_the_target_object():
    for i in range(20):
        image, mask, label = render(0, "test", i, 64)
        colour = np.asarray(CLASSES[label][2]) * 255
        inside = image[mask].astype(float)
        # every mask pixel has the target's colour (up to the small jitter) ...
        assert np.abs(inside.mean(0) - colour * inside.mean() / colour.mean()).max() < 40
        assert 0.03 < mask.mean() < 0.5
        # ... and the object's colour is rare outside the mask (distractors are other classes)
        close = np.abs(image.astype(float) - inside.mean(0)).max(-1) < 20
        assert close[mask].mean() > 0.9 and close[~mask].mean() < 0.1


def test_tiny_backbone_keeps_an_8x8_feature_map():
    model = TinyCNN(num_classes=8)
    feats = model.get_submodule("features")(torch.zeros(2, 3, 64, 64))
    assert feats.shape[-2:] == (8, 8)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 8)


def test_auto_weights_reach_95_percent_and_are_reused(trained_tiny, synthetic_dm, monkeypatch):
    assert accuracy(trained_tiny, synthetic_dm.test_dataloader()) >= 0.95
    # a second load comes from the cache: training must not run again
    import lightning.pytorch as pl
    from hydra.utils import instantiate

    from tests.conftest import CACHE_OVERRIDES

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the weights were cached")

    monkeypatch.setattr(pl.Trainer, "fit", no_training)
    again = instantiate(compose_config(CACHE_OVERRIDES).backbone, datamodule=synthetic_dm)
    for p, q in zip(trained_tiny.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_auto_weights_are_reproducible_keyed_by_their_recipe_and_leave_torch_flags_alone(tmp_path):
    from lightning_modules.backbones.weights import auto_weights, auto_weights_path

    dm = SyntheticDataModule(train_size=32, val_size=8, test_size=16, batch_size=16, cache_dir=tmp_path / "data")
    recipe = {"target_accuracy": 0.0, "max_epochs": 2, "lr": 3e-3}  # one round of one epoch
    torch.use_deterministic_algorithms(True)  # a caller's setting, which training must give back
    try:
        trained = {}
        for folder, seed in (("a", 1), ("b", 1), ("c", 2)):
            torch.manual_seed(100 + len(trained))  # initial weights differ: the seed must decide them
            model = TinyCNN(num_classes=8)
            auto_weights(model, "tiny", dm, tmp_path / folder, seed=seed, **recipe)
            trained[folder] = model.state_dict()
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(trained["a"][k], trained["b"][k]) for k in trained["a"]), "same seed, other weights"
    assert not all(torch.equal(trained["a"][k], trained["c"][k]) for k in trained["a"])
    files = {folder: [p.name for p in (tmp_path / folder).glob("*.pt")] for folder in "abc"}
    assert files["a"] == files["b"] != files["c"] and files["a"][0].startswith("tiny-synthetic-seed1-")
    payload = torch.load(tmp_path / "a" / files["a"][0], weights_only=True)
    assert payload["recipe"] == {**recipe, "seed": 1}

    def name(data=dm, **change):
        return auto_weights_path(TinyCNN(num_classes=8), "tiny", data, tmp_path, **{**recipe, "seed": 1, **change}).name

    # the key names every ingredient: another recipe or data set is another file, not the cached one
    assert name() == files["a"][0]
    other_data = SyntheticDataModule(train_size=48, val_size=8, test_size=16, cache_dir=tmp_path / "data")
    assert len({name(), name(lr=1e-3), name(max_epochs=4), name(target_accuracy=0.9), name(data=other_data)}) == 5


@pytest.mark.parametrize("group", ["data", "backbone", "attribution", "metric", "trainer", "study"])
def test_every_config_group_option_composes(group):
    for option in sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")):
        cfg = compose_config([f"{group}={option}"])
        assert cfg[group] is not None


def test_config_builds_objects_with_instantiate(tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config([f"paths.outputs={tmp_path}", "data.train_size=8", "data.val_size=8", "data.test_size=8",
                          "backbone.weights=none"])
    dm = instantiate(cfg.data)
    assert isinstance(dm, SyntheticDataModule)
    model = instantiate(cfg.backbone, datamodule=dm)
    assert isinstance(model, TinyCNN) and not model.training
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 64, 64) and batch["mask"].shape == (8, 1, 64, 64)


def test_resnet18_and_vgg16_build_for_the_synthetic_classes():
    for arch in ("resnet18", "vgg16"):
        model = torchvision_classifier(arch, num_classes=8).eval()
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 8)
        assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_torchvision_weights_missing_from_hub_cache_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(WeightsError, match=r"place resnet18-[0-9a-f]+\.pth .*hub/checkpoints"):
        build_backbone(torchvision_classifier("resnet18"), name="resnet18", arch="resnet18", weights="IMAGENET1K_V1")


def test_torchvision_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = torchvision_classifier("resnet18")
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    loaded = build_backbone(torchvision_classifier("resnet18"), name="resnet18", arch="resnet18",
                            weights="IMAGENET1K_V1")
    assert torch.equal(loaded.fc.weight, source.fc.weight)


def test_checkpoint_path_weights(tmp_path):
    source = TinyCNN(8)
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.ckpt")
    loaded = build_backbone(TinyCNN(8), name="tiny", weights=str(tmp_path / "w.ckpt"))
    assert torch.equal(loaded.classifier.weight, source.classifier.weight)
    with pytest.raises(WeightsError, match="does not exist"):
        build_backbone(TinyCNN(8), name="tiny", weights=str(tmp_path / "missing.ckpt"))
    with pytest.raises(WeightsError, match="does not fit"):
        build_backbone(TinyCNN(4), name="tiny", weights=str(tmp_path / "w.ckpt"))


def test_wrong_gradcam_layer_fails_early():
    with pytest.raises(WeightsError, match="no layer 'features.99'"):
        build_backbone(TinyCNN(8), name="tiny", weights="none", gradcam_layer="features.99")


@pytest.mark.parametrize("overrides, message", [
    (["metric=nope"], "unknown metric 'nope': choose one of"),
    (["backbone=nope"], "unknown backbone 'nope'"),
    (["nosuchkey=1"], "unknown config option 'nosuchkey'"),
    (["data.nosuchkey=1"], "unknown config option 'data.nosuchkey'"),
])
def test_bad_overrides_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        compose_config(overrides)
    assert "\n" not in str(info.value)


def test_data_preview_writes_a_png_and_errors_are_one_line(tmp_path):
    out = tmp_path / "preview.png"
    ok = subprocess.run([str(HARMONY), "data", "preview", f"paths.cache={tmp_path}", "data.train_size=16",
                         "data.val_size=4", "data.test_size=4", "--n", "8", "--out", str(out)],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    outputs = tmp_path / "elsewhere"  # without --out: the outputs folder, wherever the command runs
    default = subprocess.run([str(HARMONY), "data", "preview", f"paths.cache={tmp_path}", f"paths.outputs={outputs}",
                              "data.train_size=16", "data.val_size=4", "data.test_size=4", "--n", "4"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert (outputs / "data_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "outputs").exists()
    bad = subprocess.run([str(HARMONY), "data", "preview", "data=nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "unknown data 'nope'" in bad.stderr
