"""``harmony build-dataset``: the paired-map study from one or more fine-tuning runs.

Each finetune run becomes a *cell* (dataset, metric, backbone, attribution) of a
study. For held-out test images that both the original and the fine-tuned
model classify correctly, in a seeded order, both models' maps for the true
class are rendered to PNGs (content-hash names: no path says which map is
which) and stored as an example with both models' metric scores.

Resumable and idempotent: an example's files are written (atomically) before
its row, rows are keyed by (study, cell, test-split index), and already stored
keys are skipped, so an interrupted build completes on the next run and a
complete one adds nothing.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import UserError

from .rendering import RenderSettings, encode_png, render_pairs, write_atomic

METRICS_FILE = "metrics.json"
# Settings whose change would mix differently made examples into one study.
PINNED_SETTINGS = ("seed", "image_size", "colormap", "image_weight", "resample")


class BuildError(UserError):
    """A run or study that cannot be built; the message says what to do."""


# ---------------------------------------------------------------------------- runs


def is_run_dir(path: Path) -> bool:
    """A finished finetune run: its composed config and its metrics.json are there."""
    from lightning_modules.runs import is_finetune_run

    return is_finetune_run(path)


def find_runs(path: str | Path) -> list[Path]:
    """The finished runs of ``path``: itself if it is a run, else every run directly under it (a multirun dir)."""
    path = Path(path)
    if not path.exists():
        raise BuildError(f"run={path} does not exist: give a finetune run dir (outputs/finetune/<time>) "
                         f"or a multirun dir (outputs/finetune-multirun/<time>)")
    if is_run_dir(path):
        return [path]
    if path.is_dir():
        runs = sorted((p for p in path.iterdir() if p.is_dir() and is_run_dir(p)), key=_run_sort_key)
        if runs:
            return runs
    raise BuildError(f"run={path} holds no finished finetune run (no {METRICS_FILE} in it or its subfolders): "
                     f"point run= at a finetune run dir, or run `harmony finetune` first")


def _run_sort_key(path: Path) -> tuple:
    # Hydra's sweep subdirs start with the job number: order 2 before 10.
    head = path.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else float("inf"), path.name)


def latest_run(outputs: str | Path) -> Path:
    """The most recently finished finetune run or multirun under ``outputs`` (by its newest metrics.json)."""
    outputs = Path(outputs)
    candidates: list[tuple[float, Path]] = []
    for single in (outputs / "finetune").glob(f"*/{METRICS_FILE}"):
        if is_run_dir(single.parent):
            candidates.append((single.stat().st_mtime, single.parent))
    for sweep in (outputs / "finetune-multirun").glob("*"):
        finished = [p for p in sweep.glob(f"*/{METRICS_FILE}") if is_run_dir(p.parent)]
        if finished:
            candidates.append((max(p.stat().st_mtime for p in finished), sweep))
    if not candidates:
        raise BuildError(f"no finished finetune run under {outputs}/finetune or {outputs}/finetune-multirun: "
                         f"run `harmony finetune` first, or give run=PATH")
    return max(candidates, key=lambda c: (c[0], str(c[1])))[1]


def default_study_name(source: Path) -> str:
    """A study name from the run path: its last two parts (``finetune-multirun-2025-01-01_12-00-00``)."""
    parts = Path(source).resolve().parts[-2:]
    return "-".join(parts)


def slug(name: str) -> str:
    """A file-system-safe folder name for a study."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


# ---------------------------------------------------------------------------- per-batch work


def seeded_order(n: int, seed: int) -> list[int]:
    """A permutation of range(n) that depends only on ``seed``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()


@torch.no_grad()
def correctness(original: torch.nn.Module, finetuned: torch.nn.Module, images: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, list[str | None]]:
    """Which images both models classify correctly: (keep (B,) bool, skip reason or None per image)."""
    original_ok = original(images).argmax(1) == labels
    finetuned_ok = finetuned(images).argmax(1) == labels
    reasons: list[str | None] = []
    for o, f in zip(original_ok.tolist(), finetuned_ok.tolist()):
        reasons.append(None if o and f else "both models wrong" if not (o or f)
                       else "original wrong" if not o else "fine-tuned wrong")
    return original_ok & finetuned_ok, reasons


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


def write_example_files(folder: Path, rendered, i: int) -> dict[str, str]:
    """Write example ``i`` of a rendered batch; the store's path fields (relative to ``folder``).

    Files are written in the order of their (content-hash) names, so not even their
    modification times say which map is the original.
    """
    from .rendering import content_name

    encoded = {
        "image_path": encode_png(rendered.images[i]),
        "original_map_path": encode_png(rendered.original_overlays[i]),
        "finetuned_map_path": encode_png(rendered.finetuned_overlays[i]),
        "original_heatmap_path": encode_png(rendered.original_heatmaps[i]),
        "finetuned_heatmap_path": encode_png(rendered.finetuned_heatmaps[i]),
    }
    paths = {}
    for field_name, data in sorted(encoded.items(), key=lambda kv: content_name(kv[1])):
        paths[field_name] = write_atomic(folder, data)
    return paths


# ---------------------------------------------------------------------------- cells


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


def cell_of(run) -> dict:
    """The (dataset, metric, backbone, attribution) of a loaded run."""
    return {key: str(value) for key, value in run.cell.items()}


class _Indexed(torch.utils.data.Dataset):
    """Items of ``dataset`` at ``indices``, each tagged with its split index (None items stay None)."""

    def __init__(self, dataset, indices: list[int]):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        item = self.dataset[index]
        return (index, item)


def _collate(pairs: list):
    """(split indices of unreadable items, batch of the readable ones or None)."""
    from lightning_modules.data import collate_skip_none

    unreadable = [index for index, item in pairs if item is None]
    kept = [dict(item, _split_index=index) for index, item in pairs if item is not None]
    return unreadable, collate_skip_none(kept)


def iter_test_batches(datamodule, indices: list[int], batch_size: int) -> Iterator[tuple[list[int], dict | None]]:
    """Batches of the test split at ``indices``, in that order (with the data module's workers)."""
    workers = int(getattr(datamodule, "num_workers", 0) or 0)
    loader = torch.utils.data.DataLoader(_Indexed(datamodule.split("test"), indices), batch_size=batch_size,
                                         shuffle=False, num_workers=workers, collate_fn=_collate)
    yield from loader


def _score(value: float) -> float | None:
    """A stored score: NaN (undefined, e.g. an empty mask) becomes NULL."""
    return None if value != value else value


def build_cell(store, study, run, run_dir: Path, folder: Path, settings: RenderSettings, examples_per_cell: int,
               seed: int, batch_size: int, device: torch.device, progress=None) -> CellResult:
    """Fill one cell of ``study`` from a loaded finetune ``run`` up to ``examples_per_cell`` examples.

    Test images are read ``batch_size`` at a time in the seeded order; those both models
    classify correctly gather until a full batch (or the last one needed) is ready, whose
    maps, scores and PNGs are then made together and stored in one transaction.
    """
    cell = cell_of(run)
    result = CellResult(cell=cell, run=str(run_dir), target=examples_per_cell)
    have = store.example_keys(study.id, cell)
    dataset = run.datamodule.split("test")
    order = seeded_order(len(dataset), seed)
    position = {index: rank for rank, index in enumerate(order)}
    todo = [index for index in order if str(index) not in have]
    need = examples_per_cell - len(have)
    label = f"{cell['metric']} / {cell['attribution']} / {cell['backbone']}"
    task = progress.add_task(label, total=examples_per_cell, completed=min(len(have), examples_per_cell)) \
        if progress is not None else None

    needs_masks = bool(OmegaConf.select(run.cfg, "metric.needs_masks", default=False))
    original, finetuned = run.original.to(device).eval(), run.finetuned.to(device).eval()
    class_names = list(run.datamodule.class_names)

    def store_batch(pending: list[dict]) -> None:
        x = torch.stack([p["image"] for p in pending])
        y = torch.stack([p["label"] for p in pending])
        masks = torch.stack([p["mask"] for p in pending]) if "mask" in pending[0] else None
        pair = explain_and_score(original, finetuned, run.explainer, run.metric, x, y, masks)
        rendered = render_pairs(x, pair.original_maps, pair.finetuned_maps, settings)
        rows = []
        for j, p in enumerate(pending):
            paths = write_example_files(folder, rendered, j)  # files first: a row never points at nothing
            rows.append(dict(cell, source_key=str(p["index"]), position=position[p["index"]],
                             class_name=class_names[int(p["label"])], run=str(run_dir),
                             original_score=_score(float(pair.original_scores[j])),
                             finetuned_score=_score(float(pair.finetuned_scores[j])), **paths))
        store.add_examples(study.id, rows)
        result.added += len(rows)
        if task is not None:
            progress.advance(task, len(rows))

    pending: list[dict] = []
    if need > 0:
        for unreadable, batch in iter_test_batches(run.datamodule, todo, batch_size):
            if unreadable:
                result.skipped["unreadable"] += len(unreadable)
            if batch is None:
                continue
            if needs_masks and batch.get("mask") is None:
                raise BuildError(f"metric {cell['metric']} needs object masks but data {cell['dataset']} has none: "
                                 f"use a data set with masks (e.g. data=imagenet_s)")
            images, labels = batch["image"].to(device), batch["label"].to(device)
            keep, reasons = correctness(original, finetuned, images, labels)
            result.skipped.update(r for r in reasons if r is not None)
            for i in keep.nonzero().flatten()[:need - len(pending)].tolist():
                item = {"image": images[i], "label": labels[i], "index": int(batch["_split_index"][i])}
                if batch.get("mask") is not None:
                    item["mask"] = batch["mask"][i].to(device)
                pending.append(item)
            while pending and (len(pending) >= batch_size or len(pending) == need):
                chunk, pending = pending[:batch_size], pending[batch_size:]
                store_batch(chunk)
                need -= len(chunk)
            if need <= 0:
                break
        if pending:  # the test split ran out: store what there is
            store_batch(pending)
            need -= len(pending)
        result.exhausted = need > 0
    result.examples = len(store.example_keys(study.id, cell))
    result.original_mean, result.finetuned_mean = cell_means(store, study.id, cell)
    return result


def cell_means(store, study_id: int, cell: dict) -> tuple[float | None, float | None]:
    """Mean original and fine-tuned score over a cell's examples (those with a defined score)."""
    from sqlalchemy import func, select

    from ..store import Example

    with store.read() as session:
        original, finetuned = session.execute(
            select(func.avg(Example.original_score), func.avg(Example.finetuned_score))
            .filter_by(study_id=study_id, **cell)).one()
    return (None if original is None else float(original)), (None if finetuned is None else float(finetuned))


# ---------------------------------------------------------------------------- the study


def recorded_cell(run_dir: Path) -> tuple[str, str, str, str]:
    """(dataset, metric, backbone, attribution) from a run's recorded config, without loading the run."""
    cfg = OmegaConf.load(Path(run_dir) / ".hydra" / "config.yaml")
    return tuple(str(OmegaConf.select(cfg, f"{group}.name")) for group in ("data", "metric", "backbone", "attribution"))


def check_distinct_cells(run_dirs: list[Path]) -> None:
    """Two runs of one cell would share example keys: refuse before building anything."""
    seen: dict[tuple, Path] = {}
    for run_dir in run_dirs:
        key = recorded_cell(run_dir)
        if key in seen:
            raise BuildError(f"runs {seen[key]} and {run_dir} are the same cell ({' / '.join(key)}): build them "
                             f"into separate studies (run=<one run> study.name=...)")
        seen[key] = run_dir


def study_settings(cfg: DictConfig) -> dict:
    """The ``study`` group as a plain dict, with its defaults."""
    study = OmegaConf.to_container(cfg.study, resolve=True)
    return study


def _device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise BuildError(f"study.device={name!r} is not a torch device: use auto, cpu or cuda") from exc


def build_study(cfg: DictConfig, console=None, db: str | None = None) -> tuple[str, list[CellResult]]:
    """Build (or complete) the study described by ``cfg.study``; (study name, one result per cell)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..store import Store

    settings = study_settings(cfg)
    examples_per_cell = int(settings.get("examples_per_cell", 200))
    if examples_per_cell < 1:
        raise BuildError(f"study.examples_per_cell={examples_per_cell} must be at least 1")
    batch_size = int(settings.get("batch_size", 32))
    if batch_size < 1:
        raise BuildError(f"study.batch_size={batch_size} must be at least 1")
    render = RenderSettings(image_size=settings.get("image_size"), colormap=settings.get("colormap", "inferno"),
                            image_weight=float(settings.get("image_weight", 0.35)),
                            resample=settings.get("resample", "bilinear"))
    source = Path(settings["run"]) if settings.get("run") else latest_run(cfg.paths.outputs)
    run_dirs = find_runs(source)
    name = settings.get("name") or default_study_name(source)
    device = _device(settings.get("device"))
    check_distinct_cells(run_dirs)
    from lightning_modules.runs import load_finetune_run  # after the checks: torch-heavy

    store = Store.open(db or settings.get("db_url"))
    try:
        pinned = {k: settings.get(k) for k in PINNED_SETTINGS}
        image_root = Path(settings.get("image_dir") or Path(cfg.paths.outputs) / "study_images")
        study = store.get_or_create_study(
            name, config={**pinned, "examples_per_cell": examples_per_cell, "source": str(source.resolve()),
                          "runs": [str(r.resolve()) for r in run_dirs]},
            image_dir=str((image_root / slug(name)).resolve()))
        if study.source != "harmony" or not study.image_dir:
            how = f"was imported ({study.source})" if study.source != "harmony" else "has no image folder"
            raise BuildError(f"study {name!r} {how}, so build-dataset cannot add to it: give another study.name=")
        built_with = {k: (study.config or {}).get(k) for k in PINNED_SETTINGS}
        if study.config and built_with != pinned:
            changed = ", ".join(f"{k}={built_with[k]}" for k in PINNED_SETTINGS if built_with[k] != pinned[k])
            raise BuildError(f"study {name!r} was built with {changed}: rerun with those settings, "
                             f"or give a new study.name=")
        folder = Path(study.image_dir)
        folder.mkdir(parents=True, exist_ok=True)

        results = []
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=False)
        with progress:
            for run_dir in run_dirs:
                run = load_finetune_run(run_dir)
                results.append(build_cell(store, study, run, run_dir, folder, render, examples_per_cell,
                                          int(settings.get("seed", 0)), batch_size, device, progress))
        return name, results
    finally:
        store.close()


def summary_table(name: str, results: list[CellResult]):
    """A rich table: one row per cell (metric / attribution / backbone; the data set in the title)."""
    from rich.table import Table

    datasets = sorted({r.cell["dataset"] for r in results})
    table = Table(title=f"study {name} ({', '.join(datasets)})")
    for column in ("cell", "examples", "added", "skipped (why)", "original mean", "fine-tuned mean"):
        table.add_column(column, justify="left" if column in ("cell", "skipped (why)") else "right")
    for r in results:
        c = r.cell
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(r.skipped.items())) or "-"
        examples = f"{r.examples}/{r.target}" + (" (test split exhausted)" if r.exhausted else "")
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        table.add_row(f"{c['metric']} / {c['attribution']} / {c['backbone']}", examples, str(r.added), skipped,
                      fmt(r.original_mean), fmt(r.finetuned_mean))
    return table


# ---------------------------------------------------------------------------- the command


def translate_overrides(overrides: list[str]) -> list[str]:
    """``run=PATH`` (the documented short form) is ``study.run=PATH`` in the config."""
    return [f"study.{arg}" if arg.startswith("run=") else arg for arg in overrides]
