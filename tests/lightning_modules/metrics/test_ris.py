"""Relative input stability (lightning_modules/metrics/ris.py): its documented defaults (Quantus'
200 samples and eps = 1e-6 for zero denominators) and the unchanged input, against the formula
of Agarwal et al. written out here on explicit perturbations; changed predictions; RIS against
Quantus' RelativeInputStability.
Cases that compare with Quantus 0.6 (the reference implementation) ask for the ``quantus`` fixture
(conftest.py), which skips them alone where quantus, a dev dependency, is absent."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.metrics import RelativeInputStability
from lightning_modules.metrics.base import MetricInputError
from lightning_modules.metrics.ris import relative_input_stability
from tests.metric_cases import quantus_sampling, synthetic_batch


class CountingExplain:
    """Maps = the input's first channel; counts the images explained. The model predicts class 0."""

    def __init__(self):
        self.images = 0

    def __call__(self, inputs, targets, create_graph=False):
        self.images += len(inputs)
        return inputs[:, :1] * 2.0


def class_zero(x):
    return torch.cat([torch.ones(len(x), 1), torch.zeros(len(x), 1)], dim=1)


def test_ris_draws_quantus_200_samples_by_default():
    x, y = torch.rand(2, 3, 8, 8) + 0.1, torch.zeros(2, dtype=torch.long)
    explain = CountingExplain()
    relative_input_stability(class_zero, x, y, explain)
    assert explain.images == 2 + 200 * 2  # x itself, then 200 perturbed copies of each image
    explain = CountingExplain()
    RelativeInputStability().score(class_zero, x, y, explain)
    assert explain.images == 2 + 200 * 2


def hand_ris(e: torch.Tensor, e_perturbed: torch.Tensor, x: torch.Tensor, x_perturbed: torch.Tensor,
             eps: float) -> float:
    """max over samples of ||(e - e')/e|| / ||(x - x')/x||, a zero denominator entry read as eps."""
    def relative(a, b):
        return float(((a - b) / torch.where(a == 0, torch.full_like(a, eps), a)).norm())
    return max(relative(e, ep) / max(relative(x, xp), eps) for ep, xp in zip(e_perturbed, x_perturbed))


def test_ris_zero_map_entries_divide_by_eps_1e6_by_default():
    x = torch.rand(1, 3, 4, 4, dtype=torch.float64) + 0.5
    y = torch.zeros(1, dtype=torch.long)
    x[0, 0, 0, 0] = 0.95  # e(x) = 0 there, e(x') > 0: a zero denominator entry
    delta = 0.06 + torch.rand(3, 1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.04

    def explain(inputs, targets, create_graph=False):  # zero where the first channel is below 1
        return (inputs[:, :1] - 1.0).clamp_min(0.0)

    e = explain(x, y)
    assert (e == 0).any() and (e > 0).any()
    expected = hand_ris(e[0], [explain(x + d, y)[0] for d in delta], x[0], [x[0] + d[0] for d in delta], 1e-6)
    got = float(relative_input_stability(class_zero, x, y, explain, perturbations=delta)[0])
    assert got == pytest.approx(expected, rel=1e-6) and expected > 1e3  # a zero entry read as eps is large
    metric = RelativeInputStability()
    assert metric.eps == 1e-6  # the score below runs with the class' default
    with_class = float(relative_input_stability(class_zero, x, y, explain, eps=metric.eps, perturbations=delta)[0])
    assert with_class == got


def test_ris_of_an_unchanged_input_is_zero_not_nan():
    x, y = torch.rand(2, 3, 4, 4) + 0.1, torch.zeros(2, dtype=torch.long)
    unchanged = torch.zeros(4, 2, 3, 4, 4)
    value = relative_input_stability(class_zero, x, y, CountingExplain(), perturbations=unchanged)
    assert torch.equal(value, torch.zeros(2, dtype=torch.float64))


class RecordingExplain(CountingExplain):
    """Also records each call's number of images and the perturbations it saw (x' - x)."""

    def __init__(self, x):
        super().__init__()
        self.x, self.sizes, self.deltas = x, [], []

    def __call__(self, inputs, targets, create_graph=False):
        self.sizes.append(len(inputs))
        if len(inputs) != len(self.x):
            self.deltas.append(inputs.view(-1, *self.x.shape) - self.x)
        return super().__call__(inputs, targets, create_graph)


def test_ris_perturbations_are_uniform_in_quantus_002_to_02_by_default():
    x, y = torch.rand(1, 3, 8, 8, dtype=torch.float64) + 0.1, torch.zeros(1, dtype=torch.long)
    for score in (lambda e: relative_input_stability(class_zero, x, y, e, generator=torch.Generator().manual_seed(0)),
                  lambda e: RelativeInputStability().score(class_zero, x, y, e)):
        explain = RecordingExplain(x)
        score(explain)
        deltas = torch.cat(explain.deltas)
        assert deltas.numel() == 200 * 3 * 8 * 8
        assert 0.02 <= float(deltas.min()) < 0.021 and 0.199 < float(deltas.max()) <= 0.2
        assert abs(float(deltas.mean()) - 0.11) < 0.002  # uniform: the middle of the interval


def test_ris_explains_the_copies_in_calls_of_batch_size_images():
    x, y = torch.rand(1, 3, 4, 4) + 0.1, torch.zeros(1, dtype=torch.long)
    for metric in (lambda e: relative_input_stability(class_zero, x, y, e), lambda e: RelativeInputStability().score(
            class_zero, x, y, e)):
        explain = RecordingExplain(x)
        metric(explain)
        assert explain.sizes == [1] + [32] * 6 + [8]  # default batch_size 32: 200 samples of one image
    three = torch.rand(3, 3, 4, 4) + 0.1
    explain = RecordingExplain(three)
    relative_input_stability(class_zero, three, torch.zeros(3, dtype=torch.long), explain, n_samples=4, batch_size=2)
    assert explain.sizes == [3, 3, 3, 3, 3]  # batch_size below B: one sample (B images) per call


def test_ris_seeds_its_generator_with_0_and_without_one_uses_torchs():
    x, y = torch.rand(2, 3, 4, 4) + 0.1, torch.zeros(2, dtype=torch.long)

    def wavy(inputs, targets, create_graph=False):
        return torch.sin(20 * inputs[:, :1])

    seeded = relative_input_stability(class_zero, x, y, wavy, n_samples=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(RelativeInputStability(n_samples=5).score(class_zero, x, y, wavy), seeded.float())
    torch.manual_seed(4)
    first = relative_input_stability(class_zero, x, y, wavy, n_samples=5)
    torch.manual_seed(4)
    again = relative_input_stability(class_zero, x, y, wavy, n_samples=5)
    assert torch.equal(first, again) and not torch.equal(first, seeded)


def test_ris_of_an_unchanged_input_whose_map_changes_divides_by_eps():
    x, y = torch.rand(1, 3, 4, 4, dtype=torch.float64) + 0.1, torch.zeros(1, dtype=torch.long)
    calls = []

    def drifting(inputs, targets, create_graph=False):  # a different map on every call
        calls.append(1)
        return torch.full((len(inputs), 1, 4, 4), float(len(calls)), dtype=torch.float64)

    unchanged = torch.zeros(1, 1, 3, 4, 4, dtype=torch.float64)
    value = float(relative_input_stability(class_zero, x, y, drifting, perturbations=unchanged))
    expected = float(((torch.ones(4, 4) - 2.0) / 1.0).norm()) / 1e-6  # e = 1, e' = 2, input change 0 -> eps
    assert value == pytest.approx(expected, rel=1e-6)  # eps enters in float32


def test_ris_keeps_the_papers_max_over_prediction_preserving_samples_by_default():
    x, y = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, dtype=torch.long)

    def flips_when_bright(inputs):  # class 1 once the perturbation raised the mean above 0.6
        bright = (inputs.flatten(1).mean(1) > 0.6).float()
        return torch.stack([1 - bright, bright], dim=1)

    def wavy(inputs, targets, create_graph=False):
        return torch.sin(20 * inputs[:, :1])

    value = RelativeInputStability(n_samples=50).score(flips_when_bright, x, y, wavy)
    assert torch.isfinite(value).all()  # samples that flipped the class are skipped, not NaN
    assert torch.isnan(RelativeInputStability(n_samples=50, nan_on_prediction_change=True).score(
        flips_when_bright, x, y, wavy)).all()


def test_ris_accepts_captum_style_and_partial_explainers_and_runs_no_extra_forward():
    from lightning_modules.attributions import InputXGradient
    from lightning_modules.backbones import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN(4).eval()
    forwards = []
    model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    gradcam = InputXGradient(model)
    perturbations = torch.rand(3, 2, 3, 32, 32) * 0.1 + 0.02
    reference = relative_input_stability(model, x, y, gradcam, perturbations=perturbations)
    assert forwards == [2, 6]  # one forward pass per explanation: the predictions come with the maps

    class CaptumStyle:  # .attribute returns a plain tensor: predictions need their own forward pass
        def attribute(self, inputs, target=None):
            return gradcam(inputs, target)

        def __call__(self, inputs, target=None):
            return gradcam(inputs, target)

    class MapsOnly:  # .explain returns an object without logits
        def explain(self, inputs, target=None):
            return type("Out", (), {"maps": gradcam(inputs, target)})()

        def __call__(self, inputs, target=None):
            return gradcam(inputs, target)

    for explainer in (CaptumStyle(), MapsOnly(), lambda inputs, target: gradcam(inputs, target)):
        got = relative_input_stability(model, x, y, explainer, perturbations=perturbations)
        assert torch.allclose(got, reference, rtol=1e-5), type(explainer).__name__


def test_ris_rejects_bad_noise_and_maps_of_the_wrong_size():
    from lightning_modules.metrics.base import MetricInputError

    x, y = torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.long)
    for noise in (5, ("a", "b"), (0.1, 0.1), (0.2, 0.1)):
        with pytest.raises(MetricInputError, match="RIS noise"):
            relative_input_stability(class_zero, x, y, CountingExplain(), noise=noise)

    for count in (0, -1):
        with pytest.raises(MetricInputError, match="RIS needs n_samples >= 1"):
            relative_input_stability(class_zero, x, y, CountingExplain(), n_samples=count)

    def half_size(inputs, targets, create_graph=False):
        return inputs[:, :1, ::2, ::2]

    class HalfSizeWithLogits:  # the path that takes maps and logits from .explain
        def explain(self, inputs, target=None):
            return type("Out", (), {"maps": half_size(inputs, target), "logits": class_zero(inputs)})()

    for explainer in (half_size, HalfSizeWithLogits()):
        with pytest.raises(MetricInputError, match=r"attribution maps must be \(B,1,H,W\) at input resolution"):
            relative_input_stability(class_zero, x, y, explainer, n_samples=2)


def test_ris_training_term_keeps_both_maps_in_the_graph_by_default():
    x, y = torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.long)
    graphs = []

    def explain(inputs, targets, create_graph=False):
        graphs.append((len(inputs), create_graph))
        return inputs[:, :1] * 2

    RelativeInputStability().loss(None, x, y, explain)
    assert graphs == [(2, True), (2, True)]  # x, then x + delta, both with a graph


def test_ris_of_an_empty_batch_is_empty():
    from lightning_modules.attributions import InputXGradient
    from lightning_modules.backbones import TinyCNN

    model = TinyCNN(4).eval()
    value = relative_input_stability(model, torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long),
                                     InputXGradient(model), n_samples=2)
    assert value.shape == (0,)


def test_ris_skips_changed_predictions_and_plain_callables():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).eval()
    x = torch.randn(3, 3, 4, 4)
    y = model(x).argmax(1)
    gradient = lambda x, y, create_graph=False: x.sum(1, keepdim=True)  # noqa: E731 - a plain callable
    big = torch.full((2, 3, 3, 4, 4), 50.0)
    big[1] = 0.05
    flips = (model(x + 50).argmax(1) != y)
    skipped = relative_input_stability(model, x, y, gradient, perturbations=big)
    only_small = relative_input_stability(model, x, y, gradient, perturbations=big[1:])
    strict = relative_input_stability(model, x, y, gradient, perturbations=big, nan_on_prediction_change=True)
    assert torch.equal(torch.isnan(strict), flips)
    assert torch.allclose(skipped[flips], only_small[flips])
    with pytest.raises(MetricInputError):
        relative_input_stability(model, x, y, gradient, perturbations=big[:, :2])


@pytest.mark.parametrize("nan_on_prediction_change", [True, False])
def test_ris_equals_quantus(tiny, nan_on_prediction_change, quantus):
    from lightning_modules.attributions import GradCAM

    x, y, _ = synthetic_batch(4, 32)
    explain = GradCAM(tiny, "features.20")
    n_samples = 3
    perturbations, quantus_explain = quantus_sampling(explain, x, n_samples, 0.02, 0.2)
    reference = quantus.RelativeInputStability(nr_samples=n_samples, disable_warnings=True,
                                               return_nan_when_prediction_changes=nan_on_prediction_change)(
        model=tiny, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=quantus_explain, device="cpu")
    ours = relative_input_stability(tiny, x, y, explain, perturbations=perturbations,
                                    nan_on_prediction_change=nan_on_prediction_change)
    np.testing.assert_allclose(ours.numpy(), np.asarray(reference), rtol=1e-4)
    assert np.isfinite(np.asarray(reference)).any()
