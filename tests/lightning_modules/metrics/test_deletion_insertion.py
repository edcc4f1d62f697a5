"""Deletion and insertion (lightning_modules/metrics/deletion_insertion.py): the curve and its area by
hand, the deletion curve equal to Quantus 0.6's PixelFlipping on single-channel images, the losses'
direction and gradient (float64 finite differences through GradCAM and SmoothGrad), and a few
fine-tuning steps on the embedded default move deletion down and insertion up while agreement holds."""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.attributions import GradCAM, SmoothGrad
from lightning_modules.metrics import Deletion, Insertion, metric_class, perturbation_auc, perturbation_curve
from lightning_modules.metrics.base import MetricInputError
from tests.conf_checks import keys_defaulting_as_conf
from tests.metric_cases import LeftTexture, finetuning_moves, gray_model, loss_gradient_check, synthetic_batch


class Brightness(nn.Module):
    """Two classes; logit 0 = 4 * the mean of the image: removing bright pixels lowers p(0)."""

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3))
        return torch.stack([4 * mean, torch.zeros_like(mean)], 1)


def test_curve_and_area_by_hand():
    """4 pixels valued 1, 1, 0, 0; the map ranks pixel 0 first, then 1, 2, 3; one pixel per step."""
    x = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    maps = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])
    y = torch.zeros(1, dtype=torch.long)
    curve = perturbation_curve(Brightness(), x, y, maps, "deletion", step=0.25, baseline=0.0)
    means = torch.tensor([0.5, 0.25, 0.0, 0.0, 0.0])  # the image mean after removing 0..4 pixels
    expected = torch.sigmoid(4 * means)  # softmax of (4 m, 0) at class 0
    torch.testing.assert_close(curve[0], expected)
    area = (expected[:-1] + expected[1:]).sum() / 2 * 0.25
    torch.testing.assert_close(perturbation_auc(curve, 4, 0.25)[0], area)
    inserted = perturbation_curve(Brightness(), x, y, maps, "insertion", step=0.25, baseline=0.0)
    torch.testing.assert_close(inserted[0], torch.sigmoid(4 * torch.tensor([0.0, 0.25, 0.5, 0.5, 0.5])))


def test_uneven_last_step_and_bad_settings():
    x = torch.rand(1, 1, 3, 3)
    curve = perturbation_curve(Brightness(), x, torch.zeros(1, dtype=torch.long), torch.rand(1, 1, 3, 3),
                               step=0.25, baseline=0.0)  # k = 2 pixels of 9: points at 0, 2, 4, 6, 8, 9
    assert curve.shape == (1, 6)
    assert curve[0, -1].item() == pytest.approx(0.5)  # all removed: mean 0, p = 1/2
    with pytest.raises(MetricInputError):
        Deletion(step=0)
    with pytest.raises(MetricInputError):
        Deletion(baseline="noise")


def test_deletion_curve_equals_quantus_pixel_flipping(quantus):
    torch.manual_seed(0)
    model = gray_model()
    x = torch.randn(3, 1, 8, 8)
    y = torch.tensor([0, 2, 3])
    maps = torch.rand(3, 1, 8, 8)
    ours = perturbation_curve(model, x, y, maps, "deletion", step=4 / 64, baseline=0.0)
    reference = quantus.PixelFlipping(features_in_step=4, perturb_baseline=0.0, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=maps.numpy())
    np.testing.assert_allclose(ours[:, 1:].numpy(), np.asarray(reference), rtol=1e-5, atol=1e-7)


def test_facts_and_loss_directions():
    assert (metric_class("deletion").higher_is_better, metric_class("insertion").higher_is_better) == (False, True)
    model = LeftTexture()  # class 0's evidence: the left half's fine detail
    x, _, _ = synthetic_batch(4, 32)
    y = torch.zeros(4, dtype=torch.long)
    left = torch.zeros(4, 1, 32, 32)
    left[..., :16] = 1
    maps = {"evidence": left + 0.01 * torch.rand(4, 1, 32, 32),
            "background": 1 - left + 0.01 * torch.rand(4, 1, 32, 32)}
    for metric in (Deletion(loss_fraction=0.5), Insertion(loss_fraction=0.5)):
        losses = {k: float(metric.loss(model, x, y, lambda *a, m=m, **k: m)) for k, m in maps.items()}
        assert losses["evidence"] < losses["background"], (metric.name, losses)
        scores = {k: float(metric.score(model, x, y, lambda *a, m=m, **k: m).mean()) for k, m in maps.items()}
        better = scores["evidence"] > scores["background"]
        assert better == metric.higher_is_better, (metric.name, scores)


@pytest.mark.parametrize("metric", [Deletion(baseline=0.0), Insertion(baseline=0.0)], ids=["deletion", "insertion"])
@pytest.mark.parametrize("method", ["gradcam", "smoothgrad"])
def test_loss_gradient_matches_finite_differences(metric, method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"), "smoothgrad": lambda m: SmoothGrad(m, samples=2)}[method]
    loss_gradient_check(metric, make)


def test_a_few_finetuning_steps_lower_deletion_while_agreement_holds(trained_tiny, synthetic_dm):
    finetuning_moves(trained_tiny, synthetic_dm, "deletion", direction=-1, images=8, lr=1.5e-4,
                     extra=["metric.metric.step=0.1"])


def test_a_few_finetuning_steps_raise_insertion_while_agreement_holds(trained_tiny, synthetic_dm):
    """On a gray (0.0) start, not the blur: the trained base model already gives the blurred synthetic images
    ~0.99, no room to rise. From gray insertion starts near 0.92 of at most 1, so the margin is 0.02 (about a
    quarter of the room), not 5% of the value."""
    finetuning_moves(trained_tiny, synthetic_dm, "insertion", direction=+1, images=8, lr=5e-4, steps=8,
                     margin=0.02, extra=["metric.metric.step=0.1", "metric.metric.baseline=0.0"])


def test_score_is_the_area_of_the_curve_written_out_on_a_wide_image():
    """2 x 3 pixels, one per step: remove (deletion) or reveal (insertion) them in the map's order, p(class 0)
    at each point, trapezoids of width 1/6."""
    x = torch.tensor([[[[1.0, 0.5, 0.0], [0.25, 1.0, 0.75]]]])
    maps = torch.tensor([[[[6.0, 1.0, 2.0], [3.0, 5.0, 4.0]]]])  # pixel order: (0,0) (1,1) (1,2) (1,0) (0,2) (0,1)
    order = [(0, 0), (1, 1), (1, 2), (1, 0), (0, 2), (0, 1)]
    y = torch.zeros(1, dtype=torch.long)
    for metric, start, end in ((Deletion(step=1 / 6, baseline=0.0), x, torch.zeros_like(x)),
                               (Insertion(step=1 / 6, baseline=0.0), torch.zeros_like(x), x)):
        image, probabilities = start.clone(), []
        for count in range(7):
            if count:
                row, column = order[count - 1]
                image[0, 0, row, column] = end[0, 0, row, column]
            probabilities.append(torch.sigmoid(4 * image.mean()))
        p = torch.stack(probabilities)
        area = ((p[:-1] + p[1:]) / 2 / 6).sum()
        torch.testing.assert_close(metric.score(Brightness(), x, y, lambda *a, **k: maps)[0], area)


def test_facts_defaults_and_the_widest_step():
    for name, cls in (("deletion", Deletion), ("insertion", Insertion)):
        assert (cls.family, cls.needs_masks) == ("perturbation", False)
        assert keys_defaulting_as_conf("metric", name) == {"step", "baseline", "loss_fraction", "loss_temperature",
                                                           "batch_size"}
    curve = inspect.signature(perturbation_curve).parameters
    metric = inspect.signature(Deletion).parameters
    assert all(curve[key].default == metric[key].default for key in ("step", "baseline", "batch_size"))
    x = torch.rand(1, 1, 3, 3)
    one_step = perturbation_curve(Brightness(), x, torch.zeros(1, dtype=torch.long), torch.rand(1, 1, 3, 3),
                                  step=1.0, baseline=0.0)
    assert one_step.shape == (1, 2)  # nothing removed, then everything
    few = perturbation_curve(Brightness(), x, torch.zeros(1, dtype=torch.long), torch.rand(1, 1, 3, 3), step=0.05,
                             baseline=0.0)
    assert few.shape == (1, 10)  # 5% of 9 pixels rounds to none: one pixel a step, at least
    step_down = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])  # k = 2 of 9 pixels: shares 0, 2/9, ..., 8/9, 1
    assert perturbation_auc(step_down, 9, 0.25).item() == pytest.approx(1 / 9)
    assert perturbation_auc(torch.ones(1, 10), 9, 0.05).item() == pytest.approx(1.0)
    for bad in (0.0, 1.5):
        with pytest.raises(MetricInputError, match=r"in \(0, 1\]"):
            perturbation_curve(Brightness(), x, torch.zeros(1, dtype=torch.long), x, step=bad)
        with pytest.raises(MetricInputError, match=r"in \(0, 1\]"):
            Deletion(step=bad)
    assert Insertion(step=1.0).step == 1.0
