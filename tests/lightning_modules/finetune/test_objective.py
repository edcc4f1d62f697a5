"""Which logits the agreement term of the fine-tuning objective uses (FinetuneModule.objective): the
graph-keeping forward pass of the batch itself when the metric explained it, else the first input
the metric explained, else a forward pass of its own; the expected values come from plain forward
passes of the two models and the row-wise cosine written out."""
from __future__ import annotations

import pytest
import torch

from lightning_modules.attributions import InputXGradient
from lightning_modules.backbones import TinyCNN
from harmony_cli.defaults import config_default
from lightning_modules.finetune import FinetuneModule


def finetune_defaults() -> dict:
    """FinetuneModule's training keys as conf/ sets them (the class has no defaults)."""
    return {key: config_default(f"finetune.{key}") for key in ("lr", "weight_decay", "keep_eval_mode", "fold_batchnorm")}


def row_cosine_loss(a: torch.Tensor, b: torch.Tensor) -> float:
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return float(((1 - cos) / 2).mean())


class Probe:
    """A metric whose training term explains the inputs ``explained(x)`` (graph kept) or x without a graph."""

    name, higher_is_better = "probe", True

    def __init__(self, explained):
        self.explained = explained

    def loss(self, model, x, y, explain, masks=None):
        inputs = self.explained(x)
        if not inputs:
            return explain(x, y).mean() * 0 + model(x).mean()  # maps without a graph: nothing recorded
        return sum(explain(inp, y, create_graph=True).mean() for inp in inputs)


CASES = {  # the inputs the metric explains -> the input the agreement term must use
    "the batch": (lambda x: [x], lambda x: x),
    "another input": (lambda x: [x.flip(-1)], lambda x: x.flip(-1)),
    "two other inputs": (lambda x: [x.flip(-1), x.flip(-2)], lambda x: x.flip(-1)),
    "another input, then the batch": (lambda x: [x.flip(-1), x], lambda x: x),
    "nothing with a graph": (lambda x: [], lambda x: x),
}


@pytest.mark.parametrize("case", list(CASES))
def test_objective_agreement_uses_the_logits_of_what_was_explained(case):
    torch.manual_seed(0)
    explained, used = CASES[case]
    module = FinetuneModule(TinyCNN(8).eval(), Probe(explained), lambda model: InputXGradient(model), loss_weight=0.5,
                            **finetune_defaults())
    with torch.no_grad():
        for p in module.finetuned.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    terms = module.objective({"image": x, "label": y})
    agreement, loss, metric_loss = (float(terms[k].detach()) for k in ("agreement_loss", "loss", "metric_loss"))
    with torch.no_grad():
        inp = used(x)
        expected = row_cosine_loss(module.original(inp), module.finetuned(inp))
        elsewhere = row_cosine_loss(module.original(x.flip(-2)), module.finetuned(x.flip(-2)))
    assert abs(expected - elsewhere) > 1e-4  # the inputs tell apart
    assert agreement == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert loss == pytest.approx(agreement + 0.5 * metric_loss, rel=1e-5)
    assert terms["agreement_loss"].requires_grad  # the term trains the copy
