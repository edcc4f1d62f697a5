"""Which finetune runs a study is built from: a run, a multirun dir, or the latest finished one.

A run counts only when it finished (config and metrics.json) *and* kept a checkpoint:
``trainer.max_steps=0`` or removed checkpoints leave a metrics.json with nothing to load.
The run folder's layout is :mod:`lightning_modules.finetune`'s, imported (with torch) on first
use, so that importing this module checks nothing heavy before the study's settings.
"""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from .settings import BuildError


def _layout():
    """:mod:`lightning_modules.finetune`: the names of a run folder's files (METRICS_FILE, CHECKPOINT_DIR, ...)."""
    import lightning_modules.finetune as finetune  # torch: see the module's docstring

    return finetune


def checkpoint_of(run_dir: Path) -> Path:
    """The checkpoint a finished run's fine-tuned weights load from (as ``load_finetune_run`` picks it)."""
    layout = _layout()
    try:
        best = json.loads((run_dir / layout.METRICS_FILE).read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        best = None
    return run_dir / best if best else run_dir / layout.CHECKPOINT_DIR / layout.LAST_CKPT


def is_usable_run(path: Path) -> bool:
    """A finished finetune run with its checkpoint: config, metrics.json and the .ckpt are there."""
    from lightning_modules.finetune import is_finetune_run  # torch: see the module's docstring

    return is_finetune_run(path) and checkpoint_of(path).is_file()


def find_runs(path: str | Path) -> list[Path]:
    """The usable runs of ``path``: itself if it is a run, else every run directly under it (a multirun dir)."""
    path = Path(path)
    if not path.exists():
        raise BuildError(f"run={path} does not exist: give a finetune run dir (outputs/finetune/<time>) "
                         f"or a multirun dir (outputs/finetune-multirun/<time>)")
    layout = _layout()
    if layout.is_finetune_run(path):
        if not checkpoint_of(path).is_file():
            raise BuildError(f"finetune run {path} has no checkpoint ({checkpoint_of(path).relative_to(path)}): it "
                             f"trained no step; run `harmony finetune` again with trainer.max_steps of 1 or more")
        return [path]
    runs = sorted((p for p in path.iterdir() if p.is_dir() and is_usable_run(p)), key=_run_sort_key) \
        if path.is_dir() else []
    if runs:
        return runs
    raise BuildError(f"run={path} holds no finished finetune run with a checkpoint (no {layout.METRICS_FILE} and "
                     f"{layout.CHECKPOINT_DIR}/ in it or its subfolders): point run= at a finetune run dir, or run "
                     f"`harmony finetune` first")


def _run_sort_key(path: Path) -> tuple:
    # Hydra's sweep subdirs start with the job number: order 2 before 10.
    head = path.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else float("inf"), path.name)


def latest_run(outputs: str | Path) -> Path:
    """The most recently finished usable run or multirun under ``outputs`` (by its newest metrics.json)."""
    outputs, metrics_file = Path(outputs), _layout().METRICS_FILE
    candidates: list[tuple[float, Path]] = []
    for single in (outputs / "finetune").glob(f"*/{metrics_file}"):
        if is_usable_run(single.parent):
            candidates.append((single.stat().st_mtime, single.parent))
    for sweep in (outputs / "finetune-multirun").glob("*"):
        finished = [p for p in sweep.glob(f"*/{metrics_file}") if is_usable_run(p.parent)]
        if finished:
            candidates.append((max(p.stat().st_mtime for p in finished), sweep))
    if not candidates:
        raise BuildError(f"no finished finetune run with a checkpoint under {outputs}/finetune or "
                         f"{outputs}/finetune-multirun: run `harmony finetune` first, or give run=PATH")
    return max(candidates, key=lambda c: (c[0], str(c[1])))[1]


def check_recorded_originals(run_dirs: list[Path]) -> None:
    """Each run records the original it started from (``original.pt`` and its digest in the checkpoint),
    checked for every run before any is built: a one-line error names the run that does not."""
    for run_dir in run_dirs:
        _layout().check_recorded_original(checkpoint_of(run_dir))


def default_study_name(source: Path) -> str:
    """A study name from the run path: its last two parts (``finetune-multirun-2025-01-01_12-00-00``)."""
    return "-".join(Path(source).resolve().parts[-2:])


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
