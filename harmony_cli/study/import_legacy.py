"""``harmony import-legacy``: bring a study made with the original HARMONY Django app into the store.

The original app kept its study in a Django SQLite database (tables
``relevavance_*`` and ``auth_user``) and was seeded from Django fixtures
(``dataset.json``, ``experiment.json``, ``cnnmodel.json``,
``relevancymethod.json``, ``example.json``). Either can be imported. Names
are mapped to harmony's config names, ``learn`` becomes ``finetuned``,
duplicate submissions are collapsed to the latest, and the whole import is
one transaction that a second run leaves unchanged.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional


from ..errors import UserError

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


class LegacyFormatError(UserError):
    """The path is not a database or fixtures folder of the original HARMONY app."""


@dataclass
class LegacyStudy:
    """The original app's study, read from its database or fixtures; ids are the legacy primary keys."""

    names: dict[str, dict[int, str]]        # dataset/experiment/cnnmodel/relevancymethod: pk -> name
    # pk, dataset, experiment, cnnmodel, relevancymethod (legacy pks), image, original, learn, prediction
    examples: list[dict]
    users: dict[int, str] = field(default_factory=dict)   # pk -> username
    labels: list[tuple[int, int, int, str]] = field(default_factory=list)  # (pk, user, example, choice)
    format: str = "sqlite"


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


# reading the original app's data ------------------------------------------------------------


def _not_harmony(path: Path, why: str) -> LegacyFormatError:
    return LegacyFormatError(f"{path} is not a study of the original HARMONY app ({why}): give import-legacy its "
                             f"SQLite database (db.sqlite3) or its Django fixtures folder")


def read_legacy_sqlite(path: Path) -> LegacyStudy:
    """Read the original app's SQLite database without writing to it."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _not_harmony(path, f"cannot open it: {exc}") from exc
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise _not_harmony(path, f"not an SQLite database: {exc}") from exc
        if "relevavance_example" not in tables:
            if "harmony_meta" in tables:
                raise LegacyFormatError(f"{path} is already a harmony store, not the original app's database: use "
                                        f"it with --db {path}")
            raise _not_harmony(path, "it has no relevavance_example table")
        columns = {r[1] for r in conn.execute("PRAGMA table_info(relevavance_example)")}
        needed = {"id", "dataset_id", "experiment_id", "cnn_model_id", "relevancy_method_id", "image", "original",
                  "learn"}
        if needed - columns:
            raise _not_harmony(path, f"relevavance_example lacks {', '.join(sorted(needed - columns))}")
        names = {}
        for kind in ("dataset", "experiment", "cnnmodel", "relevancymethod"):
            names[kind] = dict(conn.execute(f"SELECT id, name FROM relevavance_{kind}"))
        prediction = "prediction" if "prediction" in columns else "''"
        examples = [
            dict(pk=r[0], dataset=r[1], experiment=r[2], cnnmodel=r[3], relevancymethod=r[4], image=r[5],
                 original=r[6], learn=r[7], prediction=r[8])
            for r in conn.execute(
                f"SELECT id, dataset_id, experiment_id, cnn_model_id, relevancy_method_id, image, original, learn, "
                f"{prediction} FROM relevavance_example ORDER BY id")
        ]
        users, labels = {}, []
        if "relevavance_label" in tables:
            labels = [tuple(r) for r in conn.execute(
                "SELECT id, user_id, example_id, choice FROM relevavance_label ORDER BY id")]
        if "auth_user" in tables:
            users = dict(conn.execute("SELECT id, username FROM auth_user"))
    except sqlite3.DatabaseError as exc:
        raise _not_harmony(path, f"unreadable: {exc}") from exc
    finally:
        conn.close()
    return LegacyStudy(names=names, examples=examples, users=users, labels=labels, format="sqlite")


def _pk(value, where: str, path: Path) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise _not_harmony(path, f"{where} refers to {value!r}, not a primary key (dump the fixtures without "
                             f"natural keys)")


def read_legacy_fixtures(folder: Path) -> LegacyStudy:
    """Read a folder of the original app's Django fixtures (every ``*.json`` in it)."""
    objects: dict[str, list[dict]] = {}
    for file in sorted(folder.glob("*.json")):
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _not_harmony(folder, f"{file.name} is not JSON: {exc}") from exc
        if not isinstance(data, list):
            raise _not_harmony(folder, f"{file.name} is not a list of Django fixture objects")
        for obj in data:
            if not (isinstance(obj, dict) and isinstance(obj.get("model"), str)
                    and isinstance(obj.get("fields"), dict)):
                raise _not_harmony(folder, f"{file.name} holds an object without model and fields")
            # "relevavance.example" -> "example"; "auth.user" -> "user"
            objects.setdefault(obj["model"].lower().rsplit(".", 1)[-1], []).append(obj)
    if not objects.get("example"):
        raise _not_harmony(folder, "no relevavance.example objects in its *.json files")
    names = {kind: {_pk(o.get("pk"), f"a {kind} object", folder): str(o["fields"].get("name", ""))
                    for o in objects.get(kind, [])}
             for kind in ("dataset", "experiment", "cnnmodel", "relevancymethod")}
    examples = []
    for o in objects["example"]:
        f = o["fields"]
        missing = {"dataset", "experiment", "cnn_model", "relevancy_method", "image", "original", "learn"} - set(f)
        if missing:
            raise _not_harmony(folder, f"example {o.get('pk')} lacks {', '.join(sorted(missing))}")
        examples.append(dict(
            pk=_pk(o.get("pk"), "an example", folder), dataset=_pk(f["dataset"], "an example's dataset", folder),
            experiment=_pk(f["experiment"], "an example's experiment", folder),
            cnnmodel=_pk(f["cnn_model"], "an example's cnn_model", folder),
            relevancymethod=_pk(f["relevancy_method"], "an example's relevancy_method", folder),
            image=f["image"], original=f["original"], learn=f["learn"], prediction=f.get("prediction", "")))
    examples.sort(key=lambda e: e["pk"])
    users = {_pk(o.get("pk"), "a user", folder): str(o["fields"].get("username", "")) for o in objects.get("user", [])}
    labels = sorted((_pk(o.get("pk"), "a label", folder), _pk(o["fields"].get("user"), "a label's user", folder),
                     _pk(o["fields"].get("example"), "a label's example", folder), str(o["fields"].get("choice", "")))
                    for o in objects.get("label", []))
    return LegacyStudy(names=names, examples=examples, users=users, labels=labels, format="fixtures")


def read_legacy(path: Path) -> LegacyStudy:
    """The original app's study at ``path``: its SQLite database or its fixtures folder."""
    path = Path(path)
    if not path.exists():
        raise LegacyFormatError(f"{path} does not exist: give import-legacy the original app's SQLite database or "
                                f"its fixtures folder")
    if path.is_dir():
        return read_legacy_fixtures(path)
    with path.open("rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise _not_harmony(path, "not an SQLite database")
    return read_legacy_sqlite(path)


# importing ------------------------------------------------------------------------------


def _copy_images(examples: list[dict], images: Optional[Path], image_dir: Path, progress: bool) -> tuple[int, int]:
    """Copy each example's three files from ``images`` into ``image_dir`` (same relative paths).

    Returns (files copied, examples of which a file is still missing). A file already there with the same
    size is not copied again; paths that would leave ``image_dir`` are not copied.
    """
    from rich.progress import track

    if images is None and not image_dir.exists():
        return 0, len(examples)
    copied, without = 0, 0
    items = track(examples, description="images", disable=not progress or images is None, transient=True)
    for example in items:
        complete = True
        for legacy_field in IMAGE_FIELDS:
            rel = example[legacy_field]
            inside = not os.path.isabs(rel) and ".." not in Path(rel).parts
            target = os.path.join(image_dir, rel) if inside else rel
            if images is not None and inside:
                source = os.path.join(images, rel)
                if os.path.isfile(source) and not (os.path.isfile(target)
                                                   and os.path.getsize(target) == os.path.getsize(source)):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    shutil.copy2(source, target)
                    copied += 1
            complete = complete and os.path.isfile(target)
        without += not complete
    return copied, without


def _check_images(images: Optional[Path]) -> None:
    if images is not None and not Path(images).is_dir():
        raise UserError(f"--images {images} is not a folder: give the folder the original app's image paths are "
                        f"relative to")


def default_image_dir(study: str) -> Path:
    """Where an imported study's images go: ``<study.image_dir>/<study>`` of the config (outputs/study_images)."""
    from ..hydra_app import compose_config

    cfg = compose_config([], task="import_legacy", resolve=True)
    return Path(cfg.study.image_dir) / study


def import_legacy(store, path: Path, images: Optional[Path] = None, study: Optional[str] = None,
                  image_dir: Optional[Path] = None, progress: bool = False,
                  legacy: Optional[LegacyStudy] = None) -> ImportReport:
    """Import the original app's study at ``path`` into ``store`` in one transaction.

    ``images``: the folder the legacy image paths are relative to (copied into ``image_dir``, by default
    ``outputs/study_images/<study>``). ``legacy``: the data if read already. Returns what was done;
    importing the same data again adds nothing.
    """
    from sqlalchemy import func, select

    from ..store import Annotator, Example, StoreError, Study

    path = Path(path)
    legacy = legacy or read_legacy(path)
    name = study or path.stem
    _check_images(images)
    image_dir = Path(image_dir or default_image_dir(name)).resolve()
    report = ImportReport(study=name, format=legacy.format, image_dir=str(image_dir))

    # Examples, with names mapped; unknown names are kept and reported.
    unknown: dict[str, set[str]] = {}
    rows, pk_of_row = [], []
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
        pk_of_row.append(example["pk"])
    positions = Counter()
    for row in rows:  # order within a cell: the legacy order
        key = tuple(row[f] for f in CELL_SOURCES)
        row["position"] = positions[key]
        positions[key] += 1
    report.unknown_names = {kind: sorted(names) for kind, names in unknown.items()}
    report.examples, report.cells = len(rows), len(positions)

    # Labels: map choices, drop rows that point nowhere, collapse duplicates to the latest (highest pk).
    report.label_rows = len(legacy.labels)
    example_pks = set(pk_of_row)
    latest: dict[tuple[int, int], str] = {}
    for _, user, example, choice in legacy.labels:  # sorted by pk: later rows overwrite earlier
        mapped = CHOICE_NAMES.get(choice.strip().lower())
        if mapped is None:
            report.labels_skipped[f"unknown choice {choice!r}"] += 1
        elif example not in example_pks:
            report.labels_skipped["the example does not exist"] += 1
        else:
            if (user, example) in latest:
                report.duplicates_collapsed += 1
            latest[(user, example)] = mapped

    with store.write() as session:
        found = session.scalar(select(Study).where(Study.name == name))
        if found is not None and found.source != "legacy":
            raise StoreError(f"study {name!r} exists already and was not imported from the original app: choose "
                             f"another name with --study")
        if found is None:
            found = Study(name=name, source="legacy", image_dir=str(image_dir),
                          config={"imported_from": str(path.resolve()), "format": legacy.format})
            session.add(found)
            session.flush()
        study_id = found.id
        report.image_dir = found.image_dir or str(image_dir)
        count = select(func.count(Example.id)).where(Example.study_id == study_id)
        before = session.scalar(count)
        example_ids = store.add_examples(study_id, rows, session=session)
        report.examples_added = session.scalar(count) - before
        id_of_pk = dict(zip(pk_of_row, example_ids))

        # Annotators: the users with labels, inactive and without a password; reused by name.
        annotator_ids = {}
        for user in sorted({u for u, _ in latest}):
            username = legacy.users.get(user) or f"legacy_user_{user}"
            annotator = session.scalar(select(Annotator).where(Annotator.name == username))
            if annotator is None:
                annotator = Annotator(name=username, password_hash=None, is_admin=False, active=False,
                                      simulated=False)
                session.add(annotator)
                session.flush()
                report.annotators_created.append(username)
            else:
                report.annotators_existing.append(username)
            annotator_ids[user] = annotator.id

        counts = store.add_labels(
            [dict(annotator_id=annotator_ids[u], example_id=id_of_pk[e], choice=c) for (u, e), c in latest.items()],
            source="import", session=session)
        report.labels_added, report.labels_kept = counts["added"], counts["kept"]
        report.labels_kept_different = counts["kept_different"]

    report.images_copied, report.examples_without_images = _copy_images(
        legacy.examples, Path(images) if images else None, Path(report.image_dir), progress)
    return report
