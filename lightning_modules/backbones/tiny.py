"""``tiny``: the default backbone, a small CNN sized for the 64x64 synthetic data."""
from __future__ import annotations

from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class TinyCNN(nn.Module):
    """Six 3x3 conv layers, three poolings: (B,3,64,64) -> features (B,64,8,8) -> logits.

    The last feature map stays 8x8 at 64x64 input (GradCAM on a 2x2 map has no
    spatial signal); its target layer is ``features.20`` (the last ReLU).
    ReLUs are not in-place, so attribution hooks see every activation.
    """

    def __init__(self, num_classes: int = 8, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv(3, w), nn.MaxPool2d(2),
            *_conv(w, 2 * w), *_conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *_conv(2 * w, 4 * w), *_conv(4 * w, 4 * w), nn.MaxPool2d(2),
            *_conv(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        """(B,3,H,W) -> (B,num_classes) logits."""
        return self.classifier(self.pool(self.features(x)).flatten(1))
