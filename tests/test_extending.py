"""The worked example of docs/extending.md: a method added as one file plus one YAML file."""
from __future__ import annotations

import torch
from captum.attr import Saliency as CaptumSaliency
from hydra.utils import instantiate

from harmony_cli.hydra_app import compose_config
from lightning_modules.backbones import TinyCNN


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
