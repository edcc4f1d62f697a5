"""Quantus' own fixed-array test fixtures, re-expressed as tests of harmony's functions.

Facts carried over from Quantus' tests/metrics/test_localisation_metrics.py (the cases with
fixed arrays: 224x224 maps and masks with a block of ones, noise below 0.1 elsewhere), not
its code. Quantus' ROAD, IROF and relative-stability tests run trained MNIST/CIFAR models and
check types and ranges only; their fixed facts, and the comparisons with Quantus itself, are
tested in each metric's file (test_road.py, test_irof.py, test_ris.py).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.metrics import focus, relevance_mass_accuracy


def block(rows: slice, cols: slice, n: int = 10, size: int = 224, noise: bool = False, seed: int = 0) -> torch.Tensor:
    """(n,1,size,size): ones on [rows, cols], zeros (or U(0, 0.1) noise) elsewhere."""
    out = torch.from_numpy(np.random.default_rng(seed).uniform(0, 0.1, (n, 1, size, size))) if noise \
        else torch.zeros(n, 1, size, size, dtype=torch.float64)
    out[..., rows, cols] = 1.0
    return out


# (masks, maps, expected RMA) as in Quantus' fixtures of the same names
RMA_FIXTURES = {
    "all_in_gt_zeros": (block(slice(50, 150), slice(50, 150)), block(slice(50, 150), slice(50, 150)), 1.0),
    "none_in_gt_zeros": (block(slice(0, 100), slice(0, 100)), block(slice(100, 200), slice(100, 200)), 0.0),
    "half_in_gt_zeros": (block(slice(50, 100), slice(50, 100)), block(slice(0, 100), slice(75, 100)), 0.5),
}


@pytest.mark.parametrize("relevance", ["positive", "absolute", "signed"])
@pytest.mark.parametrize("case", list(RMA_FIXTURES))
def test_rma_quantus_fixtures(case, relevance):
    masks, maps, expected = RMA_FIXTURES[case]
    scores = relevance_mass_accuracy(maps, masks, relevance)
    assert scores.tolist() == [expected] * 10


def test_rma_quantus_fixture_segment_bigger_than_the_map():
    """all_in_gt_seg_bigger: the mask (0:150)^2 holds the map's block (50:150)^2 and some of the
    U(0, 0.1) noise around it: 0.5 < RMA < 1."""
    masks = block(slice(0, 150), slice(0, 150))
    maps = block(slice(50, 150), slice(50, 150), noise=True)
    scores = relevance_mass_accuracy(maps, masks)
    assert ((scores > 0.5) & (scores < 1.0)).all()


def artificial_mosaics() -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
    """Quantus' load_artificial_attribution: 56x56 maps of four 28x28 tiles of zeros or ones,
    for the tile tuples below. Its construction stacks tiles 0 and 1 vertically (the left
    column) and 2 and 3 (the right column): tile order top-left, bottom-left, top-right,
    bottom-right."""
    tiles = [(0, 0, 1, 1), (1, 1, 0, 0), (0, 1, 0, 1), (1, 0, 1, 0)]
    maps = torch.zeros(4, 1, 56, 56, dtype=torch.float64)
    for i, (top_left, bottom_left, top_right, bottom_right) in enumerate(tiles):
        maps[i, 0, :28, :28], maps[i, 0, 28:, :28] = top_left, bottom_left
        maps[i, 0, :28, 28:], maps[i, 0, 28:, 28:] = top_right, bottom_right
    return maps, tiles


def test_focus_quantus_artificial_mosaics():
    """Target quadrants (top-left, top-right, bottom-left, bottom-right, Quantus' custom_batch
    order) on exactly the tiles of ones: Focus 1; on the others: 0. Quantus' test passes the
    tile tuples themselves as custom_batch, which reads the columns as rows: 0.5 here, and 0.5
    in Quantus 0.6 too (run by hand when this test was written), not the 1 its test expects."""
    maps, tiles = artificial_mosaics()
    ones = torch.tensor([(tl, tr, bl, br) for tl, bl, tr, br in tiles], dtype=torch.bool)
    assert focus(maps, ones).tolist() == [1.0] * 4
    assert focus(maps, ~ones).tolist() == [0.0] * 4
    assert focus(maps, torch.tensor(tiles, dtype=torch.bool)).tolist() == [0.5] * 4
