"""ROAD's curve (lightning_modules/metrics/road.py) read through a model that recognizes exactly the
images ROAD must show it, written out here from Rong et al.'s definition: a black image whose
``k = int(H*W*p/100)`` most (MoRF) or least (LeRF) relevant pixels are removed, imputed black (a hole
whose surroundings are all black), plus ``noise * N(0, 1)`` drawn from the generator, one draw
of the batch's shape per percentage, in the grid's order."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.metrics import ROAD
from lightning_modules.metrics.base import MetricInputError
from lightning_modules.metrics.road import pixel_ranks, road, road_curve

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
