"""SmoothGrad (lightning_modules/attributions/smoothgrad.py): equal to Captum's NoiseTunnel over
Saliency on the same noise (max abs difference < 1e-5 and < 1e-4 of the map's scale), its own
seeded noise (the global RNG untouched), differentiable in the weights (float64 finite differences)."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.attributions import SmoothGrad
from tests.attribution_references import assert_same, batch, check_graph_contract, tiny_finite_difference_check
from tests.conf_checks import keys_defaulting_as_conf


def one_range(x: torch.Tensor) -> torch.Tensor:
    """Each image rescaled to [-1, 1]: one noise std for all (Captum's stdevs is one value per input)."""
    flat = x.flatten(1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return 2 * (x - low) / (high - low) - 1


def test_equals_captum_noise_tunnel_on_the_same_noise(tiny):
    from captum.attr import NoiseTunnel, Saliency

    x, target = batch("tiny", size=32, n=3)
    x = one_range(x)
    out = SmoothGrad(tiny, noise_level=0.2, samples=5, seed=11).explain(x, target)
    torch.manual_seed(11)  # Captum draws from the global generator, in the order ours draws from its own
    reference = NoiseTunnel(Saliency(tiny)).attribute(x, nt_type="smoothgrad", nt_samples=5, stdevs=0.2 * 2.0,
                                                      target=target)
    assert_same(out.raw, reference)
    assert_same(out.maps, reference.amax(1, keepdim=True))
    plain = Saliency(tiny).attribute(x, target=target)
    assert (out.raw - plain).abs().max() > 1e-2 * plain.abs().max()  # the noise changes the map


def test_noise_is_its_own_and_reproducible(tiny):
    x, target = batch("tiny", size=32)
    state = torch.get_rng_state()
    first = SmoothGrad(tiny, samples=3, seed=1)(x, target)
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG draw
    torch.manual_seed(123)
    assert torch.equal(SmoothGrad(tiny, samples=3, seed=1)(x, target), first)
    assert not torch.equal(SmoothGrad(tiny, samples=3, seed=2)(x, target), first)


def test_noise_scales_with_each_image_s_range(tiny):
    x, _ = batch("tiny", size=8, n=2)
    x[1] *= 3
    noise = SmoothGrad(tiny, noise_level=0.1, samples=400, seed=0).noise(x)
    ranges = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    torch.testing.assert_close(noise.flatten(1).std(1), 0.1 * ranges, rtol=0.02, atol=0)


def test_gradient_matches_finite_differences():
    tiny_finite_difference_check(lambda model: SmoothGrad(model, samples=2))


def test_graph_contract(tiny):
    x, target = batch("tiny", size=32)
    check_graph_contract(lambda m: SmoothGrad(m, samples=2), tiny, x, target)


def test_bad_settings_and_config(tiny):
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    with pytest.raises(ValueError, match="samples >= 1"):
        SmoothGrad(tiny, samples=0)
    cfg = compose_config(["attribution=smoothgrad", "backbone=tiny"])
    explain = instantiate(cfg.attribution.explainer, model=tiny)
    assert isinstance(explain, SmoothGrad) and explain.samples == cfg.attribution.explainer.samples


def test_defaults_are_its_yamls_and_the_least_noise_and_samples_are_allowed(tiny):
    assert keys_defaulting_as_conf("attribution", "smoothgrad") == {"noise_level", "samples", "seed"}
    x, target = batch("tiny", size=32, n=2)
    once = SmoothGrad(tiny, noise_level=0.0, samples=1).explain(x, target)
    thrice = SmoothGrad(tiny, noise_level=0.0, samples=3).explain(x, target)
    assert_same(once.raw, thrice.raw)  # without noise every copy is the image itself
    with pytest.raises(ValueError, match="noise_level >= 0"):
        SmoothGrad(tiny, noise_level=-0.01)
