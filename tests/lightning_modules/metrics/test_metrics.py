"""What the metrics share: the perturbation metrics' input checks and removal losses, every metric on
any user model, each metric's facts in conf/, and the score/loss interface the fine-tuning module
calls. One metric's own behaviour lives in its module's test file (test_rma.py, test_road.py, ...)."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.backbones import TinyCNN
from lightning_modules.metrics import (IROF, ROAD, Focus, MetricInputError, RelativeInputStability,
                                       RelevanceMassAccuracy, irof, road)
from tests.metric_cases import LeftTexture, LeNet, half_maps, one_line, plain_cnn, synthetic_batch


# ----------------------------------------------------------------------------- ROAD and IROF

def test_perturbation_metrics_reject_bad_inputs(tiny):
    x, y, _ = synthetic_batch(2, 16)
    maps = torch.rand(2, 1, 16, 16)
    for call in (lambda: road(tiny, x, y, maps[..., :8]), lambda: irof(tiny, x, y, maps[:1]),
                 lambda: road(tiny, x, y[:1], maps), lambda: road(tiny, x, y, maps, percentages=[0, 50])):
        with pytest.raises(MetricInputError) as exc:
            call()
        one_line(exc)


@pytest.mark.parametrize("metric", [ROAD(loss_fraction=0.5), IROF(loss_fraction=0.5)], ids=["road", "irof"])
def test_removal_loss_rewards_the_faithful_map(metric):
    """The perturbation losses are lower when the map marks the evidence the model uses."""
    model = LeftTexture()
    x, _, _ = synthetic_batch(4, 32)
    y = torch.zeros(4, dtype=torch.long)
    left, right = half_maps(4, 32)
    faithful = metric.loss(model, x, y, lambda x, y, create_graph=False: left)
    unfaithful = metric.loss(model, x, y, lambda x, y, create_graph=False: right)
    assert faithful < unfaithful - 0.05


USER_MODELS = {"lenet_view": LeNet, "no_batchnorm": plain_cnn}
ANY_MODEL_METRICS = {"rma": RelevanceMassAccuracy(), "focus": Focus(mosaic="half"),
                     "road": ROAD(percentages=[20, 60], curve="combined"), "irof": IROF(n_segments=12),
                     "ris": RelativeInputStability(n_samples=2)}


@pytest.mark.parametrize("metric", list(ANY_MODEL_METRICS))
@pytest.mark.parametrize("model_name", list(USER_MODELS))
def test_every_metric_scores_and_trains_a_user_model(model_name, metric):
    """A user's nn.Module (LeNet with .view, a CNN without BatchNorm) scores under every metric."""
    from lightning_modules.attributions import InputXGradient

    torch.manual_seed(0)
    model = USER_MODELS[model_name]().eval()
    x, y, masks = synthetic_batch(4, 32)
    explain = InputXGradient(model)
    scores = ANY_MODEL_METRICS[metric].score(model, x, y, explain, masks)
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    loss = ANY_MODEL_METRICS[metric].loss(model, x, y, explain, masks)
    loss.backward()
    assert torch.isfinite(loss) and model.conv_1.weight.grad is not None if model_name == "lenet_view" else True


# ----------------------------------------------------------------------------- the metric classes

METRICS = ["rma", "focus", "road", "irof", "ris"]


@pytest.fixture(scope="module")
def metric_configs():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from harmony_cli.hydra_app import CONFIG_DIR

    out = {}
    for name in METRICS:
        cfg = OmegaConf.load(f"{CONFIG_DIR}/metric/{name}.yaml")
        out[name] = (cfg, instantiate(cfg.metric))
    return out


# The study's facts, written out here (not read from the code under test).
FACTS = {"rma": ("localization", True, True), "focus": ("localization", True, False),
         "road": ("perturbation", True, False), "irof": ("perturbation", True, False),
         "ris": ("stability", False, False)}


@pytest.mark.parametrize("name", METRICS)
def test_a_metric_owns_its_facts(metric_configs, name):
    """The class holds name, family, direction and mask need; the YAML only how to build and train it."""
    from lightning_modules.metrics import metric_class

    cfg, metric = metric_configs[name]
    cls = metric_class(name)
    assert type(metric) is cls and metric_class(cfg) is cls and metric_class(cfg.metric._target_) is cls
    assert (cls.name, cls.family, cls.higher_is_better, cls.needs_masks) == (name, *FACTS[name])
    assert not {"family", "higher_is_better", "needs_masks"} & set(cfg), "a fact is back in the YAML"
    assert cfg.loss_weight > 0


def test_metric_class_of_an_unknown_name_lists_the_known_ones():
    from lightning_modules.metrics import metric_class

    with pytest.raises(MetricInputError) as exc:
        metric_class("accuracy")
    assert all(name in one_line(exc) for name in METRICS)
    with pytest.raises(MetricInputError):
        metric_class("lightning_modules.attributions.GradCAM")  # a class, but not a metric


SMALL = {"rma": {}, "focus": {}, "road": {"percentages": [20, 60]}, "irof": {"n_segments": 12},
         "ris": {"n_samples": 2}}


@pytest.mark.parametrize("name", METRICS)
def test_score_and_loss_train_the_model(metric_configs, name):
    """score: (B,) without gradient; loss: a scalar whose gradient reaches the weights through the maps."""
    from lightning_modules.attributions import GradCAM

    torch.manual_seed(0)
    model = TinyCNN(num_classes=8)
    metric = type(metric_configs[name][1])(**SMALL[name])
    x, y, masks = synthetic_batch(4, 32)
    explain = GradCAM(model, "features.20")
    model.eval()
    scores = metric.score(model, x, y, explain, masks)
    assert scores.shape == (4,) and not scores.requires_grad
    assert torch.equal(metric.score(model, x, y, explain, masks), scores)  # seeded: deterministic
    single = metric.score(model, x[:1], y[:1], explain, masks[:1])
    assert single.shape == (1,)
    model.train()
    loss = metric.loss(model, x, y, explain, masks)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    head = model.features[0].weight.grad  # below GradCAM's layer: reached only through the map
    assert head is not None and head.abs().sum() > 0


@pytest.mark.parametrize("name", ["rma", "pointing_game", "rra"])
def test_a_metric_that_needs_masks_names_itself_and_the_fix_when_it_gets_none(name):
    from lightning_modules.metrics.lookup import metric_class

    metric = metric_class(name)()
    assert metric.needs_masks
    x, y, _ = synthetic_batch(2, 32)
    model = plain_cnn()
    explain = lambda x, y, create_graph=False: x.sum(1, keepdim=True)  # noqa: E731 (never reached)
    for call in (metric.score, metric.loss):
        with pytest.raises(MetricInputError, match=rf"^metric={name} needs object masks, but the data module gives "
                                                   r"none: use a dataset with masks"):
            call(model, x, y, explain, masks=None)
