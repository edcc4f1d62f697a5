"""Relevance rank accuracy (lightning_modules/metrics/relevance_rank_accuracy.py): by hand, equal to Quantus
0.6's ``RelevanceRankAccuracy``, the soft loss's direction and its gradient (float64 finite differences
through GradCAM and LayerCAM), and a few fine-tuning steps on the embedded default raise it while
agreement holds."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, LayerCAM
from lightning_modules.metrics import RelevanceRankAccuracy, metric_class, relevance_rank_accuracy
from lightning_modules.metrics.relevance_rank_accuracy import soft_rank_accuracy
from tests.conf_checks import keys_defaulting_as_conf
from tests.metric_cases import finetuning_moves, loss_gradient_check, synthetic_batch


def fixed(maps):
    return lambda x, y, create_graph=False: maps


def test_by_hand():
    """Object = 3 of 6 pixels; the 3 highest values are 9 (in), 8 (out), 7 (in): 2 of 3."""
    maps = torch.tensor([[[[9.0, 8.0, 7.0], [1.0, 2.0, -3.0]]]])
    masks = torch.tensor([[[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]])
    assert relevance_rank_accuracy(maps, masks).item() == pytest.approx(2 / 3)
    # top 3 of -a: -3 (out), -2 (in), -1 (out)
    assert relevance_rank_accuracy(-maps, masks).item() == pytest.approx(1 / 3)
    assert math.isnan(relevance_rank_accuracy(maps, torch.zeros_like(masks)).item())
    assert relevance_rank_accuracy(maps, torch.ones_like(masks)).item() == 1.0


def test_equals_quantus(tiny, quantus):
    x, y, masks = synthetic_batch(6, 32)
    maps = torch.randn(6, 1, 32, 32) + 2 * masks * torch.rand(6, 1, 1, 1)  # a range of accuracies
    reference = quantus.RelevanceRankAccuracy(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy(), s_batch=masks.numpy())
    ours = relevance_rank_accuracy(maps, masks)
    assert ours.std() > 0.05
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-6)


def test_facts_and_loss_direction():
    cls = metric_class("rra")
    assert cls is RelevanceRankAccuracy and (cls.family, cls.higher_is_better, cls.needs_masks) == \
        ("localization", True, True)
    x, y, _ = synthetic_batch(2, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[..., :4, :4] = 1
    on, off = torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    on[..., :4, :4], off[..., 10:14, 10:14] = 1, 1
    base = 0.1 * torch.rand(2, 1, 16, 16)
    losses = [float(RelevanceRankAccuracy().loss(None, x, y, fixed(base + t * on + (1 - t) * off), masks))
              for t in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < -0.9


@pytest.mark.parametrize("method", ["gradcam", "layercam"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"), "layercam": lambda m: LayerCAM(m, "features.20")}[method]
    loss_gradient_check(RelevanceRankAccuracy(), make, masks=True)


def test_a_few_finetuning_steps_raise_rra_while_agreement_holds(trained_tiny, synthetic_dm):
    """GradCAM's 4x4 layer map, upsampled, ranks coarse blocks: RRA moves by a few points within a few steps
    (+2.4 points on the base model tried; 12 steps gave no more). A flipped loss sign lowers it."""
    finetuning_moves(trained_tiny, synthetic_dm, "rra", direction=+1, images=16, margin=0.01)


def distinct_maps_and_masks(sizes: list[int], n: int = 36, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,1,6,6) maps of the values 0..n-1 in a random order each, and masks of ``sizes`` random pixels."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.stack([torch.randperm(n, generator=generator).float() for _ in sizes]).view(-1, 1, 6, 6)
    masks = torch.zeros(len(sizes), n)
    for i, size in enumerate(sizes):
        masks[i, torch.randperm(n, generator=generator)[:size]] = 1
    return maps, masks.view(-1, 1, 6, 6)


def test_the_soft_share_tends_to_the_hard_one_and_each_image_is_its_own():
    sizes = [1, 2, 5, 17, 34, 35, 0]  # one pixel to all but one, and an empty mask
    maps, masks = distinct_maps_and_masks(sizes)
    hard = relevance_rank_accuracy(maps, masks)
    sharp = soft_rank_accuracy(maps, masks, temperature=1e-3)
    torch.testing.assert_close(sharp, hard, atol=1e-4, rtol=0, equal_nan=True)
    assert len(set(hard[:-1].tolist())) >= 4 and math.isnan(hard[-1])  # a range of accuracies, none for no object
    alone = torch.cat([soft_rank_accuracy(maps[i:i + 1], masks[i:i + 1]) for i in range(len(sizes))])
    torch.testing.assert_close(soft_rank_accuracy(maps, masks), alone, equal_nan=True)  # nothing across the batch
    top = maps.flatten(1).argmax(1)
    one_pixel = torch.zeros(1, 36)
    one_pixel[0, top[0]] = 1
    assert relevance_rank_accuracy(maps[:1], one_pixel.view(1, 1, 6, 6)).item() == 1.0  # K = 1: the maximum
    assert soft_rank_accuracy(maps[:1], one_pixel.view(1, 1, 6, 6), temperature=1e-3).item() == pytest.approx(1.0)
    whole = soft_rank_accuracy(maps[:1], torch.ones(1, 1, 6, 6), temperature=1e-3).item()
    assert 35 / 36 - 1e-3 <= whole <= 1  # K = all 36: the threshold sits below the 35th (no 37th value exists)


def test_the_soft_share_is_free_of_the_maps_scale_and_even_for_a_constant_map():
    maps, masks = distinct_maps_and_masks([5, 17])
    torch.testing.assert_close(soft_rank_accuracy(maps * 1e-4, masks), soft_rank_accuracy(maps, masks))
    flat = soft_rank_accuracy(torch.full_like(maps, 3.0), masks)
    torch.testing.assert_close(flat, torch.full((2,), 0.5))  # no pixel outranks another: every one half a member


def test_defaults_are_its_yamls_and_an_object_free_batch_has_zero_loss_with_its_graph():
    assert keys_defaulting_as_conf("metric", "rra") == {"loss_temperature"}
    assert inspect.signature(soft_rank_accuracy).parameters["temperature"].default == \
        inspect.signature(RelevanceRankAccuracy).parameters["loss_temperature"].default
    x, y, _ = synthetic_batch(2, 16)
    maps = torch.rand(2, 1, 16, 16, requires_grad=True)
    loss = RelevanceRankAccuracy().loss(None, x, y, fixed(maps), torch.zeros(2, 1, 16, 16))
    loss.backward()
    assert loss.item() == 0.0 and maps.grad is not None and not maps.grad.any()
