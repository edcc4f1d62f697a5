"""Pointing game (lightning_modules/metrics/pointing_game.py): hits by hand (ties, tolerance, empty masks),
equal to Quantus 0.6's ``PointingGame`` at tolerance 0, the smooth loss's direction and its gradient
(float64 finite differences through GradCAM and Grad-CAM++), and a few fine-tuning steps on the embedded
default raise it while agreement holds."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, GradCAMPlusPlus
from lightning_modules.errors import UserError
from lightning_modules.metrics import PointingGame, metric_class, pointing_game
from lightning_modules.metrics.pointing_game import dilate, soft_pointing, tolerance_pixels
from tests.conf_checks import keys_defaulting_as_conf
from tests.metric_cases import finetuning_moves, loss_gradient_check, one_line, synthetic_batch


def fixed(maps):
    return lambda x, y, create_graph=False: maps


def test_hits_by_hand():
    masks = torch.zeros(3, 1, 10, 10)
    masks[:2, :, :3, :3] = 1  # objects in the top-left corner of images 0 and 1; image 2 has none
    maps = torch.zeros(3, 1, 10, 10)
    maps[0, 0, 1, 1] = 5  # inside
    maps[1, 0, 6, 6] = 5  # 4*sqrt(2) = 5.66 px from the object's corner (2, 2)
    scores = pointing_game(maps, masks, tolerance=0)
    assert scores[:2].tolist() == [1.0, 0.0] and math.isnan(scores[2])
    assert pointing_game(maps[1:2], masks[1:2], tolerance=0.6).item() == 1.0  # radius 6 px
    assert pointing_game(maps[1:2], masks[1:2], tolerance=0.5).item() == 0.0  # radius 5 px
    tie = torch.zeros(1, 1, 10, 10)
    tie[0, 0, 0, 0] = tie[0, 0, 9, 9] = 1  # two maxima, one on the object: a hit, as Quantus
    assert pointing_game(tie, masks[:1], tolerance=0).item() == 1.0


def test_dilation_is_a_disk():
    mask = torch.zeros(1, 1, 9, 9)
    mask[0, 0, 4, 4] = 1
    grown = dilate(mask, 2)[0, 0]
    assert grown.sum().item() == 13  # the lattice points within distance 2: 1 + 4 + 4 + 4
    assert grown[4, 6] and grown[5, 5] and not grown[6, 6]
    assert dilate(mask, 1)[0, 0].sum().item() == 5  # radius 1: the pixel and its four neighbours
    assert torch.equal(dilate(mask, 0), mask.bool())


def test_equals_quantus_at_tolerance_zero(tiny, quantus):
    x, y, masks = synthetic_batch(8, 32)
    maps = torch.randn(8, 1, 32, 32)
    for i in range(0, 8, 2):  # put half of the maxima on the object
        inside = masks[i, 0].nonzero()[0]
        maps[i, 0, inside[0], inside[1]] = 10
    reference = quantus.PointingGame(disable_warnings=True)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy(), s_batch=masks.numpy())
    ours = pointing_game(maps, masks, tolerance=0)
    assert 0 < ours.mean() < 1
    np.testing.assert_array_equal(ours.numpy(), np.asarray(reference, dtype=float))


def test_facts_and_masks_needed(tiny):
    cls = metric_class("pointing_game")
    assert cls is PointingGame and (cls.family, cls.higher_is_better, cls.needs_masks) == ("localization", True, True)
    x, y, _ = synthetic_batch(2, 16)
    with pytest.raises(UserError) as exc:
        PointingGame().score(tiny, x, y, fixed(torch.rand(2, 1, 16, 16)))
    assert "masks" in one_line(exc)
    with pytest.raises(UserError):
        PointingGame(tolerance=1.5)


def test_loss_falls_as_the_peak_moves_onto_the_object_and_tends_to_the_hit():
    x, y, _ = synthetic_batch(2, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[..., :8] = 1
    on, off = torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16)
    on[..., 4, 2], off[..., 4, 13] = 1, 1
    base = 0.3 * torch.rand(2, 1, 16, 16)
    metric = PointingGame(tolerance=0)
    losses = [float(metric.loss(None, x, y, fixed(base + t * on + (1 - t) * off), masks)) for t in (0.0, 0.5, 1.0)]
    assert losses[0] > losses[1] > losses[2]
    sharp = soft_pointing(base + on, masks, tolerance=0, temperature=0.01)
    torch.testing.assert_close(sharp, pointing_game(base + on, masks, tolerance=0), atol=1e-3, rtol=0)


@pytest.mark.parametrize("method", ["gradcam", "gradcam_plus_plus"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"),
            "gradcam_plus_plus": lambda m: GradCAMPlusPlus(m, "features.20")}[method]
    loss_gradient_check(PointingGame(), make, masks=True)


def test_a_few_finetuning_steps_raise_the_pointing_game_while_agreement_holds(trained_tiny, synthetic_dm):
    finetuning_moves(trained_tiny, synthetic_dm, "pointing_game", direction=+1, images=16)


def test_defaults_are_its_yamls_and_the_functions_share_them():
    assert keys_defaulting_as_conf("metric", "pointing_game") == {"tolerance", "loss_temperature"}
    metric = inspect.signature(PointingGame).parameters
    soft = inspect.signature(soft_pointing).parameters
    assert inspect.signature(pointing_game).parameters["tolerance"].default == metric["tolerance"].default
    assert (soft["tolerance"].default, soft["temperature"].default) == (metric["tolerance"].default,
                                                                        metric["loss_temperature"].default)


def test_tolerance_is_a_share_of_the_shorter_side_in_0_to_1():
    assert tolerance_pixels(0.3, (1, 1, 10, 40)) == 3 == tolerance_pixels(0.3, (1, 1, 40, 10))
    assert tolerance_pixels(0.0, (1, 1, 10, 10)) == 0 and tolerance_pixels(0.99, (1, 1, 10, 10)) == 10
    for bad in (1.0, -0.01):
        with pytest.raises(UserError, match=r"in \[0, 1\)"):
            tolerance_pixels(bad, (1, 1, 10, 10))


def test_the_soft_mass_is_free_of_the_maps_scale_even_at_zero_and_nan_without_an_object():
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, :, :4, :4] = 1  # image 1 has no object
    maps = torch.rand(2, 1, 8, 8)
    mass = soft_pointing(maps, masks, tolerance=0)
    torch.testing.assert_close(soft_pointing(maps * 1e-4, masks, tolerance=0), mass, equal_nan=True)  # max-normalized
    assert 0 < mass[0] < 1 and math.isnan(mass[1]) and math.isnan(pointing_game(maps, masks)[1])
    flat = soft_pointing(torch.zeros(2, 1, 8, 8), masks, tolerance=0)
    assert flat[0].item() == pytest.approx(16 / 64)  # a map of zeros spreads its mass evenly: the object's share


def test_the_loss_of_a_batch_without_objects_is_zero_and_keeps_the_graph():
    x, y, _ = synthetic_batch(2, 16)
    maps = torch.rand(2, 1, 16, 16, requires_grad=True)
    loss = PointingGame().loss(None, x, y, fixed(maps), torch.zeros(2, 1, 16, 16))
    loss.backward()
    assert loss.item() == 0.0 and maps.grad is not None and not maps.grad.any()
