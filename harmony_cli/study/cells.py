"""One cell of a study from one finetune run: choose test images, make their pairs, store them.

Test images are read ``batch_size`` at a time in the seeded order; those both models
classify correctly gather until a full batch (or the last one needed) is ready, whose
maps, scores and PNGs are then made together and stored in one transaction. With
``disjoint_images``, images already used by the study's other cells of the same data,
backbone and attribution are passed over: the same image never shows the same
original map in two cells (which would tell the original from the fine-tuned map).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .files import remove_files
from .pairs import explain_and_score, write_example_files
from .rendering import render_pairs
from .selection import correctness, iter_test_batches, seeded_order
from .settings import BuildError, StudySettings
from .study_row import StudyRow


@dataclass
class CellResult:
    """What building one cell did."""

    cell: dict
    run: str
    target: int
    examples: int = 0              # in the store now
    added: int = 0                 # by this build
    skipped: Counter = field(default_factory=Counter)  # why test images were passed over, this build
    original_mean: float | None = None
    finetuned_mean: float | None = None
    exhausted: bool = False        # the test split ran out before the cell was full


@dataclass
class CellJob:
    """Everything building one cell needs: the study, a loaded run, the settings, the device."""

    study: StudyRow
    run: Any                       # lightning_modules.finetune.FinetuneRun
    run_dir: Path
    settings: StudySettings
    device: torch.device

    @property
    def cell(self) -> dict:
        """The (dataset, metric, backbone, attribution) of the run."""
        return {key: str(value) for key, value in self.run.cell.items()}


def build_cell(job: CellJob, progress=None) -> CellResult:
    """Fill one cell of the study from ``job.run`` up to ``examples_per_cell`` examples."""
    cell, settings = job.cell, job.settings
    result = CellResult(cell=cell, run=str(job.run_dir), target=settings.examples_per_cell)
    have = job.study.keys(cell)
    taken = job.study.keys_of_sibling_cells(cell) if settings.disjoint_images else set()
    need = settings.examples_per_cell - len(have)
    task = None if progress is None else progress.add_task(
        f"{cell['metric']} / {cell['attribution']} / {cell['backbone']}", total=settings.examples_per_cell,
        completed=min(len(have), settings.examples_per_cell))
    job.run.original.to(job.device).eval()
    job.run.finetuned.to(job.device).eval()
    if need > 0:
        for chunk in candidate_batches(job, have | taken, need, result.skipped):
            result.added += store_batch(job, chunk)
            if task is not None:
                progress.advance(task, len(chunk))
        result.exhausted = result.added < need
    result.examples = len(job.study.keys(cell))
    result.original_mean, result.finetuned_mean = job.study.cell_means(cell)
    return result


def candidate_batches(job: CellJob, passed_over: set[str], need: int, skipped: Counter) -> Iterator[list[dict]]:
    """Batches (of at most ``batch_size``) of test images both models classify right, ``need`` in all.

    Images whose split index is in ``passed_over`` are not read; why others were passed over
    goes to ``skipped``. Each item: image (C,H,W), label, split index, rank in the seeded order, mask.
    """
    run, batch_size, device = job.run, job.settings.batch_size, job.device
    order = seeded_order(len(run.datamodule.split("test")), job.settings.seed)
    rank = {index: r for r, index in enumerate(order)}
    pending: list[dict] = []
    for unreadable, batch in iter_test_batches(run.datamodule, [i for i in order if str(i) not in passed_over],
                                               batch_size):
        if unreadable:
            skipped["unreadable"] += len(unreadable)
        if batch is None:
            continue
        if run.metric.needs_masks and batch.get("mask") is None:
            raise BuildError(f"metric {job.cell['metric']} needs object masks but data {job.cell['dataset']} has "
                             f"none: use a data set with masks (e.g. data=imagenet_s)")
        images, labels = batch["image"].to(device), batch["label"].to(device)
        keep, reasons = correctness(run.original, run.finetuned, images, labels)
        skipped.update(r for r in reasons if r is not None)
        for i in keep.nonzero().flatten()[:need - len(pending)].tolist():
            index = int(batch["_split_index"][i])
            pending.append({"image": images[i], "label": labels[i], "index": index, "position": rank[index],
                            "mask": batch["mask"][i].to(device) if batch.get("mask") is not None else None})
        while pending and (len(pending) >= batch_size or len(pending) == need):
            chunk, pending = pending[:batch_size], pending[batch_size:]
            need -= len(chunk)
            yield chunk
        if need <= 0:
            return
    if pending:  # the test split ran out: what there is
        yield pending


def store_batch(job: CellJob, chunk: list[dict]) -> int:
    """Maps, scores and PNGs of ``chunk``, stored as examples in one transaction; how many.

    Files are written before the rows (a row never points at nothing); if storing fails, the
    files this batch created are removed again.
    """
    run, cell = job.run, job.cell
    x = torch.stack([p["image"] for p in chunk])
    y = torch.stack([p["label"] for p in chunk])
    masks = torch.stack([p["mask"] for p in chunk]) if chunk[0]["mask"] is not None else None
    pair = explain_and_score(run.original, run.finetuned, run.explainer, run.metric, x, y, masks)
    rendered = render_pairs(x, pair.original_maps, pair.finetuned_maps, job.settings.render,
                            getattr(run.datamodule, "denormalize", None))
    class_names, created = list(run.datamodule.class_names), []
    try:
        rows = [dict(cell, source_key=str(p["index"]), position=p["position"],
                     class_name=class_names[int(p["label"])], run=str(job.run_dir),
                     original_score=_score(float(pair.original_scores[j])),
                     finetuned_score=_score(float(pair.finetuned_scores[j])),
                     **write_example_files(job.study.image_dir, rendered, j, created))
                for j, p in enumerate(chunk)]
        job.study.add(rows, {cell["metric"]: bool(run.metric.higher_is_better)})
    except BaseException:
        remove_files(created)
        raise
    return len(rows)


def _score(value: float) -> float | None:
    """A stored score: NaN (undefined, e.g. an empty mask) becomes NULL."""
    return None if value != value else value
