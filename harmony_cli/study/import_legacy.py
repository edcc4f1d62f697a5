"""``harmony import-legacy``: bring a study made with the original HARMONY Django app into the store.

Either the original app's SQLite database or its Django fixtures can be imported
(:mod:`.legacy_format` reads them). Names are mapped to harmony's config names,
``learn`` becomes ``finetuned``, duplicate submissions are collapsed to the latest,
each metric's direction is recorded from its class, and the whole import is one
transaction that a second run leaves unchanged.

Nothing is written outside the study's image folder: the study name must be a plain
name, every legacy image path must stay inside the folders it is relative to, and a
link in ``--images`` that leads out of it is refused before anything is written.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

from hydra.utils import get_class
from omegaconf import OmegaConf
from rich.progress import track
from sqlalchemy import func, select

from ..errors import UserError
from ..hydra_app import CONFIG_DIR, compose_config
from ..store import Annotator, Example, StoreError, Study
from .files import check_study_name, file_write_failure, write_atomic
from .legacy_format import LegacyStudy, _not_harmony, read_legacy

# The original app's names -> harmony's config names (conf/<group>/<name>.yaml).
METRIC_NAMES = {
    "ROADLearnableMetric": "road",
    "IROFLearnableMetric": "irof",
    "ISLearnableMetric": "ris",
    "FocusLearnableMetric": "focus",
    "IoULearnableMetric": "rma",
}
BACKBONE_NAMES = {"VGG": "vgg16", "ResNet": "resnet18"}
ATTRIBUTION_NAMES = {
    "GradCamAttributor": "gradcam",
    "GuidedBackpropAttributor": "guided_backprop",
    "ExcitationBackpropAttributor": "excitation_backprop",
}
DATASET_NAMES = {"ImageNet": "imagenet"}
CHOICE_NAMES = {"learn": "finetuned", "original": "original", "neither": "neither"}
# Which legacy table/fixture each cell field comes from, with its name map.
CELL_SOURCES = {
    "dataset": ("dataset", DATASET_NAMES),
    "metric": ("experiment", METRIC_NAMES),
    "backbone": ("cnnmodel", BACKBONE_NAMES),
    "attribution": ("relevancymethod", ATTRIBUTION_NAMES),
}
# The three files of an example, legacy field -> harmony Example column.
IMAGE_FIELDS = {"image": "image_path", "original": "original_map_path", "learn": "finetuned_map_path"}


@dataclass
class ImportReport:
    study: str
    format: str
    examples: int = 0
    examples_added: int = 0
    cells: int = 0
    annotators_created: list[str] = field(default_factory=list)
    annotators_existing: list[str] = field(default_factory=list)
    label_rows: int = 0
    duplicates_collapsed: int = 0
    labels_added: int = 0
    labels_kept: int = 0
    labels_kept_different: int = 0
    labels_skipped: Counter = field(default_factory=Counter)   # reason -> count
    unknown_names: dict[str, list[str]] = field(default_factory=dict)
    image_dir: Optional[str] = None
    images_copied: int = 0
    examples_without_images: int = 0

    def lines(self) -> list[str]:
        """The report as short lines for the terminal."""
        out = [f"study {self.study!r} ({self.format}): {self.examples} examples in {self.cells} cells, "
               f"{self.examples_added} new"]
        if self.annotators_created or self.annotators_existing:
            out.append(f"annotators: {len(self.annotators_created)} created, {len(self.annotators_existing)} already "
                       f"in the store")
        if self.annotators_created:
            out.append(f"  new: {', '.join(self.annotators_created)} (inactive, no password: `harmony annotators "
                       f"set-password NAME` and `harmony annotators activate NAME` let one annotate again)")
        out.append(f"labels: {self.label_rows} rows read, {self.duplicates_collapsed} duplicates collapsed to the "
                   f"latest, {self.labels_added} new, {self.labels_kept} already in the store")
        if self.labels_kept_different:
            out.append(f"  {self.labels_kept_different} labels in the store differ from the legacy file and were "
                       f"kept as they are")
        for reason, n in sorted(self.labels_skipped.items()):
            out.append(f"  {n} label rows skipped: {reason}")
        for kind, names in sorted(self.unknown_names.items()):
            out.append(f"unknown {kind} names kept as they are: {', '.join(names)}")
        out.append(f"images: {self.images_copied} files copied to {self.image_dir}; "
                   f"{self.examples_without_images} examples without images")
        return out


@dataclass
class PreparedImport:
    """What the import stores, prepared before the store is touched."""

    name: str
    source: Path
    format: str
    image_dir: Path                     # where the study's images are (or go)
    rows: list[dict]                    # examples, as Store.add_examples takes them
    example_pks: list[int]              # the legacy pk of each row
    labels: dict[tuple[int, int], str]  # (legacy user, legacy example) -> choice, the latest of each pair
    users: dict[int, str]
    higher_is_better: dict[str, bool]   # per metric of the study that harmony knows
    admins: frozenset[int] = frozenset()  # legacy users who were superusers: imported as admins (inactive)


def example_rows(legacy: LegacyStudy, path: Path, report: ImportReport) -> tuple[list[dict], list[int]]:
    """Each legacy example as a store row (names mapped; unknown names kept and reported), with its pk."""
    unknown: dict[str, set[str]] = {}
    rows, pks = [], []
    for example in legacy.examples:
        cell = {}
        for cell_field, (kind, mapping) in CELL_SOURCES.items():
            legacy_name = legacy.names.get(kind, {}).get(example[kind])
            if legacy_name is None:
                raise _not_harmony(path, f"example {example['pk']} refers to {kind} {example[kind]}, which is missing")
            if legacy_name not in mapping:
                unknown.setdefault(kind, set()).add(legacy_name)
            cell[cell_field] = mapping.get(legacy_name, legacy_name)
        rows.append(dict(cell, source_key=str(example["pk"]), class_name=example["prediction"] or "",
                         **{column: example[legacy_field] for legacy_field, column in IMAGE_FIELDS.items()}))
        pks.append(example["pk"])
    positions = Counter()
    for row in rows:  # order within a cell: the legacy order
        key = tuple(row[f] for f in CELL_SOURCES)
        row["position"] = positions[key]
        positions[key] += 1
    report.unknown_names = {kind: sorted(names) for kind, names in unknown.items()}
    report.examples, report.cells = len(rows), len(positions)
    return rows, pks


def latest_labels(legacy: LegacyStudy, example_pks: set[int], report: ImportReport) -> dict[tuple[int, int], str]:
    """Choices mapped, rows that point nowhere dropped, duplicates collapsed to the latest (highest pk)."""
    report.label_rows = len(legacy.labels)
    latest: dict[tuple[int, int], str] = {}
    for _, user, example, choice in legacy.labels:  # sorted by pk: later rows overwrite earlier
        mapped = CHOICE_NAMES.get(choice.strip().lower())
        if mapped is None:
            report.labels_skipped[f"unknown choice {choice!r}"] += 1
        elif example not in example_pks:
            report.labels_skipped["the example does not exist"] += 1
        else:
            report.duplicates_collapsed += (user, example) in latest
            latest[(user, example)] = mapped
    return latest


def metric_directions(metrics: set[str]) -> dict[str, bool]:
    """metric name -> ``higher_is_better`` of the class conf/metric/<name>.yaml names; unknown metrics left out."""
    directions = {}
    for name in sorted(metrics):
        path = CONFIG_DIR / "metric" / f"{name}.yaml"
        if not re.fullmatch(r"\w+", name) or not path.is_file():
            continue  # a metric harmony has no config for (kept by name, reported as unknown)
        cfg = OmegaConf.load(path)
        target = OmegaConf.select(cfg, "metric._target_") or OmegaConf.select(cfg, "_target_")
        if target:
            directions[name] = bool(get_class(target).higher_is_better)
    return directions


def check_image_paths(examples: list[dict], images: Optional[Path], image_dir: Path) -> None:
    """Refuse, in one line, any legacy image path that would read or write outside its folder.

    A path must be relative without ``..``; with ``images``, what it names there (links
    followed) must lie inside ``images``; in ``image_dir`` it must not lead out through a link.
    """
    images_root = images.resolve() if images is not None else None
    study_root = image_dir.resolve()
    for example in examples:
        for legacy_field in IMAGE_FIELDS:
            rel = example[legacy_field]
            if not rel:
                continue
            parts = PurePosixPath(rel.replace("\\", "/")).parts
            if "\x00" in rel or PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).drive or ".." in parts:
                raise UserError(f"example {example['pk']}: image path {rel!r} is not a relative path inside the "
                                f"image folder: the import refuses it (correct the legacy data)")
            if images_root is not None and os.path.lexists(images_root / rel) \
                    and not (images_root / rel).resolve().is_relative_to(images_root):
                raise UserError(f"--images {images}: {rel} is a link to {(images_root / rel).resolve()}, outside "
                                f"the folder: the import refuses it (copy the file into the folder instead)")
            if not (study_root / rel).resolve().is_relative_to(study_root):
                raise UserError(f"{image_dir}: {rel} leads out of the study's image folder through a link: remove "
                                f"the link")


def copy_images(examples: list[dict], images: Optional[Path], image_dir: Path, progress: bool) -> tuple[int, int]:
    """Copy each example's three files from ``images`` into ``image_dir`` (same relative paths), atomically.

    Returns (files copied, examples of which a file is still missing). A file already there with the
    same size is not copied again. The paths were checked by :func:`check_image_paths`.
    """
    if images is None and not image_dir.exists():
        return 0, len(examples)
    copied, without = 0, 0
    for example in track(examples, description="images", disable=not progress or images is None, transient=True):
        complete = True
        for legacy_field in IMAGE_FIELDS:
            rel = example[legacy_field]
            target = image_dir / rel
            source = images / rel if images is not None and rel else None
            if source is not None and source.is_file() and not (
                    target.is_file() and target.stat().st_size == source.stat().st_size):
                write_atomic(target, source.read_bytes())
                copied += 1
            complete = complete and bool(rel) and target.is_file()
        without += not complete
    return copied, without


def check_images_folder(images: Optional[Path]) -> None:
    if images is not None and not Path(images).is_dir():
        raise UserError(f"--images {images} is not a folder: give the folder the original app's image paths are "
                        f"relative to")


def default_image_dir(study: str) -> Path:
    """Where an imported study's images go: ``<study.image_dir>/<study>`` of the config (outputs/study_images)."""
    cfg = compose_config([], task="import_legacy", resolve=True)
    return Path(cfg.study.image_dir) / study


def prepare_import(store, path: Path, legacy: LegacyStudy, images: Optional[Path], study: Optional[str],
                   image_dir: Optional[Path], report: ImportReport) -> PreparedImport:
    """Everything checked and mapped before the store is written: names, paths, labels, directions."""
    name = check_study_name(study or path.stem, "--study")
    check_images_folder(images)
    found = store.study(name)
    folder = Path(found.image_dir) if found is not None and found.image_dir else \
        Path(image_dir or default_image_dir(name)).resolve()
    report.study, report.image_dir = name, str(folder)
    check_image_paths(legacy.examples, images, folder)
    rows, pks = example_rows(legacy, path, report)
    labels = latest_labels(legacy, set(pks), report)
    return PreparedImport(name=name, source=path, format=legacy.format, image_dir=folder, rows=rows,
                          example_pks=pks, labels=labels, users=legacy.users, admins=frozenset(legacy.admins),
                          higher_is_better=metric_directions({row["metric"] for row in rows}))


def import_legacy(store, path: Path, images: Optional[Path] = None, study: Optional[str] = None,
                  image_dir: Optional[Path] = None, progress: bool = False,
                  legacy: Optional[LegacyStudy] = None) -> ImportReport:
    """Import the original app's study at ``path`` into ``store`` in one transaction.

    ``images``: the folder the legacy image paths are relative to (copied into ``image_dir``, by default
    ``outputs/study_images/<study>``). ``legacy``: the data if read already. Returns what was done;
    importing the same data again adds nothing.
    """
    path = Path(path)
    legacy = legacy or read_legacy(path)
    report = ImportReport(study="", format=legacy.format)
    prepared = prepare_import(store, path, legacy, Path(images) if images else None, study, image_dir, report)
    store_import(store, prepared, report)
    try:
        report.images_copied, report.examples_without_images = copy_images(
            legacy.examples, Path(images) if images else None, prepared.image_dir, progress)
    except OSError as exc:
        error = file_write_failure(exc, prepared.image_dir, "the study and its labels are imported; free space "
                                                            "and run the same import-legacy again to copy the rest")
        if error is None:
            raise
        raise error from exc
    return report


def store_import(store, prepared: PreparedImport, report: ImportReport) -> None:
    """The study, its examples, the annotators with labels and their labels, in one transaction."""
    with store.write() as session:
        study = _legacy_study(session, prepared)
        count = select(func.count(Example.id)).where(Example.study_id == study.id)
        before = session.scalar(count)
        example_ids = store.add_examples(study.id, prepared.rows, session=session)
        report.examples_added = session.scalar(count) - before
        id_of_pk = dict(zip(prepared.example_pks, example_ids))
        annotator_ids = _annotators(session, prepared, report)
        counts = store.add_labels(
            [dict(annotator_id=annotator_ids[u], example_id=id_of_pk[e], choice=c)
             for (u, e), c in prepared.labels.items()], source="import", session=session)
        report.labels_added, report.labels_kept = counts["added"], counts["kept"]
        report.labels_kept_different = counts["kept_different"]


def _legacy_study(session, prepared: PreparedImport):
    """The imported study's row: found (and given the metrics' directions) or created."""
    found = session.scalar(select(Study).where(Study.name == prepared.name))
    if found is not None and found.source != "legacy":
        raise StoreError(f"study {prepared.name!r} exists already and was not imported from the original app: "
                         f"choose another name with --study")
    if found is None:
        # Closed to new labels (source "legacy": see harmony_cli.store.study_rules); labels_per_example is
        # what the study had, its most common number of labels per example, so that its cells read as complete.
        per_example = Counter(Counter(example for _, example in prepared.labels).values())
        found = Study(name=prepared.name, source="legacy", image_dir=str(prepared.image_dir),
                      config={"imported_from": str(prepared.source.resolve()), "format": prepared.format,
                              **({"labels_per_example": per_example.most_common(1)[0][0]} if per_example else {})})
        session.add(found)
    recorded = dict((found.config or {}).get("higher_is_better") or {})
    if any(recorded.get(k) != v for k, v in prepared.higher_is_better.items()):
        found.config = {**(found.config or {}), "higher_is_better": {**recorded, **prepared.higher_is_better}}
    session.flush()
    return found


def _annotators(session, prepared: PreparedImport, report: ImportReport) -> dict[int, int]:
    """legacy user pk -> annotator id, for the users with labels: created inactive without a password (an admin
    where the original app's user was a superuser, so the analysis can mark them), or reused."""
    ids = {}
    for user in sorted({u for u, _ in prepared.labels}):
        username = prepared.users.get(user) or f"legacy_user_{user}"
        annotator = session.scalar(select(Annotator).where(Annotator.name == username))
        if annotator is None:
            annotator = Annotator(name=username, password_hash=None, is_admin=user in prepared.admins, active=False,
                                  simulated=False)
            session.add(annotator)
            session.flush()
            report.annotators_created.append(username)
        else:
            report.annotators_existing.append(username)
        ids[user] = annotator.id
    return ids
