"""What every metric shares (lightning_modules/metrics/base.py) at its edges: input checks, the share
of relevance, maps computed under no_grad/inference mode, the soft top-fraction mask of the removal
loss, and the box blur, against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_modules.metrics.base import (Metric, MetricInputError, as_maps, box_blur, channel_mean, check_images,
                                            explain_maps, grad_ready, removal_loss, share, soft_top_fraction)


def test_metrics_base_as_maps_adds_the_channel_and_refuses_other_shapes():
    assert as_maps(torch.zeros(2, 5, 6)).shape == (2, 1, 5, 6)
    assert as_maps(torch.zeros(2, 1, 5, 6)).shape == (2, 1, 5, 6)
    for bad in (torch.zeros(2, 3, 5, 6), torch.zeros(2, 1, 1, 5, 6), torch.zeros(5, 6)):
        with pytest.raises(MetricInputError, match=r"must have shape \(B,1,H,W\)"):
            as_maps(bad)
    with pytest.raises(MetricInputError, match="must be a torch.Tensor"):
        as_maps([[0.0]])


def test_metrics_base_check_images_matches_batch_and_size():
    x, y = torch.zeros(3, 3, 8, 8), torch.tensor([0, 1, 2], dtype=torch.int32)
    y_out, maps = check_images(x, y, torch.zeros(3, 8, 8))
    assert y_out.dtype == torch.long and maps.shape == (3, 1, 8, 8)
    assert check_images(x, y)[1] is None
    with pytest.raises(MetricInputError, match=r"x must be a \(B,C,H,W\) image tensor, got \(3, 8, 8\)"):
        check_images(torch.zeros(3, 8, 8), y)
    with pytest.raises(MetricInputError, match="x must be .* got list"):
        check_images([[0.0]], y)
    with pytest.raises(MetricInputError, match=r"y must be a \(3,\) tensor of class indices for 3 images, got \(2,\)"):
        check_images(torch.zeros(3, 2, 8, 6), torch.tensor([0, 1]))
    with pytest.raises(MetricInputError, match="y must be"):
        check_images(x, [0, 1, 2])
    for bad in (torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 7), torch.zeros(3, 1, 7, 8)):
        with pytest.raises(MetricInputError, match="do not match images"):
            check_images(x, y, bad)
    with pytest.raises(MetricInputError, match=r"expected \(3,1,8,6\)"):  # the shape that would fit
        check_images(torch.zeros(3, 2, 8, 6), y, torch.zeros(2, 1, 8, 6))


def test_metrics_base_share_is_zero_without_relevance_with_a_finite_gradient():
    inside = torch.tensor([1.0, 0.0, 3.0, 0.25], requires_grad=True)
    total = torch.tensor([4.0, 0.0, 3.0, 0.5], requires_grad=True)
    out = share(inside, total)
    assert out.tolist() == [0.25, 0.0, 1.0, 0.5]  # a total below 1 divides too
    out.sum().backward()
    assert torch.isfinite(inside.grad).all() and torch.isfinite(total.grad).all()
    assert inside.grad.tolist() == pytest.approx([0.25, 1.0, 1 / 3, 2.0])


class Doubling(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :4] * 2


def input_gradient_maps(model):
    """A plain gradient explanation: (B,1,H,W) maps, graph kept when asked."""
    def explain(x, y, create_graph=False):
        x = x.detach().requires_grad_(True)
        out = model(x).gather(1, y[:, None]).sum()
        (grad,) = torch.autograd.grad(out, x, create_graph=create_graph)
        return grad.sum(1, keepdim=True)
    return explain


def test_metrics_base_explain_maps_work_under_no_grad_and_inference_mode():
    model, x, y = Doubling(), torch.ones(2, 1, 2, 2), torch.tensor([0, 3])
    expected = torch.zeros(2, 1, 2, 2)
    expected[0, 0, 0, 0] = expected[1, 0, 1, 1] = 2.0  # d(2 x_k)/dx_k at the target's pixel
    with torch.no_grad():
        assert torch.equal(explain_maps(input_gradient_maps(model), x, y), expected)
        assert not torch.is_grad_enabled()  # the caller's mode is back after the maps
    with torch.inference_mode():
        xi, yi = torch.ones(2, 1, 2, 2), torch.tensor([0, 3])
        assert xi.is_inference()
        maps = explain_maps(input_gradient_maps(model), xi, yi)
        assert torch.is_inference_mode_enabled()
    assert torch.equal(maps, expected) and not maps.requires_grad
    assert torch.is_grad_enabled()  # restored after the block


def test_metrics_base_explain_maps_keep_the_graph_only_when_asked():
    weight = nn.Parameter(torch.tensor(3.0))

    def explain(x, y, **kwargs):
        assert set(kwargs) <= {"create_graph"}
        return (x * weight).sum(1, keepdim=True)

    x, y = torch.ones(1, 1, 2, 2), torch.tensor([0])
    assert explain_maps(explain, x, y, create_graph=True).requires_grad
    assert not explain_maps(explain, x, y).requires_grad
    with pytest.raises(MetricInputError, match="at input resolution"):
        explain_maps(lambda x, y, **k: torch.zeros(1, 1, 2, 1), x, y)
    with pytest.raises(MetricInputError, match="at input resolution"):
        explain_maps(lambda x, y, **k: torch.zeros(2, 1, 2, 2), x, y)
    with pytest.raises(MetricInputError, match=r"explain\(x, y\) must have shape"):
        explain_maps(lambda x, y, **k: torch.zeros(1, 2, 2, 2), x, y)


def test_metrics_base_grad_ready_clones_inference_tensors_only():
    plain = torch.ones(2)
    assert grad_ready(plain) is plain
    with torch.inference_mode():
        frozen = torch.ones(2)
    ready = grad_ready(frozen)
    assert ready is not frozen and not ready.is_inference() and ready.tolist() == [1.0, 1.0]


def test_metrics_base_soft_top_fraction_by_hand():
    # 2 pixels [0, 1], fraction 0.5: the threshold is the 1st smallest value (0), std = 1/sqrt(2)
    m = soft_top_fraction(torch.tensor([[[[0.0, 1.0]]]]), 0.5, temperature=1.0)
    assert m.shape == (1, 1, 1, 2)
    assert m.flatten().tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-math.sqrt(2)))])
    # 100 pixels 0..99, fraction 0.25: threshold = the 75th smallest value (74); 25 pixels above it
    ramp = torch.arange(100.0).view(1, 1, 10, 10)
    m = soft_top_fraction(ramp, 0.25).flatten()
    assert (m > 0.5).sum() == 25 and m[74] == pytest.approx(0.5)
    # a hotter temperature softens the same mask
    warm = soft_top_fraction(ramp, 0.25, temperature=1.0).flatten()
    assert 0.5 < warm[75] < m[75] and warm[73] > m[73]
    # the rank stays within the image: a tiny fraction thresholds at the maximum, a huge one at the minimum
    four = torch.tensor([[[[4.0, 1.0], [3.0, 2.0]]]])
    assert soft_top_fraction(four, 0.01).flatten()[0] == pytest.approx(0.5)
    assert soft_top_fraction(four, 0.99).flatten()[1] == pytest.approx(0.5)
    assert soft_top_fraction(four, 0.99).flatten()[0] > 0.99
    # a constant map and a one-pixel map: 0.5 everywhere
    assert soft_top_fraction(torch.full((1, 1, 3, 3), 2.0), 0.3).flatten().tolist() == [0.5] * 9
    assert soft_top_fraction(torch.ones(2, 1, 1, 1), 0.5).flatten().tolist() == [0.5, 0.5]
    assert soft_top_fraction(ramp.double(), 0.25).dtype == torch.float64
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(MetricInputError, match=r"fraction must lie in \(0, 1\)"):
            soft_top_fraction(ramp, bad)


class PixelSum(nn.Module):
    """Logits (class 0: sum of the image, class 1: 0): softmax[0] = sigmoid(sum)."""

    def forward(self, x):
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_metrics_base_removal_loss_removes_the_marked_pixels():
    x = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]])
    y = torch.tensor([0])
    baseline = torch.zeros_like(x)
    # fraction 0.25 of 4 pixels: the threshold is the 3rd smallest map value (3), whose pixel is half removed
    on_pixel = torch.tensor([[[[10.0, 1.0], [2.0, 3.0]]]])
    off_pixel = torch.tensor([[[[1.0, 2.0], [3.0, 10.0]]]])
    # the map marking the only bright pixel removes it: logit 2 -> ~0, probability -> ~0.5
    marked = removal_loss(PixelSum(), x, y, on_pixel, baseline, fraction=0.25, temperature=0.01)
    unmarked = removal_loss(PixelSum(), x, y, off_pixel, baseline, fraction=0.25, temperature=0.01)
    assert marked.item() == pytest.approx(0.5, abs=1e-3)
    assert unmarked.item() == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-3)
    # toward a baseline equal to the image nothing changes, whatever the map
    same = removal_loss(PixelSum(), x, y, on_pixel, x.clone(), fraction=0.25)
    assert same.item() == pytest.approx(1 / (1 + math.exp(-2)))
    # the class index is the target's: class 1 has logit 0
    assert removal_loss(PixelSum(), x, torch.tensor([1]), off_pixel, baseline, 0.25, 0.01).item() == \
        pytest.approx(1 - 1 / (1 + math.exp(-2)), abs=1e-3)


def test_metrics_base_removal_loss_trains_through_the_map():
    from lightning_modules.metrics.base import RemovalMetric

    class ToZero(RemovalMetric):
        def baseline(self, x):
            return torch.zeros_like(x)

    weight = nn.Parameter(torch.tensor([1.0, -1.0, 0.5, 2.0]))  # only the explanation uses it
    calls = []

    def explain(x, y, **kwargs):
        calls.append(kwargs)
        return (x.flatten(1) * weight).view(x.shape[0], 1, 2, 2)

    x = torch.tensor([[[[2.0, 1.0], [0.5, 3.0]]]])
    loss = ToZero(loss_fraction=0.5, loss_temperature=1.0).loss(PixelSum(), x, torch.tensor([0]), explain)
    loss.backward()
    assert calls == [{"create_graph": True}]
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_metrics_base_box_blur_and_channel_mean_by_hand():
    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 9.0
    blurred = box_blur(impulse, 3)
    assert blurred[0, 0, 1:4, 1:4].tolist() == [[1.0] * 3] * 3 and blurred.sum() == pytest.approx(9.0)
    corner = torch.zeros(1, 1, 5, 5)
    corner[0, 0, 0, 0] = 4.0
    assert box_blur(corner, 3)[0, 0, 0, 0] == pytest.approx(1.0)  # the border mean counts 2 x 2 pixels
    assert box_blur(torch.full((1, 2, 6, 6), 3.0), 3).tolist() == torch.full((1, 2, 6, 6), 3.0).tolist()
    # default width: ~H/8 made odd, at least 3: 8 and 16 px -> 3, 64 px -> 9, 72 px -> 9
    for size, width in ((8, 3), (16, 3), (64, 9), (72, 9), (80, 11)):
        point = torch.zeros(1, 1, size, size)
        point[0, 0, size // 2, size // 2] = 1.0
        out = box_blur(point)
        assert (out > 0).sum() == width * width and out.max() == pytest.approx(1 / width ** 2)
    wide = torch.zeros(1, 1, 16, 64)
    wide[0, 0, 8, 32] = 1.0
    assert (box_blur(wide) > 0).sum() == 9  # the width follows the shorter side (16 px -> 3)
    x = torch.arange(8.0).view(1, 2, 2, 2)
    assert channel_mean(x).flatten().tolist() == [1.5, 5.5] and channel_mean(x).shape == (1, 2, 1, 1)


def test_metrics_base_interface_and_repr():
    class Fixed(Metric):
        def __init__(self):
            self.fraction, self._cache = 0.5, "hidden"

    assert repr(Fixed()) == "Fixed(fraction=0.5)"
    with pytest.raises(NotImplementedError):
        Metric().score(None, None, None, None)
    with pytest.raises(NotImplementedError):
        Metric().loss(None, None, None, None)
    assert Metric.higher_is_better is True and Metric.needs_masks is False
