"""RMA (lightning_modules/metrics/rma.py): edge cases, its relevance modes by hand and against
Quantus, and its training loss on hand-computed maps, on a batch with and without object masks:
where no image has an object its loss must be exactly 0 and still back-propagate, and the loss's
sign. Expected values are computed by hand from RMA's definition (positive relevance inside the
mask / total positive relevance), not by the metric.
Cases that compare with Quantus 0.6 (the reference implementation) ask for the ``quantus`` fixture
(conftest.py), which skips them alone where quantus, a dev dependency, is absent.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.backbones import TinyCNN
from lightning_modules.errors import UserError
from lightning_modules.metrics import RelevanceMassAccuracy, relevance_mass_accuracy
from lightning_modules.metrics.base import MetricInputError
from tests.metric_cases import one_line, synthetic_batch


def explainer(maps: torch.Tensor):
    """An ``explain(x, y, create_graph=...)`` that returns ``maps`` (B,1,H,W) whatever the images."""
    return lambda x, y, create_graph=False: maps


def batch(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(maps.shape[0], 3, *maps.shape[2:]), torch.zeros(maps.shape[0], dtype=torch.long)


def test_loss_is_minus_the_mean_rma_of_the_images_with_an_object():
    weights = torch.tensor([[1.0, 3.0], [2.0, -4.0]], requires_grad=True)  # image 0 / image 1 maps (2x2)
    maps = torch.stack([weights, weights.flip(1)])[:, None]  # (2,1,2,2)
    masks = torch.zeros(2, 1, 2, 2)
    masks[0, 0, 0, 1] = 1  # image 0: object at the top right
    masks[1, 0, 1, 1] = 1  # image 1: object at the bottom right
    x, y = batch(maps)
    loss = RelevanceMassAccuracy().loss(None, x, y, explainer(maps), masks)
    # image 0: positive relevance 1, 3, 2 (the -4 is not relevance): 3 of 6 inside -> 0.5
    # image 1 (columns flipped): [[3, 1], [-4, 2]]: 2 of 6 inside -> 1/3
    assert loss.item() == pytest.approx(-(0.5 + 1 / 3) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(weights.grad).all() and weights.grad.abs().sum() > 0


def test_loss_without_any_object_is_zero_and_still_differentiable():
    weights = torch.tensor([[1.0, 3.0], [2.0, -4.0]], requires_grad=True)
    maps = torch.stack([weights, 2 * weights])[:, None]
    x, y = batch(maps)
    loss = RelevanceMassAccuracy().loss(None, x, y, explainer(maps), torch.zeros(2, 1, 2, 2))
    assert loss.item() == 0.0
    loss.backward()  # connected to the graph: a training step on such a batch runs and changes nothing
    assert torch.equal(weights.grad, torch.zeros_like(weights))


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
