"""Scoring both models on validation batches: per-batch sums, reduced over batches and ranks, then means."""
from __future__ import annotations

import torch
from torch import Tensor, nn

SUMS = ("images", "finetuned_score", "original_score", "agreement", "finetuned_correct", "original_correct",
        "processes", "finetuned_scored", "original_scored")


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor) -> Tensor:
    return model(x).argmax(1)


def batch_sums(module, batch: dict, cache: dict | None = None, key=None) -> Tensor:
    """Per-batch sums of a :class:`FinetuneModule` on ``batch``, in the order of :data:`SUMS` (float64, (9,)).

    Scores are summed over the images where they are defined (a metric returns NaN for an
    image it cannot score, e.g. RMA with an empty mask); ``*_scored`` count those images.
    The original's predictions and scores come from ``cache[key]`` when present.
    """
    x, y, masks = batch["image"], batch["label"], batch.get("mask")
    cached = cache.get(key) if cache is not None else None
    if cached is None or cached[0].shape[0] != x.shape[0]:
        original_score = module.metric.score(module.original, x, y, module.explainer("original"), masks=masks)
        cached = (module.original_logits(x).argmax(1), original_score.detach().double())
        if cache is not None:
            cache[key] = cached
    original_pred, original_score = cached
    finetuned_pred = _predict(module.finetuned, x)
    finetuned_score = module.metric.score(module.finetuned, x, y, module.explainer("finetuned"), masks=masks)
    finetuned_score = finetuned_score.detach().double()

    def total(t: Tensor) -> Tensor:
        return t.double().sum()

    return torch.stack([
        torch.tensor(float(len(y)), dtype=torch.float64, device=x.device),
        total(finetuned_score.nan_to_num(0.0) * ~finetuned_score.isnan()),
        total(original_score.nan_to_num(0.0) * ~original_score.isnan()),
        total(finetuned_pred == original_pred),
        total(finetuned_pred == y),
        total(original_pred == y),
        torch.zeros((), dtype=torch.float64, device=x.device),
        total(~finetuned_score.isnan()),
        total(~original_score.isnan()),
    ])


def summarize(sums: Tensor) -> dict[str, float]:
    """Means of :func:`batch_sums` totals (a score is NaN when no image could be scored)."""
    s = dict(zip(SUMS, (float(v) for v in sums)))
    n = max(s["images"], 1.0)

    def mean(key: str) -> float:
        count = s[key.replace("_score", "_scored")]
        return s[key] / count if count else float("nan")

    return {"finetuned_score": mean("finetuned_score"), "original_score": mean("original_score"),
            "agreement": s["agreement"] / n, "finetuned_accuracy": s["finetuned_correct"] / n,
            "original_accuracy": s["original_correct"] / n, "images": int(s["images"])}


def evaluate(module, loader) -> dict[str, float]:
    """Both models' metric, their prediction agreement and accuracies over ``loader`` (one process)."""
    device = next(module.finetuned.parameters()).device
    module.train(False)
    total = torch.zeros(len(SUMS), dtype=torch.float64, device=device)
    for batch in loader:
        if batch is None:
            continue
        batch = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        total += batch_sums(module, batch)
    return summarize(total)
