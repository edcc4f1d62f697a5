"""``harmony build-dataset``: the paired-map study from one or more fine-tuning runs.

Each finetune run becomes a *cell* (dataset, metric, backbone, attribution) of a
study. For held-out test images that both the original and the fine-tuned
model classify correctly, in a seeded order, both models' maps for the true
class are rendered to PNGs (content-hash names: no path says which map is
which) and stored as an example with both models' metric scores
(:mod:`.cells`). Cells of the same data, backbone and attribution use disjoint
images unless ``study.disjoint_images=false``.

Everything that can be checked is checked before anything is written, the cheap
checks before torch is imported (settings, runs and their checkpoints, the study's
recorded settings, the image folder), then each run's recorded original and a
writable image folder; the study row is created with its first examples
(:mod:`.study_row`). The original maps come from the original each run recorded
(``original.pt``): build-dataset never rebuilds or trains a base model. A build that
fails before storing anything leaves no study, no image folder and no new store file.

Resumable and idempotent: an example's files are written (atomically) before
its row, rows are keyed by (study, cell, test-split index), and already stored
keys are skipped, so an interrupted build completes on the next run and a
complete one adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from ..console import LoggedProgress
from ..store import Store
from .files import (check_study_name, check_writable_folder, file_write_failure, missing_folders, remove_empty_folders,
                    study_folder)
from .runs import check_distinct_cells, check_recorded_originals, default_study_name, find_runs, latest_run
from .settings import BuildError, StudySettings, pre_registered_rule
from .study_row import StudyRow

if TYPE_CHECKING:  # torch is imported once the cheap checks have passed
    import torch

    from .cells import CellResult


@dataclass
class BuildOutcome:
    """What a build did: the study's name, one result per cell, how images were drawn, where they are."""

    name: str
    results: list["CellResult"]
    disjoint_images: bool
    image_dir: str


def device_of(name: str) -> "torch.device":
    """``study.device``: auto (cuda when available), cpu, cuda, cuda:1, ..."""
    import torch  # torch: build-dataset checks settings, runs and store before it loads

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise BuildError(f"study.device={name!r} is not a torch device: use auto, cpu or cuda") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BuildError(f"study.device={name} but this machine has no CUDA device: use study.device=auto or cpu")
    return device


def build_study(cfg: DictConfig, console=None, db: Optional[str] = None) -> BuildOutcome:
    """Build (or complete) the study described by ``cfg.study``."""
    settings = StudySettings.from_config(cfg.study)
    source = Path(settings.run) if settings.run else latest_run(cfg.paths.outputs)
    run_dirs = find_runs(source)
    check_distinct_cells(run_dirs)
    name = check_study_name(settings.name or default_study_name(source))
    image_dir = study_folder(settings.image_root(cfg.paths.outputs), name)
    config = {**settings.pinned(), **pre_registered_rule(settings, cfg.analysis.settings),
              "source": str(source.resolve()), "runs": [str(r.resolve()) for r in run_dirs]}
    with Store.open_for_command(db or settings.db_url) as store:
        study = StudyRow.open(store, name, settings, config, image_dir)
        created = missing_folders(study.image_dir)
        try:
            device = device_of(settings.device)
            check_recorded_originals(run_dirs)
            check_writable_folder(study.image_dir, "study.image_dir")
            outcome = BuildOutcome(name, [], settings.disjoint_images, str(study.image_dir))
            _build_cells_or_say_why(study, run_dirs, settings, device, outcome, console)
            if study.id is None:
                raise BuildError(f"no test image of {source} is classified correctly by both models, so study "
                                 f"{name!r} would be empty: fine-tune longer, or check the runs' data")
            return outcome
        finally:
            if study.id is None:  # nothing stored: not even an empty folder stays
                remove_empty_folders(created)


def _build_cells_or_say_why(study: StudyRow, run_dirs: list[Path], settings: StudySettings, device,
                            outcome: BuildOutcome, console) -> None:
    """:func:`_build_cells`, with a full or read-only image folder said in one line."""
    try:
        _build_cells(study, run_dirs, settings, device, outcome, console)
    except Exception as exc:
        # (a full or read-only store is already one line: the store says so itself)
        error = file_write_failure(exc, study.image_dir, "free space there or give study.image_dir=PATH")
        if error is None:
            raise
        raise error from exc


def _build_cells(study: StudyRow, run_dirs: list[Path], settings: StudySettings, device: "torch.device",
                 outcome: BuildOutcome, console) -> None:
    """One cell per run, in order, with a progress bar per cell."""
    from lightning_modules.finetune import load_finetune_run  # torch: loaded after every check

    from .cells import CellJob, build_cell  # torch: as above

    progress = LoggedProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console, transient=False)
    with progress:
        for number, run_dir in enumerate(run_dirs, 1):
            if console is not None and not console.is_terminal:  # a log's line while the run loads
                console.print(f"cell {number}/{len(run_dirs)}: loading {run_dir}", highlight=False)
            job = CellJob(study, load_finetune_run(run_dir), run_dir, settings, device)
            outcome.results.append(build_cell(job, progress))
