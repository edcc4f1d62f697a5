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


def biased_conv_bn_net() -> torch.nn.Sequential:
    """conv (with bias) -> BatchNorm (eval, non-trivial statistics) -> ReLU -> pooled linear head."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1, bias=True), torch.nn.BatchNorm2d(6),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(6, 4))
    with torch.no_grad():
        norm = net[1]
        norm.running_mean.uniform_(-0.5, 0.5), norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.3, 0.3)
    return net.eval()


def folded_by_hand(net: torch.nn.Sequential) -> torch.nn.Sequential:
    """The same network with the BatchNorm folded into the conv: W s, (b - mean) s + beta."""
    conv, norm = net[0], net[1]
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = torch.nn.Conv2d(3, 6, 3, padding=1, bias=True)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_((conv.bias - norm.running_mean) * scale + norm.bias)
    return torch.nn.Sequential(folded, *list(net)[2:]).eval()


def test_canonized_excitation_backprop_merges_a_batchnorm_after_a_biased_conv():
    net = biased_conv_bn_net()
    x, target = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(2)) - 0.3, torch.tensor([0, 3])
    merged = ExcitationBackprop(net, canonize=True).explain(x, target).raw
    reference = ExcitationBackprop(folded_by_hand(net), canonize=False).explain(x, target).raw
    scale = reference.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(merged, reference, rtol=1e-4, atol=1e-5 * scale)
    plain = ExcitationBackprop(net, canonize=False).explain(x, target).raw
    assert (plain - reference).abs().max() > 1e-3 * scale  # the merge is what makes them equal


def test_excitation_backprop_canonize_setting_is_true_false_or_auto():
    net = biased_conv_bn_net()
    assert ExcitationBackprop(net).canonize is True and ExcitationBackprop(net, canonize=True).canonize is True
    assert ExcitationBackprop(net, canonize=False).canonize is False
    assert ExcitationBackprop(folded_by_hand(net), canonize="auto").canonize is False  # no BatchNorm
    with pytest.raises(ValueError, match="canonize must be true, false or auto"):
        ExcitationBackprop(net, canonize="yes")


def test_excitation_backprop_composite_has_no_canonizer_unless_asked():
    from lightning_modules.attributions.excitation_backprop import excitation_backprop_composite

    assert len(excitation_backprop_composite().canonizers) == 0  # zennit's composite: none
    assert len(excitation_backprop_composite(canonize=True).canonizers) == 3  # BatchNorm merge, two ResNet blocks
