"""ROAD (lightning_modules/metrics/road.py).

Its curve read through a model that recognizes exactly the
images ROAD must show it, written out here from Rong et al.'s definition: a black image whose
``k = int(H*W*p/100)`` most (MoRF) or least (LeRF) relevant pixels are removed, imputed black (a hole
whose surroundings are all black), plus ``noise * N(0, 1)`` drawn from the generator, one draw
of the batch's shape per percentage, in the grid's order. Then the curves' order on a model that
reads half the image, the percentage grids, and ROAD against Quantus' ROAD (MoRF, LeRF, RGB, its grid).
Cases that compare with Quantus 0.6 (the reference implementation) ask for the ``quantus`` fixture
(conftest.py), which skips them alone where quantus, a dev dependency, is absent."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.metrics import ROAD
from lightning_modules.metrics.base import MetricInputError
from lightning_modules.metrics.road import pixel_ranks, road, road_curve
from tests.metric_cases import gray_model, half_maps, one_line, quantus_imputation, synthetic_batch

SIDE = 4  # 16 pixels: at p = 99, int(16 * 99 / 100) = 15 pixels (p / 99 would remove all 16)
PERCENTAGES = (25.0, 50.0, 99.0)


def removed_mask(maps: torch.Tensor, p: float, most_relevant: bool) -> torch.Tensor:
    """(B,1,S,S) -> (B,1,S,S) float: the k pixels with the highest (lowest) values, ties by index."""
    b = maps.shape[0]
    flat = maps.flatten(1).tolist()
    k = int(SIDE * SIDE * p / 100)
    mask = torch.zeros(b, SIDE * SIDE)
    for i, values in enumerate(flat):
        order = sorted(range(len(values)), key=lambda j: (-values[j] if most_relevant else values[j], j))
        mask[i, order[:k]] = 1.0
    return mask.view(b, 1, SIDE, SIDE)


def expected_images(maps, percentages, noise, draw, most_relevant=True) -> torch.Tensor:
    """(P*B, 3, S, S): what ROAD shows the model for each percentage, in order."""
    out = []
    for p in percentages:
        eps = draw((maps.shape[0], 3, SIDE, SIDE))
        out.append(noise * eps * removed_mask(maps, p, most_relevant))
    return torch.cat(out)


class Recognizer(nn.Module):
    """Class 1 for an image equal (to 1e-5) to one of ``expected``, else class 0; records the
    number of images of each call. In train mode, so FastForward runs it as it is."""

    def __init__(self, expected: torch.Tensor):
        super().__init__()
        self.expected = expected.flatten(1)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        match = (torch.cdist(x.flatten(1).double(), self.expected.double()).amin(1) < 1e-5).float()
        return torch.stack([1 - match, match], dim=1)


def black_batch(b: int = 3):
    x = torch.zeros(b, 3, SIDE, SIDE)
    maps = torch.rand(b, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(11))
    return x, torch.ones(b, dtype=torch.long), maps


def seeded(seed: int):
    gen = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=gen)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_curve_shows_the_model_the_defined_images(order):
    x, y, maps = black_batch()
    model = Recognizer(expected_images(maps, PERCENTAGES, 0.3, seeded(5), most_relevant=order == "morf")).train()
    correct = road_curve(model, x, y, maps, PERCENTAGES, noise=0.3, generator=torch.Generator().manual_seed(5),
                         order=order)
    assert correct.shape == (3, 3) and bool(correct.all()), correct
    other = Recognizer(expected_images(maps, PERCENTAGES, 0.3, seeded(5), most_relevant=order != "morf")).train()
    assert not bool(road_curve(other, x, y, maps, PERCENTAGES, noise=0.3, generator=torch.Generator().manual_seed(5),
                               order=order).any())  # the recognizer tells the orders apart


def test_road_noise_defaults_to_rong_et_als_001_and_the_class_seeds_0():
    x, y, maps = black_batch()
    model = Recognizer(expected_images(maps, PERCENTAGES, 0.01, seeded(2))).train()
    assert bool(road_curve(model, x, y, maps, PERCENTAGES, generator=torch.Generator().manual_seed(2)).all())
    # road's MoRF score is 1 - mean accuracy: 0 when every image is the defined one
    assert torch.equal(road(model, x, y, maps, PERCENTAGES, generator=torch.Generator().manual_seed(2)),
                       torch.zeros(3))
    harmony_grid = [5 + 9 * i for i in range(10)]  # the documented default grid: 5, 14, ..., 86
    model = Recognizer(expected_images(maps, harmony_grid, 0.01, seeded(0))).train()
    score = ROAD().score(model, x, y, lambda inputs, targets: maps)
    assert torch.equal(score, torch.zeros(3)), score


def test_road_noise_from_torchs_global_generator_when_none_is_given():
    x, y, maps = black_batch()
    torch.manual_seed(21)
    expected = expected_images(maps, PERCENTAGES, 0.3, lambda shape: torch.randn(shape))
    torch.manual_seed(21)
    assert bool(road_curve(Recognizer(expected).train(), x, y, maps, PERCENTAGES, noise=0.3).all())


def test_road_model_sees_batches_of_batch_size_and_any_chunking_gives_the_same_curve():
    x, y, maps = black_batch(4)
    grid = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0)
    model = Recognizer(expected_images(maps, grid, 0.3, seeded(1))).train()
    correct = road_curve(model, x, y, maps, grid, noise=0.3, generator=torch.Generator().manual_seed(1), batch_size=8)
    assert bool(correct.all()) and model.calls == [8, 8, 8]  # 24 removals, two percentages per call
    model.calls.clear()
    one_image_chunks = road_curve(model, x, y, maps, grid, noise=0.0, batch_size=8, chunk_pixels=1)
    assert one_image_chunks.shape == (4, 6)


def test_road_percentages_lie_in_0_to_100_inclusive():
    x, y, maps = black_batch()
    everything = road_curve(Recognizer(expected_images(maps, [100.0], 0.3, seeded(3))).train(), x, y, maps, [100],
                            noise=0.3, generator=torch.Generator().manual_seed(3))
    assert bool(everything.all())  # p = 100 removes every pixel
    for bad in ([100.5], [0], [-5], []):
        with pytest.raises(MetricInputError, match=r"ROAD percentages must lie in \(0, 100\]"):
            road_curve(nn.Identity(), x, y, maps, bad)


def test_road_pixel_ranks_most_relevant_first_by_default_and_ties_by_pixel_index():
    maps = torch.tensor([[0.2, 0.9, 0.5, 0.1]]).view(1, 1, 2, 2)
    assert pixel_ranks(maps).flatten().tolist() == [2, 0, 1, 3]
    assert pixel_ranks(maps, descending=False).flatten().tolist() == [1, 3, 2, 0]
    ties = torch.zeros(2, 1, 64, 64)
    ties[:, :, ::3] = 1.0  # 1,376 pixels at 1, 2,720 at 0 per image: a large tie (unstable sorts reorder it)
    ranks = pixel_ranks(ties).flatten(1)
    flat = ties.flatten(1)
    for i in range(2):
        ones, zeros = flat[i].nonzero().flatten(), (flat[i] == 0).nonzero().flatten()
        assert ranks[i, ones].tolist() == list(range(len(ones)))
        assert ranks[i, zeros].tolist() == list(range(len(ones), 64 * 64))


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
