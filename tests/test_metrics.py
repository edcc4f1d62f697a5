"""Explanation metrics: equal to Quantus 0.6 on the same inputs, edge cases, and the
score/loss interface the fine-tuning module calls. Small images, few samples: fast."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.backbones import TinyCNN
from lightning_modules.data.synthetic import render
from lightning_modules.data.transforms import normalize
from lightning_modules.errors import UserError
from lightning_modules.metrics import (IROF, ROAD, FastForward, Focus, MetricInputError, RelevanceMassAccuracy,
                                       focus, irof, irof_curves, make_mosaics, noisy_linear_imputation,
                                       relative_input_stability, relevance_mass_accuracy, road, road_curve,
                                       slic_segments)

quantus = pytest.importorskip("quantus", reason="quantus (a dev dependency) is the reference implementation")
from quantus.functions.perturb_func import baseline_replacement_by_mask  # noqa: E402
from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation  # noqa: E402

warnings.filterwarnings("ignore", module="quantus")


@pytest.fixture(autouse=True)
def numpy_trapz(monkeypatch):
    """Quantus 0.6 calls np.trapz, which NumPy 2.4 removed; np.trapezoid is the same function."""
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


def synthetic_batch(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n normalized synthetic test images (n,3,size,size), labels, object masks (n,1,size,size)."""
    images, masks, labels = zip(*[render(seed, "test", i, size) for i in range(n)])
    x = normalize(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255)
    return x, torch.tensor(labels), torch.from_numpy(np.stack(masks))[:, None].float()


def gray_model(classes: int = 4) -> nn.Module:
    """A small random CNN on single-channel images (where Quantus' ROAD and IROF run unpatched)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, stride=2, bias=False), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes, bias=False)).eval()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyCNN(num_classes=8).eval()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


# ----------------------------------------------------------------------------- RMA

def test_rma_equals_quantus_on_positive_relevance(tiny):
    x, y, masks = synthetic_batch(5, 32)
    maps = torch.randn(5, 1, 32, 32)
    reference = quantus.RelevanceMassAccuracy(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.clamp_min(0).numpy(), s_batch=masks.numpy())
    ours = relevance_mass_accuracy(maps, masks)
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-5)
    # Quantus sums signed relevance; on signed maps the values differ (documented choice).
    signed = quantus.RelevanceMassAccuracy(disable_warnings=True, normalise=False)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy(), s_batch=masks.numpy())
    assert not np.allclose(ours.numpy(), np.asarray(signed))


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


def test_focus_equals_quantus(tiny):
    x, y, _ = synthetic_batch(6, 16)
    mosaics, labels, quadrants = make_mosaics(x, y)
    maps = torch.randn(6, 1, 32, 32)
    reference = quantus.Focus(disable_warnings=True)(
        model=tiny, x_batch=mosaics.numpy(), y_batch=labels.numpy(), a_batch=maps.numpy(),
        custom_batch=quadrants.int().numpy())
    ours = focus(maps, quadrants)
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-5, atol=1e-7)
    two_targets = torch.tensor([[True, True, False, False]])  # the paper's layout, 2 target quadrants
    one = torch.zeros(1, 1, 4, 4)
    one[..., :2, :] = 1
    assert focus(one, two_targets).item() == 1.0
    assert focus(torch.zeros(1, 1, 4, 4), two_targets).item() == 0.0  # no positive relevance
    with pytest.raises(MetricInputError):
        focus(maps, quadrants[:, :3])


def test_focus_metric_single_class_batch_is_nan(tiny):
    x, _, _ = synthetic_batch(2, 16)
    same = torch.zeros(2, dtype=torch.long)
    explain = lambda x, y, create_graph=False: torch.rand(x.shape[0], 1, *x.shape[2:])  # noqa: E731
    assert torch.isnan(Focus().score(tiny, x, same, explain)).all()
    assert Focus().loss(tiny, x, same, explain).item() == 0.0


# ----------------------------------------------------------------------------- ROAD

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["scattered", "blob"])
def test_imputation_equals_quantus(channels, kind):
    torch.manual_seed(0)
    x, _, _ = synthetic_batch(3, 24)
    x = x[:, :channels]
    maps = torch.rand(3, 1, 24, 24) if kind == "scattered" else \
        nn.functional.interpolate(torch.rand(3, 1, 3, 3), size=(24, 24), mode="bilinear")
    order = torch.argsort(maps.flatten(1), dim=1, descending=True)
    for percentage in (9, 50, 90):
        k = int(24 * 24 * percentage / 100)
        unknown = torch.zeros(3, 24 * 24, dtype=torch.bool).scatter_(1, order[:, :k], True).view(3, 1, 24, 24)
        ours = noisy_linear_imputation(x, unknown, noise=0.0)
        for i in range(3):
            reference = quantus_imputation(x[i].double().numpy(), order[i, :k].numpy(), noise=0.0)
            np.testing.assert_allclose(ours[i].numpy(), reference, atol=5e-4 * float(x.std()))
        assert torch.equal(ours[~unknown.expand_as(x)], x[~unknown.expand_as(x)])  # kept pixels untouched
    noisy = noisy_linear_imputation(x, unknown, noise=0.5, generator=torch.Generator().manual_seed(0))
    difference = (noisy - ours)[unknown.expand_as(x)]
    assert 0.4 < float(difference.std()) < 0.6 and torch.equal(noisy[~unknown.expand_as(x)], x[~unknown.expand_as(x)])


def test_road_equals_quantus_on_single_channel_input():
    model = gray_model()
    x, _, _ = synthetic_batch(6, 16)
    x = x.mean(1, keepdim=True)
    y = model(x).argmax(1)  # correctly classified: the curve starts at 1
    maps = x.abs() + 0.01 * torch.rand(6, 1, 16, 16)  # extreme pixels first: the predictions change
    percentages = [10, 40, 70, 95]
    ours = road_curve(model, x, y, maps, percentages, noise=0.0)
    for i in range(6):
        result = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)(
            model=model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(), a_batch=maps[i:i + 1].numpy(),
            device="cpu")
        np.testing.assert_array_equal(ours[i].numpy(), [result[p] for p in percentages])
    assert ours.float().mean() < 1  # the removal changes some predictions: the comparison is not vacuous
    scores = road(model, x, y, maps, percentages, noise=0.0)
    assert torch.allclose(scores, 1 - ours.float().mean(1))


def test_road_rgb_equals_quantus_per_pixel(tiny):
    """Quantus' ROAD fails on RGB (it ranks the map broadcast over channels: IndexError);
    its own loop with the map ranked per pixel is the reference."""
    x, _, _ = synthetic_batch(3, 16)
    y = tiny(x).argmax(1)
    maps = torch.rand(3, 1, 16, 16)
    percentages = [20, 60, 90]
    with pytest.raises(IndexError):
        quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)(
            model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy(), device="cpu")
    ours = road_curve(tiny, x, y, maps, percentages, noise=0.0)
    order = np.argsort(-maps.flatten(1).numpy(), axis=1)
    for j, p in enumerate(percentages):
        k = int(16 * 16 * p / 100)
        imputed = np.stack([quantus_imputation(x[i].numpy(), order[i, :k], noise=0.0) for i in range(3)])
        with torch.no_grad():
            correct = tiny(torch.from_numpy(imputed).float()).argmax(1) == y
        assert torch.equal(ours[:, j], correct)


def test_perturbation_metrics_reject_bad_inputs(tiny):
    x, y, _ = synthetic_batch(2, 16)
    maps = torch.rand(2, 1, 16, 16)
    for call in (lambda: road(tiny, x, y, maps[..., :8]), lambda: irof(tiny, x, y, maps[:1]),
                 lambda: road(tiny, x, y[:1], maps), lambda: road(tiny, x, y, maps, percentages=[0, 50])):
        with pytest.raises(MetricInputError) as exc:
            call()
        one_line(exc)


# ----------------------------------------------------------------------------- IROF

def test_irof_equals_quantus_times_segments():
    model = gray_model()
    x, _, _ = synthetic_batch(3, 32)
    x = x.mean(1, keepdim=True)
    y = torch.tensor([0, 1, 2])
    maps = torch.rand(3, 1, 32, 32)
    ours = irof(model, x, y, maps)
    counts = slic_segments(x).flatten(1).amax(1) + 1
    assert (counts > 10).all()
    for i in range(3):
        baseline = x[i:i + 1].mean(dim=(2, 3), keepdim=True).expand(1, 1, 32, 32).numpy()
        reference = quantus.IROF(return_aggregate=False, perturb_baseline=baseline, disable_warnings=True)(
            model=model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(), a_batch=maps[i:i + 1].numpy(),
            device="cpu", batch_size=1)
        np.testing.assert_allclose(float(ours[i]) * int(counts[i]), reference[0], rtol=1e-4)


def test_irof_rgb_equals_quantus_with_broadcast_mask(tiny):
    x, y, _ = synthetic_batch(2, 32)
    maps = torch.rand(2, 1, 32, 32)
    ours = irof(tiny, x, y, maps, n_segments=30)
    counts = slic_segments(x, n_segments=30).flatten(1).amax(1) + 1
    with pytest.raises(AssertionError, match="shape"):  # Quantus' own mask replacement on RGB input
        quantus.IROF(return_aggregate=False, disable_warnings=True)(
            model=tiny, x_batch=x[:1].numpy(), y_batch=y[:1].numpy(), a_batch=maps[:1].numpy(), device="cpu")

    def broadcast_mask(arr, mask, **kwargs):
        return baseline_replacement_by_mask(arr, np.broadcast_to(mask, arr.shape), **kwargs)

    import quantus.helpers.utils as quantus_utils
    from skimage.segmentation import slic
    original = quantus_utils.get_superpixel_segments
    quantus_utils.get_superpixel_segments = lambda img, segmentation_method: slic(img, n_segments=30, start_label=0)
    try:
        for i in range(2):
            baseline = x[i:i + 1].mean(dim=(2, 3), keepdim=True).expand(1, 3, 32, 32).numpy()
            reference = quantus.IROF(return_aggregate=False, perturb_func=broadcast_mask, perturb_baseline=baseline,
                                     disable_warnings=True)(
                model=tiny, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(), a_batch=maps[i:i + 1].numpy(),
                device="cpu", batch_size=1)
            np.testing.assert_allclose(float(ours[i]) * int(counts[i]), reference[0], rtol=1e-4)
    finally:
        quantus_utils.get_superpixel_segments = original


class LeftTexture(nn.Module):
    """Two classes; the evidence for class 0 is the fine detail (horizontal steps) of the left half."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2]
        texture = (left[..., 1:] - left[..., :-1]).abs().mean(dim=(1, 2, 3)) * 10
        return torch.stack([texture, -texture], 1)


def half_maps(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    left = torch.zeros(n, 1, size, size)
    left[..., : size // 2] = 1
    return left + 0.01 * torch.rand(n, 1, size, size), 1 - left + 0.01 * torch.rand(n, 1, size, size)


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
    assert fast.channels_last and fast.module is not tiny
    assert [m.inplace for m in tiny.modules() if isinstance(m, nn.ReLU)] == relus
    assert all(p.is_contiguous() for p in tiny.parameters())
    assert FastForward(tiny.train()).module is tiny  # train mode: run as it is
    tiny.eval()


# ----------------------------------------------------------------------------- RIS

@pytest.mark.parametrize("nan_on_prediction_change", [True, False])
def test_ris_equals_quantus(tiny, nan_on_prediction_change):
    from lightning_modules.attributions import GradCAM

    x, y, _ = synthetic_batch(4, 32)
    explain = GradCAM(tiny, "features.20")
    n_samples = 3

    def quantus_explain(model, inputs, targets, **kwargs):
        return explain(torch.from_numpy(inputs).float(), torch.from_numpy(np.asarray(targets)).long()).numpy()

    np.random.seed(7)
    draws = np.stack([np.random.uniform(0.02, 0.2, size=(4, x[0].numel())) for _ in range(n_samples)])
    np.random.seed(7)
    reference = quantus.RelativeInputStability(nr_samples=n_samples, disable_warnings=True,
                                               return_nan_when_prediction_changes=nan_on_prediction_change)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=quantus_explain, device="cpu")
    ours = relative_input_stability(tiny, x, y, explain, perturbations=torch.from_numpy(draws).view(n_samples, *x.shape),
                                    nan_on_prediction_change=nan_on_prediction_change)
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-4)
    assert np.isfinite(np.asarray(reference)).any()


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


@pytest.mark.parametrize("name", METRICS)
def test_metric_config_matches_class(metric_configs, name):
    cfg, metric = metric_configs[name]
    assert (metric.name, metric.family, metric.higher_is_better, metric.needs_masks) == \
        (cfg.name, cfg.family, cfg.higher_is_better, cfg.needs_masks)
    assert cfg.family in ("localization", "perturbation", "stability") and cfg.loss_weight > 0


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
