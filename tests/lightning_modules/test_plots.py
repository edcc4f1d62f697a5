"""The run's figure (lightning_modules/plots.py): its images drawn with the data module's own inverse
normalization, and a run that shows no images (``finetune.plot_images=0``) still gets its curves."""
from __future__ import annotations

import torch
from PIL import Image

from harmony_cli.hydra_app import compose_config
from lightning_modules.finetune import build_module
from lightning_modules.plots import finetune_figure

HISTORY = [{"step": 0, "val/rma": 0.4, "val/rma_original": 0.4, "val/agreement": 1.0, "val/accuracy": 0.9,
            "val/accuracy_original": 0.9},
           {"step": 5, "val/rma": 0.5, "val/rma_original": 0.4, "val/agreement": 0.95, "val/accuracy": 0.9,
            "val/accuracy_original": 0.9}]
SUMMARY = {"metric": "rma", "attribution": "gradcam", "backbone": "tiny", "data": "synthetic", "original_score": 0.4,
           "finetuned_score": 0.5, "agreement": 0.95, "steps": 5, "best_step": 5, "min_agreement": 0.9}


def test_the_images_are_drawn_with_the_given_inverse_normalization(trained_tiny, synthetic_dm, tmp_path):
    module = build_module(compose_config(["metric=rma", "attribution=gradcam"]), original=trained_tiny)
    seen = []

    def denormalize(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape)
        return torch.zeros_like(x)

    out = finetune_figure(module, synthetic_dm.split("val"), HISTORY, SUMMARY, tmp_path / "run.png", n_images=3,
                          denormalize=denormalize)
    assert seen == [torch.Size([3, 3, *synthetic_dm.split("val")[0]["image"].shape[1:]])]
    assert Image.open(out).size[0] > 0


def test_no_images_leaves_the_curves(tmp_path):
    """No image is read, so no model is needed: the figure has the curves only."""
    out = finetune_figure(None, [], HISTORY, SUMMARY, tmp_path / "run.png", n_images=0)
    assert Image.open(out).size[0] > 0
