"""Max-sensitivity (lightning_modules/metrics/max_sensitivity.py): the ratio by hand on explicit
perturbations, its defaults (Quantus' 200 draws uniform in [-0.2, 0.2], seeded), equal to Quantus 0.6's
MaxSensitivity on the same draws (rtol 1e-4: Quantus' norms run in float32, ours in float64), its loss's
direction and gradient (float64 finite differences through GradCAM and integrated gradients), and a few
fine-tuning steps on the embedded default lower it while agreement holds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.attributions import GradCAM, IntegratedGradients
from lightning_modules.metrics import MaxSensitivity, max_sensitivity, metric_class
from lightning_modules.metrics.base import MetricInputError
from tests.metric_cases import finetuning_moves, loss_gradient_check, one_line, quantus_sampling, synthetic_batch


def class_zero(x):
    return torch.cat([torch.ones(len(x), 1), torch.zeros(len(x), 1)], dim=1)


def squared(inputs, targets, create_graph=False):
    """Maps = the square of the first channel: the change of a map is not a multiple of the input's."""
    return inputs[:, :1] ** 2


class Recording:
    """Maps = the first channel; records each call's size and the perturbations it saw (x' - x)."""

    def __init__(self, x):
        self.x, self.sizes, self.deltas = x, [], []

    def __call__(self, inputs, targets, create_graph=False):
        self.sizes.append(len(inputs))
        if len(inputs) != len(self.x) or not torch.equal(inputs, self.x):
            self.deltas.append(inputs.view(-1, *self.x.shape) - self.x)
        return inputs[:, :1].clone()


def test_max_sensitivity_by_hand():
    """One 1x1x2 image x = (1, 2), maps e = x^2 = (1, 4); two draws: (+0.1, 0) and (0, -0.2).
    e' = (1.21, 4) and (1, 3.24): ||e - e'|| = 0.21 and 0.76, ||e|| = sqrt(17); the max is the second."""
    x = torch.tensor([[[[1.0, 2.0]]]], dtype=torch.float64)
    y = torch.zeros(1, dtype=torch.long)
    draws = torch.tensor([[[[[0.1, 0.0]]]], [[[[0.0, -0.2]]]]], dtype=torch.float64)
    got = max_sensitivity(class_zero, x, y, squared, perturbations=draws)
    assert got.dtype == torch.float64 and got.shape == (1,)
    assert got.item() == pytest.approx(0.76 / 17 ** 0.5, rel=1e-9)
    assert max_sensitivity(class_zero, x, y, squared, perturbations=draws[:1]).item() == pytest.approx(
        0.21 / 17 ** 0.5, rel=1e-9)
    # the map's scale does not count: 3 e changes 3 times as much
    tripled = max_sensitivity(class_zero, x, y, lambda i, t, create_graph=False: 3 * i[:, :1] ** 2,
                              perturbations=draws)
    assert tripled.item() == pytest.approx(got.item(), rel=1e-9)


def test_zero_maps_score_zero_when_unchanged_and_inf_when_changed():
    x, y = torch.rand(2, 1, 2, 2), torch.zeros(2, dtype=torch.long)
    draws = torch.full((1, 2, 1, 2, 2), 0.1)
    zero = max_sensitivity(class_zero, x, y, lambda i, t, create_graph=False: torch.zeros_like(i), perturbations=draws)
    assert torch.equal(zero, torch.zeros(2, dtype=torch.float64))

    def appears(inputs, targets, create_graph=False):  # zero on x, the perturbation itself on x'
        return inputs - x.repeat(len(inputs) // len(x), 1, 1, 1)

    assert torch.isinf(max_sensitivity(class_zero, x, y, appears, perturbations=draws)).all()


def test_defaults_are_quantus_200_draws_uniform_in_plus_minus_02_seeded_with_0():
    x, y = torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    for score in (lambda e: max_sensitivity(class_zero, x, y, e, generator=torch.Generator().manual_seed(0)),
                  lambda e: MaxSensitivity().score(class_zero, x, y, e)):
        explain = Recording(x)
        value = score(explain)
        deltas = torch.cat(explain.deltas)
        assert deltas.shape[0] == 200 and deltas.numel() == 200 * 3 * 8 * 8
        assert -0.2 <= float(deltas.min()) < -0.199 and 0.199 < float(deltas.max()) <= 0.2
        assert abs(float(deltas.mean())) < 0.002 and abs(float(deltas.abs().mean()) - 0.1) < 0.002  # uniform
        assert explain.sizes == [1] + [32] * 6 + [8]  # x, then the copies batch_size (32) at a time
    assert torch.equal(value, MaxSensitivity().score(class_zero, x, y, Recording(x)))  # seeded: the same draws
    seeded = max_sensitivity(class_zero, x, y, squared, n_samples=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(MaxSensitivity(n_samples=5).score(class_zero, x, y, squared), seeded.float())
    assert not torch.equal(MaxSensitivity(seed=1, n_samples=5).score(class_zero, x, y, squared), seeded.float())
    wide = Recording(x)
    MaxSensitivity(radius=0.5, n_samples=50).score(class_zero, x, y, wide)
    assert 0.45 < float(torch.cat(wide.deltas).abs().max()) <= 0.5
    three = torch.rand(3, 3, 4, 4)
    calls = Recording(three)
    max_sensitivity(class_zero, three, torch.zeros(3, dtype=torch.long), calls, n_samples=4, batch_size=2)
    assert calls.sizes == [3, 3, 3, 3, 3]  # batch_size below B: one sample (B images) per call


def test_an_empty_batch_scores_empty():
    value = max_sensitivity(class_zero, torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long), squared,
                            n_samples=3)
    assert value.shape == (0,)


def test_without_a_generator_it_draws_from_torchs():
    x, y = torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.long)
    torch.manual_seed(4)
    first = max_sensitivity(class_zero, x, y, squared, n_samples=5)
    torch.manual_seed(4)
    assert torch.equal(max_sensitivity(class_zero, x, y, squared, n_samples=5), first)
    assert not torch.equal(max_sensitivity(class_zero, x, y, squared, n_samples=5), first)


def test_changed_predictions_count_unless_asked_for_nan():
    x, y = torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, dtype=torch.long)
    x[1] = 0.1

    def flips_when_bright(inputs):  # class 1 once the mean passes 0.6
        bright = (inputs.flatten(1).mean(1) > 0.6).float()
        return torch.stack([1 - bright, bright], dim=1)

    draws = torch.stack([torch.full((2, 1, 2, 2), 0.05), torch.full((2, 1, 2, 2), 0.15)])  # the second flips x[0]
    kept = max_sensitivity(flips_when_bright, x, y, squared, perturbations=draws)
    expected = [float((squared(x[i:i + 1] + 0.15, y) - squared(x[i:i + 1], y)).norm() / squared(x[i:i + 1], y).norm())
                for i in range(2)]
    torch.testing.assert_close(kept, torch.tensor(expected, dtype=torch.float64))
    strict = max_sensitivity(flips_when_bright, x, y, squared, perturbations=draws, nan_on_prediction_change=True)
    assert torch.isnan(strict[0]) and strict[1].item() == pytest.approx(expected[1], rel=1e-6)
    metric = MaxSensitivity(n_samples=50, nan_on_prediction_change=True)
    assert torch.isnan(metric.score(flips_when_bright, x, y, squared)[0])
    assert torch.isfinite(MaxSensitivity(n_samples=50).score(flips_when_bright, x, y, squared)).all()


def test_bad_settings_are_one_line_errors():
    x, y = torch.rand(2, 1, 4, 4), torch.zeros(2, dtype=torch.long)
    for radius in (0, -0.1, "wide", None):
        with pytest.raises(MetricInputError, match="radius") as exc:
            MaxSensitivity(radius=radius)
        one_line(exc)
    with pytest.raises(MetricInputError, match="n_samples >= 1"):
        max_sensitivity(class_zero, x, y, squared, n_samples=0)
    with pytest.raises(MetricInputError, match="loss_samples >= 1"):
        MaxSensitivity(loss_samples=0)
    assert MaxSensitivity(loss_samples=1).loss_samples == 1
    with pytest.raises(MetricInputError, match="perturbations must be"):
        max_sensitivity(class_zero, x, y, squared, perturbations=torch.zeros(3, 1, 1, 4, 4))


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide", "ignore:All-NaN slice encountered")
@pytest.mark.parametrize("nan_on_prediction_change", [False, True])
def test_equals_quantus_on_the_same_draws(tiny, quantus, nan_on_prediction_change):
    x, y, _ = synthetic_batch(4, 32)
    explain = GradCAM(tiny, "features.20")
    n_samples = 3
    perturbations, quantus_explain = quantus_sampling(explain, x, n_samples, -0.2, 0.2)
    reference = quantus.MaxSensitivity(nr_samples=n_samples, disable_warnings=True,
                                       return_nan_when_prediction_changes=nan_on_prediction_change)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=quantus_explain, device="cpu")
    ours = max_sensitivity(tiny, x, y, explain, perturbations=perturbations,
                           nan_on_prediction_change=nan_on_prediction_change)
    reference = np.asarray(reference)
    zero = (explain(x, y).flatten(1).abs().amax(1) == 0).numpy()  # a map that stays all zero: Quantus' 0 / 0
    np.testing.assert_allclose(ours.numpy()[~zero], reference[~zero], rtol=1e-4)
    assert np.isnan(reference[zero]).all()
    assert nan_on_prediction_change or (ours.numpy()[zero] == 0).all()  # ours: the map did not change
    assert (reference[np.isfinite(reference)] > 0).sum() >= 2


def test_metric_facts_and_loss_direction():
    cls = metric_class("max_sensitivity")
    assert cls is MaxSensitivity
    assert (cls.family, cls.higher_is_better, cls.needs_masks) == ("stability", False, False)
    x, y = torch.rand(3, 1, 8, 8), torch.zeros(3, dtype=torch.long)
    torch.manual_seed(0)
    graphs = []

    def follows(weight):  # a map made of a fixed part and weight * the input: more weight, less stable
        def explain(inputs, targets, create_graph=False):
            graphs.append((len(inputs), create_graph))
            return 1.0 + weight * inputs[:, :1]
        return explain

    losses = [float(MaxSensitivity().loss(None, x, y, follows(w))) for w in (0.0, 0.5, 2.0)]
    assert losses[0] == 0.0 and 0 < losses[1] < losses[2] < 1
    assert graphs[:2] == [(3, True), (6, True)]  # x, then its two copies in one call, both with a graph
    faint = float(MaxSensitivity().loss(None, x.double(), y, lambda i, t, create_graph=False: 1e-15 * (1 + 2 * i)))
    assert 0 < faint < 1  # in [0, 1] however small the maps (the guard against 0 / 0 adds to the scale)


def test_loss_is_the_largest_symmetric_relative_change_of_its_draws():
    x, y = torch.rand(2, 1, 4, 4, dtype=torch.float64) + 0.5, torch.zeros(2, dtype=torch.long)
    torch.manual_seed(5)
    got = MaxSensitivity(loss_samples=3, radius=0.3).loss(None, x, y, squared)
    torch.manual_seed(5)
    delta = 0.3 * (2 * torch.rand((3, *x.shape), dtype=torch.float64) - 1)
    e = squared(x, y)
    ratios = [[float((e[b] - squared(x + d, y)[b]).norm() / (e[b].norm() + squared(x + d, y)[b].norm()))
               for d in delta] for b in range(2)]
    assert got.item() == pytest.approx(sum(max(r) for r in ratios) / 2, rel=1e-9)


@pytest.mark.parametrize("method", ["gradcam", "integrated_gradients"])
def test_loss_gradient_matches_finite_differences(method):
    make = {"gradcam": lambda m: GradCAM(m, "features.20"),
            "integrated_gradients": lambda m: IntegratedGradients(m, steps=3)}[method]

    class Seeded(MaxSensitivity):  # the same draws on every evaluation of the loss
        def loss(self, *args, **kwargs):
            torch.manual_seed(2)
            return super().loss(*args, **kwargs)

    loss_gradient_check(Seeded(radius=0.05), make)


def test_a_few_finetuning_steps_lower_max_sensitivity_while_agreement_holds(trained_tiny, synthetic_dm):
    finetuning_moves(trained_tiny, synthetic_dm, "max_sensitivity", direction=-1,
                     extra=["metric.metric.n_samples=16"])
