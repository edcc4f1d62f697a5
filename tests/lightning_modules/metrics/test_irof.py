"""IROF (lightning_modules/metrics/irof.py): the superpixel order by mean relevance, the SLIC
defaults, the baseline's shapes, the intact-probability-zero case and bad input, with expected
values from scikit-image and hand-made segments, not from irof.py; the curve's order on a model that
reads half the image; IROF against Quantus' IROF.
Cases that compare with Quantus 0.6 (the reference implementation) ask for the ``quantus`` fixture
(conftest.py), which skips them alone where quantus, a dev dependency, is absent."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.metrics import IROF
from lightning_modules.metrics.base import MetricInputError
from lightning_modules.metrics.irof import irof, irof_curves, slic_segments, superpixel_ranks
from tests.metric_cases import LeftTexture, gray_model, half_maps, synthetic_batch


def skimage_segments(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    from skimage.segmentation import slic

    out = []
    for image in x.double().permute(0, 2, 3, 1).numpy():
        labels = slic(image, n_segments=n_segments, compactness=compactness, start_label=0)
        out.append(np.unique(labels, return_inverse=True)[1].reshape(labels.shape))
    return torch.from_numpy(np.stack(out)).long()


def linear_model(side: int = 24) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * side * side, 3)).eval()
    with torch.no_grad():
        model[1].weight.mul_(30)  # probabilities that move as superpixels go
    return model


@pytest.mark.parametrize("side, others", [(25, [(99, 10.0)]), (20, [(101, 10.0), (100, 9.0)])])
def test_irof_slic_defaults_are_100_segments_compactness_10(side, others):
    # smooth images of sides where SLIC's grid differs for 99 (25 px) and for 101 segments (20 px)
    x = F.interpolate(torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1)), size=(side, side),
                      mode="bilinear")
    expected = skimage_segments(x, 100, 10.0)
    assert torch.equal(slic_segments(x), expected)
    model, y = linear_model(side), torch.tensor([0, 1])
    maps = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(2))
    with_segments = irof(model, x, y, maps, segments=expected)
    assert torch.equal(irof(model, x, y, maps), with_segments)
    assert torch.equal(irof_curves(model, x, y, maps)[0], irof_curves(model, x, y, maps, segments=expected)[0])
    assert torch.equal(IROF().score(model, x, y, lambda inputs, targets: maps), with_segments)
    for other in others:  # each other setting changes the segments and the score here
        assert not torch.equal(irof(model, x, y, maps, segments=skimage_segments(x, *other)), with_segments), other


def test_irof_orders_superpixels_by_mean_relevance_and_ties_by_label():
    # segment 0: one pixel of 1.0 (mean 1.0); segment 1: three pixels of 0.6 (mean 0.6, sum 1.8)
    segments = torch.tensor([[[0, 1], [1, 1]]])
    maps = torch.tensor([[[[1.0, 0.6], [0.6, 0.6]]]])
    rank, counts = superpixel_ranks(maps, segments)
    assert rank.flatten().tolist() == [0, 1, 1, 1] and counts.tolist() == [2]
    # two images with 2 and 4 superpixels (image 0's labels 2, 3 are empty): negative relevance
    # still ranks image 0's own superpixels 0 and 1, the empty labels never come first
    segments = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [2, 3]]])
    maps = -torch.tensor([[[[0.2, 0.2], [0.5, 0.5]]], [[[0.1, 0.4], [0.3, 0.2]]]])
    rank, counts = superpixel_ranks(maps, segments)
    assert rank.flatten(1).tolist() == [[0, 0, 1, 1], [0, 3, 2, 1]] and counts.tolist() == [2, 4]
    # 2,000 one-pixel superpixels of equal relevance: removed in label order
    labels = torch.arange(2000).view(1, 40, 50)
    rank, _ = superpixel_ranks(torch.zeros(1, 1, 40, 50), labels)
    assert torch.equal(rank.flatten(), torch.arange(2000))


def test_irof_baseline_as_float_per_channel_or_per_image():
    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(3))
    y, model = torch.tensor([0, 2]), linear_model()
    maps = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(4))
    blocks = (torch.arange(24)[:, None] // 4) * 6 + torch.arange(24)[None, :] // 4  # 36 blocks of 4 x 4
    segments = blocks.expand(2, 24, 24)
    channel = torch.tensor([0.2, 0.5, 0.8])
    full = irof_curves(model, x, y, maps, baseline=channel.view(1, 3, 1, 1).expand(2, 3, 24, 24), segments=segments)[0]
    for baseline in (channel.view(3, 1, 1), channel.view(1, 3, 1, 1)):
        assert torch.allclose(irof_curves(model, x, y, maps, baseline=baseline, segments=segments)[0], full)
    grey = irof_curves(model, x, y, maps, baseline=torch.full((2, 3, 24, 24), 0.5), segments=segments)[0]
    assert torch.allclose(irof_curves(model, x, y, maps, baseline=0.5, segments=segments)[0], grey)
    assert torch.allclose(irof_curves(model, x, y, maps, baseline=torch.tensor(0.5), segments=segments)[0], grey)
    with pytest.raises(MetricInputError, match=r"IROF baseline of shape \(2, 2, 1, 1\) does not broadcast"):
        irof_curves(model, x, y, maps, baseline=torch.zeros(2, 2, 1, 1), segments=segments)


def test_irof_of_an_image_the_model_gives_probability_zero_is_nan():
    x, y = torch.rand(1, 3, 24, 24), torch.tensor([1])

    class Certain(nn.Module):  # class 1 has probability exactly 0 in float32
        def forward(self, inputs):
            return torch.tensor([[200.0, -200.0]]).expand(len(inputs), 2)

    segments = torch.zeros(1, 24, 24, dtype=torch.long)
    segments[:, :, 12:] = 1
    assert torch.isnan(irof(Certain().eval(), x, y, torch.rand(1, 1, 24, 24), segments=segments)).all()


def test_irof_rejects_one_superpixel_and_wrongly_shaped_segments():
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    maps = torch.rand(2, 1, 8, 8)
    with pytest.raises(MetricInputError, match="at least 2 superpixels"):
        irof(linear_model(8), x, y, maps, segments=torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(MetricInputError, match=r"segments must be \(B,H,W\)=\(2, 8, 8\) superpixel labels"):
        irof(linear_model(8), x, y, maps, segments=torch.zeros(2, 4, 4, dtype=torch.long))


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
