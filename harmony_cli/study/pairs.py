"""A pair of maps for a batch of images: both models' maps, each model's metric score, the PNG files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .files import content_name, write_content_named
from .rendering import RenderedMaps, encode_png


class ReusedMaps:
    """An explainer that answers a call on exactly the images it was given with their maps already computed.

    A metric explains the batch it scores (often among other inputs: mosaics,
    perturbed copies); the maps rendered for the study are those same maps, so
    they are computed once. Any other input is explained afresh.
    """

    def __init__(self, explainer: Callable, images: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor):
        self.explainer, self.images, self.targets, self.maps = explainer, images, targets, maps

    def _same(self, x: torch.Tensor, target) -> bool:
        if not isinstance(x, torch.Tensor) or x.shape != self.images.shape or x.device != self.images.device:
            return False
        target = torch.as_tensor(target, device=self.targets.device) if target is not None else None
        return (target is not None and target.shape == self.targets.shape and torch.equal(target, self.targets)
                and torch.equal(x.detach(), self.images))

    def __call__(self, x, target=None, create_graph: bool = False):
        if not create_graph and self._same(x, target):
            return self.maps
        return self.explainer(x, target, create_graph=create_graph)

    def __getattr__(self, name: str) -> Any:  # model, explain(), ... of the wrapped explainer
        if name == "explainer":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.explainer, name)


@dataclass
class PairBatch:
    """Both models' maps (B,1,H,W) and metric scores (B,) for a batch of images."""

    original_maps: torch.Tensor
    finetuned_maps: torch.Tensor
    original_scores: torch.Tensor
    finetuned_scores: torch.Tensor


def explain_and_score(original: torch.nn.Module, finetuned: torch.nn.Module, make_explainer: Callable, metric,
                      images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None) -> PairBatch:
    """Maps of both models for the true class, batched, and each model's metric score on its own maps."""
    out = {}
    for side, model in (("original", original), ("finetuned", finetuned)):
        explainer = make_explainer(model)
        maps = explainer(images, labels, create_graph=False).detach()
        scores = metric.score(model, images, labels, ReusedMaps(explainer, images, labels, maps), masks=masks)
        out[f"{side}_maps"] = maps
        out[f"{side}_scores"] = torch.as_tensor(scores).detach().float().reshape(-1).cpu()
    return PairBatch(**out)


def write_example_files(folder: Path, rendered: RenderedMaps, i: int, created: list[Path] | None = None
                        ) -> dict[str, str]:
    """Write example ``i`` of a rendered batch; the store's path fields (relative to ``folder``).

    Files are written in the order of their (content-hash) names, so not even their
    modification times say which map is the original. Files new on disk are added to ``created``.
    """
    encoded = {
        "image_path": encode_png(rendered.images[i]),
        "original_map_path": encode_png(rendered.original_overlays[i]),
        "finetuned_map_path": encode_png(rendered.finetuned_overlays[i]),
        "original_heatmap_path": encode_png(rendered.original_heatmaps[i]),
        "finetuned_heatmap_path": encode_png(rendered.finetuned_heatmaps[i]),
    }
    paths = {}
    for field_name, data in sorted(encoded.items(), key=lambda kv: content_name(kv[1])):
        paths[field_name] = write_content_named(folder, data, created)
    return paths
