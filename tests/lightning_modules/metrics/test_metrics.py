"""Explanation metrics: edge cases, properties the definitions imply, any user model, and the
score/loss interface the fine-tuning module calls. Small images, few samples: fast.
(Comparisons with Quantus: test_quantus_reference.py; Quantus' own fixtures: test_metric_fixtures.py.)"""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.backbones import TinyCNN
from lightning_modules.errors import UserError
from lightning_modules.metrics import (IROF, ROAD, FastForward, Focus, MetricInputError, RelativeInputStability,
                                       RelevanceMassAccuracy,
                                       focus, irof, irof_curves, make_mosaics, relative_input_stability,
                                       relevance_mass_accuracy, road, road_curve)
from tests.metric_cases import LeftTexture, LeNet, half_maps, one_line, plain_cnn, synthetic_batch


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyCNN(num_classes=8).eval()

# ----------------------------------------------------------------------------- RMA

def test_rma_edge_cases():
    masks = torch.zeros(3, 1, 8, 8)
    masks[1:, :, :4] = 1
    maps = torch.rand(3, 1, 8, 8)
    maps[2] = 0
    scores = relevance_mass_accuracy(maps, masks)
    assert torch.isnan(scores[0])  # empty mask: undefined
    assert scores[2] == 0  # no positive relevance: nothing on the object
    assert 0 < scores[1] < 1
    single = relevance_mass_accuracy(maps[1:2, 0], masks[1:2, 0])  # (B,H,W) accepted, one image
    assert single.shape == (1,) and torch.allclose(single, scores[1:2])
    all_inside = relevance_mass_accuracy(maps[1:2], torch.ones(1, 1, 8, 8))
    assert torch.allclose(all_inside, torch.ones(1))
    with pytest.raises(MetricInputError) as exc:
        relevance_mass_accuracy(maps, masks[:, :, :4])
    assert "masks" in one_line(exc)
    assert issubclass(MetricInputError, UserError) and issubclass(MetricInputError, ValueError)
    with pytest.raises(MetricInputError):
        relevance_mass_accuracy(torch.rand(3, 3, 8, 8), masks)


def test_rma_relevance_modes_by_hand():
    """One 2x2 map, mask = left column: positive, absolute and signed relevance, computed by hand."""
    maps = torch.tensor([[[[2.0, -1.0], [1.0, -3.0]]]])
    masks = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert relevance_mass_accuracy(maps, masks).item() == pytest.approx(3 / 3)  # (2+1) / (2+1)
    assert relevance_mass_accuracy(maps, masks, "absolute").item() == pytest.approx(3 / 7)  # (2+1) / (2+1+1+3)
    assert relevance_mass_accuracy(maps, masks, "signed").item() == pytest.approx(3 / -1)  # (2+1) / (2-1+1-3)
    flipped = -maps  # all modes see a different map: only "absolute" is sign-blind
    assert relevance_mass_accuracy(flipped, masks).item() == pytest.approx(0.0)  # (0+0) / (1+3)
    assert relevance_mass_accuracy(flipped, masks, "absolute").item() == pytest.approx(3 / 7)
    nonnegative = maps.clamp_min(0)
    values = [relevance_mass_accuracy(nonnegative, masks, mode).item() for mode in ("positive", "absolute", "signed")]
    assert values == pytest.approx([1.0, 1.0, 1.0])
    assert RelevanceMassAccuracy(relevance="absolute").relevance == "absolute"
    with pytest.raises(MetricInputError) as exc:
        RelevanceMassAccuracy(relevance="negative")
    assert "positive, absolute, signed" in one_line(exc)


def test_rma_metric_needs_masks(tiny):
    x, y, _ = synthetic_batch(2, 32)
    with pytest.raises(UserError) as exc:
        RelevanceMassAccuracy().score(tiny, x, y, lambda x, y, create_graph=False: torch.rand(2, 1, 32, 32))
    assert "masks" in one_line(exc)


# ----------------------------------------------------------------------------- Focus

def test_make_mosaics_places_each_image_among_other_classes():
    x, y, _ = synthetic_batch(8, 16)
    mosaics, labels, quadrants = make_mosaics(x, y, seed=3)
    assert mosaics.shape == (8, 3, 32, 32) and torch.equal(labels, y) and quadrants.shape == (8, 4)
    assert quadrants.sum(1).eq(1).all()
    tiles = {0: (slice(0, 16), slice(0, 16)), 1: (slice(0, 16), slice(16, 32)),
             2: (slice(16, 32), slice(0, 16)), 3: (slice(16, 32), slice(16, 32))}
    for i in range(8):
        for q, (rows, cols) in tiles.items():
            tile = mosaics[i, :, rows, cols]
            sources = [j for j in range(8) if torch.equal(tile, x[j])]
            if quadrants[i, q]:
                assert i in sources
            else:
                assert sources and all(y[j] != y[i] for j in sources)
    again = make_mosaics(x, y, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(again, (mosaics, labels, quadrants)))
    with pytest.raises(MetricInputError) as exc:
        make_mosaics(x[:3], torch.zeros(3, dtype=torch.long))
    assert "two classes" in one_line(exc)


def test_half_mosaics_hold_half_resolution_images():
    """mosaic="half": an H x W mosaic whose quadrants are the 2x2 means of the images."""
    x, y, _ = synthetic_batch(6, 16)
    mosaics, _, quadrants = make_mosaics(x, y, seed=1, mosaic="half")
    full, _, same_quadrants = make_mosaics(x, y, seed=1, mosaic="full")
    assert mosaics.shape == (6, 3, 16, 16) and full.shape == (6, 3, 32, 32) and torch.equal(quadrants, same_quadrants)
    for i in range(6):
        q = int(quadrants[i].nonzero())
        rows, cols = divmod(q, 2)
        tile = mosaics[i, :, rows * 8:(rows + 1) * 8, cols * 8:(cols + 1) * 8]
        by_hand = x[i].reshape(3, 8, 2, 8, 2).mean((2, 4))
        torch.testing.assert_close(tile, by_hand)
    with pytest.raises(MetricInputError):
        Focus(mosaic="quarter")
    assert Focus().loss_fraction == 1.0 and Focus(mosaic="full").loss_fraction == 0.25


def test_focus_metric_single_class_batch_is_nan(tiny):
    x, _, _ = synthetic_batch(2, 16)
    same = torch.zeros(2, dtype=torch.long)
    explain = lambda x, y, create_graph=False: torch.rand(x.shape[0], 1, *x.shape[2:])  # noqa: E731
    assert torch.isnan(Focus().score(tiny, x, same, explain)).all()
    assert Focus().loss(tiny, x, same, explain).item() == 0.0


# ----------------------------------------------------------------------------- ROAD

def test_perturbation_metrics_reject_bad_inputs(tiny):
    x, y, _ = synthetic_batch(2, 16)
    maps = torch.rand(2, 1, 16, 16)
    for call in (lambda: road(tiny, x, y, maps[..., :8]), lambda: irof(tiny, x, y, maps[:1]),
                 lambda: road(tiny, x, y[:1], maps), lambda: road(tiny, x, y, maps, percentages=[0, 50])):
        with pytest.raises(MetricInputError) as exc:
            call()
        one_line(exc)


class TextureVote(nn.Module):
    """Class 0 while the left half's fine detail (horizontal steps) exceeds half the right half's."""

    def forward(self, x):
        steps = (x[..., 1:] - x[..., :-1]).abs()
        half = steps.shape[-1] // 2
        return torch.stack([steps[..., :half].mean((1, 2, 3)), 0.5 * steps[..., half:].mean((1, 2, 3))], 1)


def test_road_curves_follow_the_relevance_order():
    """The map marking the half the model reads: removing its top pixels (MoRF) flips the
    prediction, removing its bottom ones (LeRF) does not; the map marking the other half does
    the reverse. Every score: higher = more faithful."""
    torch.manual_seed(0)
    model, x, y = TextureVote(), torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long)
    left, right = half_maps(3, 32)
    grid = [40, 48]  # 80-96% of one half of the image
    assert road_curve(model, x, y, left, [1], noise=0.0).all()  # intact enough: class 0
    assert not road_curve(model, x, y, left, grid, noise=0.0).any()
    assert road_curve(model, x, y, left, grid, noise=0.0, order="lerf").all()
    assert road_curve(model, x, y, right, grid, noise=0.0).all()
    assert not road_curve(model, x, y, right, grid, noise=0.0, order="lerf").any()
    for curve, best, worst in (("morf", 1.0, 0.0), ("lerf", 1.0, 0.0), ("combined", 1.0, -1.0)):
        assert road(model, x, y, left, grid, noise=0.0, curve=curve).tolist() == [best] * 3
        assert road(model, x, y, right, grid, noise=0.0, curve=curve).tolist() == [worst] * 3


def test_road_grid_presets():
    assert ROAD().percentages == (5, 14, 23, 32, 41, 50, 59, 68, 77, 86)
    assert ROAD(percentages="quantus").percentages == tuple(float(p) for p in range(1, 100, 2))
    assert ROAD(percentages=[10, 90]).percentages == (10.0, 90.0)
    for bad in ({"percentages": "paper-ish"}, {"curve": "both"}):
        with pytest.raises(MetricInputError) as exc:
            ROAD(**bad)
        one_line(exc)


# ----------------------------------------------------------------------------- IROF

def test_irof_curve_follows_relevance_order():
    """A map marking the half the model reads scores higher than one marking the other half."""
    model = LeftTexture()
    x, _, _ = synthetic_batch(2, 32)
    y = torch.zeros(2, dtype=torch.long)
    segments = (torch.arange(32) >= 16).long().expand(2, 32, 32).contiguous()  # two superpixels: left, right
    left, right = half_maps(2, 32)
    curves, counts = irof_curves(model, x, y, left, segments=segments)
    assert counts.tolist() == [2, 2] and torch.allclose(curves[:, 1], curves[:, 0])  # left first; right adds nothing
    assert (curves < 0.9).all()
    right_first, _ = irof_curves(model, x, y, right, segments=segments)
    assert torch.allclose(right_first[:, 0], torch.ones(2, dtype=torch.float64))
    assert (irof(model, x, y, left, segments=segments) > irof(model, x, y, right, segments=segments) + 0.05).all()


@pytest.mark.parametrize("metric", [ROAD(loss_fraction=0.5), IROF(loss_fraction=0.5)], ids=["road", "irof"])
def test_removal_loss_rewards_the_faithful_map(metric):
    """The perturbation losses are lower when the map marks the evidence the model uses."""
    model = LeftTexture()
    x, _, _ = synthetic_batch(4, 32)
    y = torch.zeros(4, dtype=torch.long)
    left, right = half_maps(4, 32)
    faithful = metric.loss(model, x, y, lambda x, y, create_graph=False: left)
    unfaithful = metric.loss(model, x, y, lambda x, y, create_graph=False: right)
    assert faithful < unfaithful - 0.05


def test_fast_forward_equals_the_model_and_leaves_it_alone(tiny):
    x, _, _ = synthetic_batch(5, 32)
    relus = [m.inplace for m in tiny.modules() if isinstance(m, nn.ReLU)]
    fast = FastForward(tiny, batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(fast.logits(x), tiny(x), rtol=1e-4, atol=1e-5)
    assert fast.optimized and fast.channels_last and fast.module is not tiny
    assert [m.inplace for m in tiny.modules() if isinstance(m, nn.ReLU)] == relus
    assert all(p.is_contiguous() for p in tiny.parameters())
    assert FastForward(tiny.train()).module is tiny  # train mode: run as it is
    tiny.eval()


def test_fast_forward_falls_back_to_the_plain_model_with_one_log_line(caplog):
    """LeNet flattens with .view, which a channels-last tensor refuses: the copy raises on the
    first chunk, so the model itself runs (same logits, one log line saying why)."""
    torch.manual_seed(0)
    model = LeNet().eval()
    x, _, _ = synthetic_batch(5, 32)
    with caplog.at_level(logging.INFO, logger="lightning_modules.fast_forward"):
        fast = FastForward(model, batch_size=2)
        logits = fast.logits(x)
        fast.logits(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, torch.cat([model(chunk) for chunk in x.split(2)]), rtol=0, atol=0)
    assert fast.optimized is False and fast.module is model
    lines = [r.getMessage() for r in caplog.records if r.name == "lightning_modules.fast_forward"]
    assert len(lines) == 1 and "LeNet" in lines[0] and "plain model" in lines[0] and "\n" not in lines[0]


def test_fast_forward_rejects_a_copy_with_other_logits():
    """A copy that runs but computes something else is never used."""
    torch.manual_seed(0)
    model = plain_cnn().eval()
    fast = FastForward(model, batch_size=3)
    fast._candidate = plain_cnn().eval()  # other weights: other logits
    x, _, _ = synthetic_batch(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast.logits(x), model(x), rtol=0, atol=0)
    assert fast.optimized is False


USER_MODELS = {"lenet_view": LeNet, "no_batchnorm": plain_cnn}
ANY_MODEL_METRICS = {"rma": RelevanceMassAccuracy(), "focus": Focus(mosaic="half"),
                     "road": ROAD(percentages=[20, 60], curve="combined"), "irof": IROF(n_segments=12),
                     "ris": RelativeInputStability(n_samples=2)}


@pytest.mark.parametrize("metric", list(ANY_MODEL_METRICS))
@pytest.mark.parametrize("model_name", list(USER_MODELS))
def test_every_metric_scores_and_trains_a_user_model(model_name, metric):
    """A user's nn.Module (LeNet with .view, a CNN without BatchNorm) scores under every metric."""
    from lightning_modules.attributions import InputXGradient

    torch.manual_seed(0)
    model = USER_MODELS[model_name]().eval()
    x, y, masks = synthetic_batch(4, 32)
    explain = InputXGradient(model)
    scores = ANY_MODEL_METRICS[metric].score(model, x, y, explain, masks)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    loss = ANY_MODEL_METRICS[metric].loss(model, x, y, explain, masks)
    loss.backward()
    assert torch.isfinite(loss) and model.conv_1.weight.grad is not None if model_name == "lenet_view" else True


# ----------------------------------------------------------------------------- RIS

def test_ris_skips_changed_predictions_and_plain_callables():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    x = torch.randn(3, 3, 4, 4)
    y = model(x).argmax(1)
    gradient = lambda x, y, create_graph=False: x.sum(1, keepdim=True)  # noqa: E731 - a plain callable
    big = torch.full((2, 3, 3, 4, 4), 50.0)
    big[1] = 0.05
    flips = (model(x + 50).argmax(1) != y)
    skipped = relative_input_stability(model, x, y, gradient, perturbations=big)
    only_small = relative_input_stability(model, x, y, gradient, perturbations=big[1:])
    strict = relative_input_stability(model, x, y, gradient, perturbations=big, nan_on_prediction_change=True)
    assert torch.equal(torch.isnan(strict), flips)
    assert torch.allclose(skipped[flips], only_small[flips])
    with pytest.raises(MetricInputError):
        relative_input_stability(model, x, y, gradient, perturbations=big[:, :2])


# ----------------------------------------------------------------------------- the metric classes

METRICS = ["rma", "focus", "road", "irof", "ris"]


@pytest.fixture(scope="module")
def metric_configs():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from harmony_cli.hydra_app import CONFIG_DIR

    out = {}
    for name in METRICS:
        cfg = OmegaConf.load(f"{CONFIG_DIR}/metric/{name}.yaml")
        out[name] = (cfg, instantiate(cfg.metric))
    return out


# The study's facts, written out here (not read from the code under test).
FACTS = {"rma": ("localization", True, True), "focus": ("localization", True, False),
         "road": ("perturbation", True, False), "irof": ("perturbation", True, False),
         "ris": ("stability", False, False)}


@pytest.mark.parametrize("name", METRICS)
def test_a_metric_owns_its_facts(metric_configs, name):
    """The class holds name, family, direction and mask need; the YAML only how to build and train it."""
    from lightning_modules.metrics import metric_class

    cfg, metric = metric_configs[name]
    cls = metric_class(name)
    assert type(metric) is cls and metric_class(cfg) is cls and metric_class(cfg.metric._target_) is cls
    assert (cls.name, cls.family, cls.higher_is_better, cls.needs_masks) == (name, *FACTS[name])
    assert not {"family", "higher_is_better", "needs_masks"} & set(cfg), "a fact is back in the YAML"
    assert cfg.loss_weight > 0


def test_metric_class_of_an_unknown_name_lists_the_known_ones():
    from lightning_modules.metrics import metric_class

    with pytest.raises(MetricInputError) as exc:
        metric_class("accuracy")
    assert all(name in one_line(exc) for name in METRICS)
    with pytest.raises(MetricInputError):
        metric_class("lightning_modules.attributions.GradCAM")  # a class, but not a metric


SMALL = {"rma": {}, "focus": {}, "road": {"percentages": [20, 60]}, "irof": {"n_segments": 12},
         "ris": {"n_samples": 2}}


@pytest.mark.parametrize("name", METRICS)
def test_score_and_loss_train_the_model(metric_configs, name):
    """score: (B,) without gradient; loss: a scalar whose gradient reaches the weights through the maps."""
    from lightning_modules.attributions import GradCAM

    torch.manual_seed(0)
    model = TinyCNN(num_classes=8)
    metric = type(metric_configs[name][1])(**SMALL[name])
    x, y, masks = synthetic_batch(4, 32)
    explain = GradCAM(model, "features.20")
    model.eval()
    scores = metric.score(model, x, y, explain, masks)
    assert scores.shape == (4,) and not scores.requires_grad
    assert torch.equal(metric.score(model, x, y, explain, masks), scores)  # seeded: deterministic
    single = metric.score(model, x[:1], y[:1], explain, masks[:1])
    assert single.shape == (1,)
    model.train()
    loss = metric.loss(model, x, y, explain, masks)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    head = model.features[0].weight.grad  # below GradCAM's layer: reached only through the map
    assert head is not None and head.abs().sum() > 0
