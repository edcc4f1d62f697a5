"""Excitation Backprop on inputs whose negative values all lie in (-1, 0): the x- branch of the
Z+ rule must be taken for any negative input, not only below -1 (zennit is the reference)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_modules.attributions import ExcitationBackprop
from lightning_modules.backbones import TinyCNN


@pytest.mark.parametrize("low", [-0.9, 0.0], ids=["small-negative", "non-negative"])
def test_excitation_backprop_inputs_in_minus_one_to_zero_match_zennit(low):
    from zennit.attribution import Gradient
    from zennit.composites import ExcitationBackprop as ZennitExcitationBackprop

    torch.manual_seed(0)
    model = TinyCNN(8).eval()
    gen = torch.Generator().manual_seed(3)
    x = low + (0.95 - low) * torch.rand(2, 3, 32, 32, generator=gen)  # [-0.9, 0.95) or [0, 0.95)
    if low < 0:
        x[0] = -0.05 - 0.85 * torch.rand(3, 32, 32, generator=gen)  # one image entirely negative, above -1
    target = torch.tensor([1, 5])
    with Gradient(model, ZennitExcitationBackprop()) as attributor:
        _, reference = attributor(x, lambda out: F.one_hot(target, out.shape[1]).to(out))
    ours = ExcitationBackprop(model, canonize=False).explain(x, target).raw
    scale = reference.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5 * scale)
