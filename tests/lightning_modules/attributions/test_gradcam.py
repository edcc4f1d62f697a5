"""GradCAM where the layer's gradient varies over space (a flattening head, as in VGG), against Captum.

The suite's GradCAM checks use backbones with global average pooling after the layer, where
dy/dA is the same at every position, so averaging the gradient over the wrong spatial axes
changes nothing there (`make mutate MODULE=attributions.gradcam` found that mutant alive).
Here the head is a linear layer on the flattened, non-square feature map.
"""
from __future__ import annotations

import torch
from torch import nn

from lightning_modules.attributions import GradCAM


def test_gradcam_with_a_flattening_head_matches_captum():
    from captum.attr import LayerAttribution, LayerGradCam

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 5 * 7, 3)).eval()
    x = torch.randn(2, 3, 5, 7)
    target = torch.tensor([0, 2])
    out = GradCAM(model, "3").explain(x, target)  # the ReLU after the second conv: (B,6,5,7)
    reference = LayerGradCam(model, model[3]).attribute(x, target, relu_attributions=True)
    assert reference.abs().sum() > 0  # a non-trivial map, so equality means something
    torch.testing.assert_close(out.raw, reference)
    torch.testing.assert_close(out.maps, LayerAttribution.interpolate(reference, (5, 7), interpolate_mode="bilinear"))
