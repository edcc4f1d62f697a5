"""docs/extending.md, done: a metric, an attribution method and a backbone, each added as one
Python file plus one YAML file in a folder of the user's own (found through
``hydra.searchpath``), composed, instantiated and used to score, with no edit to harmony."""
from __future__ import annotations

import textwrap

import pytest
import torch
from captum.attr import Saliency as CaptumSaliency
from hydra.utils import instantiate

from harmony_cli.hydra_app import compose_config
from lightning_modules.backbones import TinyCNN

PEAK_IN_MASK = '''
"""Peak in mask (the pointing game of Zhang et al. 2018 without its tolerance): is the map's maximum inside the object mask?"""
import torch

from lightning_modules.metrics import Metric
from lightning_modules.metrics.base import explain_maps


class PeakInMask(Metric):
    name = "peak_in_mask"
    family = "localization"
    higher_is_better = True
    needs_masks = True

    def score(self, model, x, y, explain, masks=None):
        maps = explain_maps(explain, x, y).flatten(1)
        return masks.flatten(1).gather(1, maps.argmax(1, keepdim=True)).squeeze(1).float()

    def loss(self, model, x, y, explain, masks=None):
        maps = explain_maps(explain, x, y, create_graph=True).flatten(1).softmax(1)
        return -(maps * masks.flatten(1)).sum(1).mean()
'''

GRADIENT_TIMES_TWO = '''
"""The input gradient, doubled: an attribution in one class."""
from lightning_modules.attributions import Attribution, Explanation, input_gradient


class DoubleGradient(Attribution):
    def __init__(self, model, factor=2.0):
        super().__init__(model)
        self.factor = factor

    def _explain(self, x, target, create_graph):
        grad, logits, _ = input_gradient(self.model, x, target, create_graph)
        raw = self.factor * grad
        return Explanation(raw.sum(1, keepdim=True), logits, raw)
'''

MY_CNN = '''
"""A backbone of one's own: any nn.Module returning (B, num_classes) logits."""
from torch import nn


class MyCNN(nn.Module):
    def __init__(self, num_classes: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
'''

YAMLS = {
    "metric/peak_in_mask.yaml": """
        name: peak_in_mask
        loss_weight: 1.0
        metric:
          _target_: my_extensions.peak_in_mask.PeakInMask
    """,
    "attribution/double_gradient.yaml": """
        name: double_gradient
        explainer:
          _target_: my_extensions.double_gradient.DoubleGradient
          factor: 2.0
    """,
    "backbone/my_cnn.yaml": """
        _target_: lightning_modules.backbones.build_backbone
        name: my_cnn
        model:
          _target_: my_extensions.my_cnn.MyCNN
          num_classes: ${data.num_classes}
        weights: none
        gradcam_layer: features.3
        cache_dir: ${paths.models}
    """,
}


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """A user's own folder: a Python package (on sys.path) and a config folder, as the docs describe."""
    package = tmp_path / "my_extensions"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in {"peak_in_mask": PEAK_IN_MASK, "double_gradient": GRADIENT_TIMES_TWO,
                         "my_cnn": MY_CNN}.items():
        (package / f"{name}.py").write_text(source)
    for path, text in YAMLS.items():
        target = tmp_path / "conf" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def compose(folder, *overrides):
    return compose_config([f"hydra.searchpath=[file://{folder / 'conf'}]", *overrides])


def test_a_metric_is_one_file_and_one_yaml(user_folder):
    from lightning_modules.attributions import InputXGradient
    from lightning_modules.metrics import metric_class

    cfg = compose(user_folder, "metric=peak_in_mask")
    metric = instantiate(cfg.metric.metric)
    assert metric_class(cfg.metric) is type(metric) and metric.needs_masks  # its facts, from its class
    torch.manual_seed(0)
    model = TinyCNN(8).eval()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    masks = torch.zeros(2, 1, 32, 32)
    explain = InputXGradient(model)
    top = explain(x, y).flatten(1).argmax(1)
    masks.view(2, -1)[0, top[0]] = 1  # image 0's maximum is inside its mask, image 1's is not
    assert metric.score(model, x, y, explain, masks).tolist() == [1.0, 0.0]
    metric.loss(model, x, y, explain, masks).backward()
    assert model.features[0].weight.grad.abs().sum() > 0


def test_an_attribution_is_one_file_and_one_yaml(user_folder):
    from captum.attr import InputXGradient as CaptumInputXGradient

    torch.manual_seed(0)
    model = TinyCNN(8).eval()
    explain = instantiate(compose(user_folder, "attribution=double_gradient").attribution.explainer, model=model)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 5])
    reference = 2 * CaptumInputXGradient(model).attribute(x, target=y) / x  # 2 * the input gradient
    assert (explain(x, y) - reference.sum(1, keepdim=True)).abs().max() < 1e-5


def test_a_backbone_is_one_file_and_one_yaml(user_folder, tmp_path):
    from lightning_modules.attributions import GradCAM
    from lightning_modules.metrics import ROAD

    cfg = compose(user_folder, "backbone=my_cnn", f"paths.models={tmp_path / 'models'}")
    model = instantiate(cfg.backbone).eval()
    assert type(model).__name__ == "MyCNN"
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    scores = ROAD(percentages=[20, 60]).score(model, x, y, GradCAM(model, cfg.backbone.gradcam_layer))
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_saliency_from_its_yaml_equals_captum():
    torch.manual_seed(0)
    model = TinyCNN(8).eval()
    cfg = compose_config(["attribution=saliency"])
    explain = instantiate(cfg.attribution.explainer, model=model)
    x, target = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 7])
    maps = explain(x, target)
    reference = CaptumSaliency(model).attribute(x, target=target, abs=True).amax(1, keepdim=True)
    assert maps.shape == (3, 1, 32, 32)
    assert (maps - reference).abs().max() < 1e-6


def test_saliency_keeps_the_graph_for_training():
    torch.manual_seed(0)
    model = TinyCNN(8).eval()
    explain = instantiate(compose_config(["attribution=saliency"]).attribution.explainer, model=model)
    maps = explain(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]), create_graph=True)
    maps.sum().backward()
    assert model.features[0].weight.grad is not None and model.features[0].weight.grad.abs().sum() > 0
