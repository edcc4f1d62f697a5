"""Every metric's training loss falls as the map's mass moves the right way: into the object mask
(RMA), onto the target quadrant (Focus), onto the evidence whose removal destroys the prediction
(ROAD, IROF), toward a map that does not change under input noise (RIS). A loss with its sign
flipped fails each test. The maps are hand-made (a mix ``t * good + (1 - t) * bad``), so the
expected order is known without the code under test."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.metrics import IROF, ROAD, Focus, RelativeInputStability, RelevanceMassAccuracy, make_mosaics
from tests.metric_cases import LeftTexture, half_maps, synthetic_batch

STEPS = (0.0, 0.5, 1.0)  # share of the map's mass moved the right way


def fixed(maps: torch.Tensor):
    """An explainer that returns ``maps`` (any model, any input of the same batch size)."""
    return lambda x, y, create_graph=False: maps


def strictly_falling(values: list[float]) -> bool:
    return all(later < earlier - 1e-6 for earlier, later in zip(values, values[1:]))


def test_rma_loss_falls_as_mass_moves_into_the_mask():
    x, y, _ = synthetic_batch(4, 16)
    masks = torch.zeros(4, 1, 16, 16)
    masks[..., :8] = 1  # the left half is the object
    inside, outside = half_maps(4, 16)  # mass on the left / on the right half
    metric = RelevanceMassAccuracy()
    losses = [float(metric.loss(None, x, y, fixed(t * inside + (1 - t) * outside), masks)) for t in STEPS]
    assert strictly_falling(losses)
    assert losses[-1] < -0.9  # minus RMA: nearly all mass inside


@pytest.mark.parametrize("mosaic", ["half", "full"])
def test_focus_loss_falls_as_mass_moves_onto_the_target_quadrant(mosaic):
    x, y, _ = synthetic_batch(8, 16)
    metric = Focus(seed=2, mosaic=mosaic, loss_fraction=1.0)
    mosaics, _, quadrants = make_mosaics(x, y, seed=2, mosaic=mosaic)
    size = mosaics.shape[-1]
    on_target = quadrants.float().view(8, 1, 2, 2).repeat_interleave(size // 2, 2).repeat_interleave(size // 2, 3)
    elsewhere = 1 - on_target
    losses = [float(metric.loss(None, x, y, fixed(t * on_target + (1 - t) * elsewhere))) for t in STEPS]
    assert strictly_falling(losses)
    assert losses[-1] == pytest.approx(-1.0)


@pytest.mark.parametrize("metric", [ROAD(loss_fraction=0.5), IROF(loss_fraction=0.5)], ids=["road", "irof"])
def test_removal_loss_falls_as_mass_moves_onto_the_evidence(metric):
    """LeftTexture decides from the left half. The map marks a half-width window that slides from
    the right half onto the left one: the more of the evidence it marks, the lower the loss."""
    model = LeftTexture()
    x, _, _ = synthetic_batch(4, 32)
    y = torch.zeros(4, dtype=torch.long)
    losses = []
    for start in (16, 8, 0):  # columns [start, start + 16): background, half of each, the evidence
        window = torch.zeros(4, 1, 32, 32)
        window[..., start:start + 16] = 1
        losses.append(float(metric.loss(model, x, y, fixed(window + 0.01 * torch.rand(4, 1, 32, 32)))))
    assert strictly_falling(losses)


@pytest.mark.parametrize("detach_unperturbed", [True, False])
def test_ris_loss_falls_as_the_map_stops_following_the_noise(detach_unperturbed):
    """The map is a fixed pattern plus ``(1 - t)`` times a part that follows the input: at t = 1
    the noise cannot change it, and the loss is 0."""
    torch.manual_seed(0)
    x, y, _ = synthetic_batch(4, 16)
    pattern = torch.rand(4, 1, 16, 16) + 0.5
    metric = RelativeInputStability(detach_unperturbed=detach_unperturbed)
    losses = []
    for t in STEPS:
        def explain(inputs, targets, create_graph=False, t=t):
            return pattern + (1 - t) * torch.sin(40 * inputs).mean(1, keepdim=True)
        torch.manual_seed(1)  # the same perturbation for every t
        losses.append(float(metric.loss(None, x, y, explain)))
    assert strictly_falling(losses)
    assert losses[-1] == pytest.approx(0.0, abs=1e-7)


def test_ris_loss_is_the_symmetric_relative_change_of_the_two_maps():
    """Against the formula written out on two separate explanations of x and x + delta (delta
    drawn as the loss draws it: uniform in [low, high] from the global generator)."""
    from lightning_modules.attributions import InputXGradient
    from tests.metric_cases import plain_cnn

    torch.manual_seed(0)
    model = plain_cnn().eval()
    x, y, _ = synthetic_batch(3, 16)
    explain = InputXGradient(model)
    for detach in (False, True):
        torch.manual_seed(7)
        loss = float(RelativeInputStability(noise=(0.05, 0.3), detach_unperturbed=detach).loss(model, x, y, explain))
        torch.manual_seed(7)
        delta = 0.05 + 0.25 * torch.rand_like(x)
        e, e_perturbed = explain(x, y).detach(), explain(x + delta, y).detach()
        expected = sum(float((e[i] - e_perturbed[i]).norm() / (e[i].norm() + e_perturbed[i].norm()))
                       for i in range(3)) / 3
        assert expected > 0.01 and loss == pytest.approx(expected, rel=1e-4)


def test_ris_detached_loss_trains_only_the_perturbed_map():
    """detach_unperturbed: e(x) is explained without a graph (a fixed target) and the gradient
    reaches the weights through e(x + delta) only; otherwise through both maps."""
    from lightning_modules.attributions import InputXGradient
    from tests.metric_cases import plain_cnn

    torch.manual_seed(0)
    model = plain_cnn().eval()
    x, y, _ = synthetic_batch(2, 16)
    explain = InputXGradient(model)
    maps, graphs = [], []

    def recording(inputs, targets, create_graph=False):
        graphs.append(create_graph)
        maps.append(explain(inputs, targets, create_graph=create_graph))
        return maps[-1]

    for detach in (True, False):
        maps.clear(), graphs.clear()
        loss = RelativeInputStability(detach_unperturbed=detach).loss(model, x, y, recording)
        assert graphs == [not detach, True]
        assert maps[0].requires_grad == (not detach)
        trained = [m for m in maps if m.requires_grad]
        grads = torch.autograd.grad(loss, trained, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads) and len(grads) == (1 if detach else 2)
    loss.backward()
    assert model[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("metric", [ROAD, IROF], ids=["road", "irof"])
def test_removal_metrics_train_at_temperature_01_by_default(metric):
    """The soft top-fraction mask's temperature: 0.1 unless set (neither YAML sets it)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3)).eval()
    with torch.no_grad():
        model[1].weight.mul_(20)  # a prediction that depends on which pixels are removed
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([0, 2])
    maps = torch.rand(2, 1, 16, 16)

    def explain(inputs, targets, create_graph=False):
        return maps

    losses = {t: float(metric(loss_temperature=t).loss(model, x, y, explain).detach()) for t in (0.1, 1.1)}
    assert abs(losses[0.1] - losses[1.1]) > 1e-3, losses
    assert float(metric().loss(model, x, y, explain).detach()) == pytest.approx(losses[0.1], rel=1e-6)
