"""The base model shipped in the package: found for exactly the embedded default, as accurate as the
README documents, and what the recipe (the test session's trained_tiny) reproduces."""
from __future__ import annotations

import logging

import pytest
import torch
from hydra.utils import instantiate

from harmony_cli.hydra_app import compose_config
from lightning_modules.backbones import TinyCNN
from lightning_modules.backbones.shipped import SHIPPED_DIR, shipped_weights_path
from lightning_modules.backbones.weights import auto_weights
from lightning_modules.classifier import accuracy
from lightning_modules.data import SyntheticDataModule
from tests.conftest import BASE_SEED, TEST_CACHE

DOCUMENTED_ACCURACY = 0.95  # README, "The base model"; conf/backbone/tiny.yaml's auto.target_accuracy


def _default_recipe() -> dict:
    auto = dict(compose_config([]).backbone.auto)
    auto.pop("shipped")
    return auto


def test_the_documented_accuracy_is_the_recipes_target():
    assert _default_recipe()["target_accuracy"] == DOCUMENTED_ACCURACY


def test_the_shipped_weights_reach_the_documented_accuracy_on_the_test_split(synthetic_dm):
    path = shipped_weights_path(TinyCNN(num_classes=8), "tiny", synthetic_dm, _default_recipe())
    assert path is not None and path.parent == SHIPPED_DIR, "no shipped weights for the embedded default"
    assert path.stat().st_size < 1_000_000  # a few hundred kB
    model = TinyCNN(num_classes=8)
    model.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    assert accuracy(model, synthetic_dm.test_dataloader()) >= DOCUMENTED_ACCURACY


def test_the_recipe_reproduces_a_model_that_reaches_it(trained_tiny, synthetic_dm):
    """trained_tiny is trained by the recipe, never loaded from the shipped file (the tests' overrides
    say backbone.auto.shipped=false), at HARMONY_TEST_BASE_SEED (0: the shipped weights' own seed)."""
    assert accuracy(trained_tiny, synthetic_dm.test_dataloader()) >= DOCUMENTED_ACCURACY
    cached = [p.name for p in (TEST_CACHE / "models").glob(f"tiny-synthetic-seed{BASE_SEED}-*.pt")]
    assert cached, "trained_tiny did not come from the recipe's training cache"


def test_the_default_loads_the_shipped_weights_without_training(synthetic_dm, tmp_path, monkeypatch, caplog):
    import lightning.pytorch as pl

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the weights ship with the package")

    monkeypatch.setattr(pl.Trainer, "fit", no_training)
    cfg = compose_config([f"paths.models={tmp_path / 'models'}"])
    with caplog.at_level(logging.INFO, logger="lightning_modules"):
        model = instantiate(cfg.backbone, datamodule=synthetic_dm)
    shipped = shipped_weights_path(TinyCNN(num_classes=8), "tiny", synthetic_dm, _default_recipe())
    expected = torch.load(shipped, weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected)
    assert "loaded shipped tiny weights" in caplog.text and not (tmp_path / "models").exists()


@pytest.mark.parametrize("change", [{"seed": 1}, {"lr": 1e-3}, {"max_epochs": 6}, {"target_accuracy": 0.9}])
def test_another_recipe_finds_no_shipped_weights(synthetic_dm, change):
    assert shipped_weights_path(TinyCNN(num_classes=8), "tiny", synthetic_dm, {**_default_recipe(), **change}) is None


def test_other_data_or_another_architecture_finds_no_shipped_weights(synthetic_dm, tmp_path):
    smaller = SyntheticDataModule(train_size=100, cache_dir=tmp_path)
    assert shipped_weights_path(TinyCNN(num_classes=8), "tiny", smaller, _default_recipe()) is None
    assert shipped_weights_path(TinyCNN(num_classes=8, width=8), "tiny", synthetic_dm, _default_recipe()) is None


def test_training_says_so_first_with_its_expected_time_and_the_faster_alternative(tmp_path, caplog):
    dm = SyntheticDataModule(train_size=32, val_size=8, test_size=16, batch_size=16, cache_dir=tmp_path / "data")
    with caplog.at_level(logging.INFO, logger="lightning_modules"):
        auto_weights(TinyCNN(num_classes=8), "tiny", dm, tmp_path / "models", target_accuracy=0.0, max_epochs=2)
    messages = [r.getMessage() for r in caplog.records]
    first = next(i for i, m in enumerate(messages) if "training the base model first" in m)
    generated = next(i for i, m in enumerate(messages) if "generating the synthetic train split" in m)
    assert first < generated, messages  # said before anything slow starts
    assert "backbone.weights=" in messages[first] and "ship" in messages[first]
    estimate = next(m for m in messages if "s per step, expected" in m)
    assert "1 epochs of 2 steps" in estimate, estimate  # 32 images in batches of 16, the first round of 2 epochs
