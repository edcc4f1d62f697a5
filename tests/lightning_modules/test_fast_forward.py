"""FastForward (lightning_modules/fast_forward.py): the channels-last, in-place copy the perturbation
metrics run the model through gives the model's own logits, or is not used."""
from __future__ import annotations

import logging

import torch
from torch import nn

from lightning_modules.metrics import FastForward
from tests.metric_cases import LeNet, plain_cnn, synthetic_batch


def test_fast_forward_equals_the_model_and_leaves_it_alone(tiny):
    x, _, _ = synthetic_batch(5, 32)
    relus = [m.inplace for m in tiny.modules() if isinstance(m, nn.ReLU)]
    fast = FastForward(tiny, batch_size=2)
    with torch.no_grad():
        torch.testing.assert_close(fast.logits(x), tiny(x), rtol=1e-4, atol=1e-5)
    assert fast.optimized and fast.channels_last and fast.module is not tiny
    assert [m.inplace for m in tiny.modules() if isinstance(m, nn.ReLU)] == relus
    assert all(p.is_contiguous() for p in tiny.parameters())
    assert FastForward(tiny.train()).module is tiny  # train mode: run as it is
    tiny.eval()


def test_fast_forward_falls_back_to_the_plain_model_with_one_log_line(caplog):
    """LeNet flattens with .view, which a channels-last tensor refuses: the copy raises on the
    first chunk, so the model itself runs (same logits, one log line saying why)."""
    torch.manual_seed(0)
    model = LeNet().eval()
    x, _, _ = synthetic_batch(5, 32)
    with caplog.at_level(logging.INFO, logger="lightning_modules.fast_forward"):
        fast = FastForward(model, batch_size=2)
        logits = fast.logits(x)
        fast.logits(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, torch.cat([model(chunk) for chunk in x.split(2)]), rtol=0, atol=0)
    assert fast.optimized is False and fast.module is model
    lines = [r.getMessage() for r in caplog.records if r.name == "lightning_modules.fast_forward"]
    assert len(lines) == 1 and "LeNet" in lines[0] and "plain model" in lines[0] and "\n" not in lines[0]


def test_fast_forward_rejects_a_copy_with_other_logits():
    """A copy that runs but computes something else is never used."""
    torch.manual_seed(0)
    model = plain_cnn().eval()
    fast = FastForward(model, batch_size=3)
    fast._candidate = plain_cnn().eval()  # other weights: other logits
    x, _, _ = synthetic_batch(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast.logits(x), model(x), rtol=0, atol=0)
    assert fast.optimized is False
