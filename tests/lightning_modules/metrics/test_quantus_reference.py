"""Explanation metrics against Quantus 0.6 (the reference implementation) on the same inputs.

Each test asks for the ``quantus`` fixture, which skips that test alone when quantus (a
dev dependency) is not installed.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.backbones import TinyCNN
from lightning_modules.metrics import (MetricInputError, focus, irof, make_mosaics, noisy_linear_imputation,
                                       relative_input_stability,
                                       relevance_mass_accuracy, road, road_curve, slic_segments)
from tests.metric_cases import gray_model, synthetic_batch

warnings.filterwarnings("ignore", module="quantus")


@pytest.fixture
def quantus(monkeypatch):
    """The quantus package (this test skips without it); Quantus 0.6 calls np.trapz, which NumPy 2.4
    removed: np.trapezoid is the same function."""
    module = pytest.importorskip("quantus", reason="quantus (a dev dependency) is the reference implementation")
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return module


def quantus_imputation(*args, **kwargs):
    from quantus.functions.perturb_func import noisy_linear_imputation as reference
    return reference(*args, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyCNN(num_classes=8).eval()


def test_rma_equals_quantus_on_positive_relevance(tiny, quantus):
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




def test_focus_equals_quantus(tiny, quantus):
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



@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["scattered", "blob"])
def test_imputation_equals_quantus(channels, kind, quantus):
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


def test_road_equals_quantus_on_single_channel_input(quantus):
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


def test_road_rgb_equals_quantus_per_pixel(tiny, quantus):
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


def test_irof_equals_quantus_times_segments(quantus):
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


def test_irof_rgb_equals_quantus_with_broadcast_mask(tiny, quantus):
    x, y, _ = synthetic_batch(2, 32)
    maps = torch.rand(2, 1, 32, 32)
    ours = irof(tiny, x, y, maps, n_segments=30)
    counts = slic_segments(x, n_segments=30).flatten(1).amax(1) + 1
    with pytest.raises(AssertionError, match="shape"):  # Quantus' own mask replacement on RGB input
        quantus.IROF(return_aggregate=False, disable_warnings=True)(
            model=tiny, x_batch=x[:1].numpy(), y_batch=y[:1].numpy(), a_batch=maps[:1].numpy(), device="cpu")

    from quantus.functions.perturb_func import baseline_replacement_by_mask

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


@pytest.mark.parametrize("nan_on_prediction_change", [True, False])
def test_ris_equals_quantus(tiny, nan_on_prediction_change, quantus):
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




def test_road_lerf_equals_quantus_on_the_negated_map(quantus):
    """Quantus has MoRF only; its MoRF curve of c - a (the order of -a; Quantus refuses all-negative
    maps) is the LeRF curve of a."""
    model = gray_model()
    x, _, _ = synthetic_batch(4, 16)
    x = x.mean(1, keepdim=True)
    y = model(x).argmax(1)
    maps = x.abs() + 0.01 * torch.rand(4, 1, 16, 16)
    percentages = [30, 60, 90]
    lerf = road_curve(model, x, y, maps, percentages, noise=0.0, order="lerf")
    morf = road_curve(model, x, y, maps, percentages, noise=0.0)
    for i in range(4):
        for given, ours in ((maps.max() + 0.1 - maps, lerf), (maps, morf)):
            result = quantus.ROAD(percentages=percentages, noise=0.0, disable_warnings=True)(
                model=model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(),
                a_batch=given[i:i + 1].numpy(), device="cpu")
            np.testing.assert_array_equal(ours[i].numpy(), [result[p] for p in percentages])
    assert not torch.equal(lerf, morf)  # the two orders differ here: the comparison is not vacuous
    combined = road(model, x, y, maps, percentages, noise=0.0, curve="combined")
    assert torch.allclose(combined, lerf.float().mean(1) - morf.float().mean(1))


def test_road_quantus_grid_is_quantus_default(quantus):
    """ROAD(percentages="quantus") evaluates exactly the percentages of quantus.ROAD()."""
    from lightning_modules.metrics import ROAD

    model = gray_model()
    x = synthetic_batch(1, 8)[0].mean(1, keepdim=True)
    y = model(x).argmax(1)
    result = quantus.ROAD(noise=0.0, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=torch.rand(1, 1, 8, 8).numpy(), device="cpu")
    assert ROAD(percentages="quantus").percentages == tuple(float(p) for p in result)


@pytest.mark.parametrize("relevance", ["absolute", "signed"])
def test_rma_relevance_modes_against_quantus(quantus, relevance):
    """signed equals Quantus' sum(a*s)/sum(a) on signed maps; absolute equals Quantus on |a|."""
    x, y, masks = synthetic_batch(5, 32)
    maps = torch.randn(5, 1, 32, 32) + 0.5  # positive totals: Quantus' ratio is finite
    given = maps.abs() if relevance == "absolute" else maps
    reference = quantus.RelevanceMassAccuracy(disable_warnings=True, normalise=False)(
        model=TinyCNN(num_classes=8).eval(), x_batch=x.numpy(), y_batch=y.numpy(), a_batch=given.numpy(),
        s_batch=masks.numpy())
    ours = relevance_mass_accuracy(maps, masks, relevance)
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-5)
