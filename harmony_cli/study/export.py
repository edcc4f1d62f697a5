"""Export a study's labels: CSV, JSON lines, Parquet, or Label Studio's JSON export.

One row per label (the annotator's current answer for an example): a stable annotator pseudonym
(``annotator-<store id>``; the login name only when asked for), the example and its cell, the class
name, the choice (original | finetuned | neither), the side shown (``left_map``: which map was on
the left, where the page recorded it) and which side was picked, the response time, the label's
created/updated timestamps (ISO 8601, UTC), both metric scores where present, and ``simulated``
(labels of accounts made by ``harmony simulate-annotators``) so simulated answers are never taken
for people's. Nothing about accounts beyond the pseudonym (or name) leaves the store: no password
hashes, no admin flags.

The store's :meth:`Store.labels_frame` lacks the class name, the timestamps and the map paths, so
this module reads the store's ORM models itself, read-only, in one query (:func:`labels_table`).

Label Studio shape (followed from Label Studio's documentation, "Label Studio JSON format of
annotated tasks", https://labelstud.io/guide/task_format.html, and the Choices tag,
https://labelstud.io/tags/choices.html, whose results read
``{"from_name", "to_name", "type": "choices", "value": {"choices": [...]}}``): a JSON list of
tasks, each ``{"id", "data", "annotations": [...], "meta"}``; each annotation
``{"id", "result": [one Choices result], "completed_by", "created_at", "updated_at",
"lead_time" (seconds), "was_cancelled", "ground_truth", "task"}``. ``data`` holds the image and the
two maps as the annotator saw them, ``map_a`` (left) and ``map_b`` (right), with the choices
"Map A", "Map B", "Neither" of :data:`LABEL_CONFIG`. Since the page draws the order per annotator,
labels are grouped into one task per (example, order seen); a label whose side was not recorded
(imported studies) goes to a task in a fixed order derived from the example id, and its task says
``side_recorded: false``. Which map is the original travels only in the task's ``meta`` (the key
for analysis), never in ``data``, which is what Label Studio shows annotators: map paths whose
names say which map they are (imported studies keep the original app's ``_original``/``_learn``
file names) are left out, and the task says ``maps_withheld: true``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import select

from ..defaults import outputs_root
from ..errors import UserError
from ..outputs import check_file_target, write_file, write_new_file
from ..store import Annotator, Example, Label

FORMATS = ("csv", "jsonl", "parquet", "label-studio")
SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet", "label-studio": ".json"}
COLUMNS = (
    "label_id", "study", "example_id", "dataset", "metric", "backbone", "attribution", "class_name",
    "annotator", "simulated", "choice", "left_map", "chosen_side", "response_ms", "created_at",
    "updated_at", "original_score", "finetuned_score",
)
# Label Studio labeling config matching the tasks written here (choices in the page's order).
LS_CHOICES = ("Map A", "Map B", "Neither")
LS_FROM_NAME, LS_TO_NAME = "preference", "map_a"
LABEL_CONFIG = f"""<View>
  <Header value="Which map explains the prediction $class_name better?"/>
  <Image name="image" value="$image"/>
  <Image name="map_a" value="$map_a"/>
  <Image name="map_b" value="$map_b"/>
  <Choices name="{LS_FROM_NAME}" toName="{LS_TO_NAME}" choice="single-radio" showInline="true">
{chr(10).join(f'    <Choice value="{c}"/>' for c in LS_CHOICES)}
  </Choices>
</View>
"""


def pseudonym(annotator_id: int) -> str:
    """A stable pseudonym: the same account gets the same one in every export of this store."""
    return f"annotator-{annotator_id}"


def _iso(value) -> str | None:
    """A timestamp as ISO 8601 in UTC (SQLite hands back naive datetimes, stored as UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def _chosen_side(choice: str, left_map: str | None) -> str | None:
    """left | right | neither; None when the side shown was not recorded."""
    if choice == "neither":
        return "neither"
    if left_map is None:
        return None
    return "left" if choice == left_map else "right"


def _study_or_fail(store, study: str):
    found = store.study(study)
    if found is None:
        names = ", ".join(s.name for s in store.studies()) or "none yet"
        raise UserError(f"no study {study!r} in {store.url}: studies: {names} (see `harmony studies`)")
    return found


# A stored map path that says which map it is (the original app named files `..._original.png` and
# `..._learn.png`; imported studies keep those names) is withheld from what annotators would see.
REVEALING = ("orig", "learn", "finetun", "fine_tun", "fine-tun")


def _shown_path(image_dir: str | None, relative: str | None) -> str | None:
    """The path Label Studio gets for a map, or None when its name would unblind the pair."""
    if relative is None or any(word in relative.lower() for word in REVEALING):
        return None
    return os.path.join(image_dir, relative) if image_dir else relative


def labels_table(store, study: str, names: bool = False) -> list[dict]:
    """Every label of ``study`` as a dict (keys: :data:`COLUMNS`, plus ``annotator_name`` with
    ``names``, and the private keys ``_annotator_id``, ``_image``, ``_original_map``,
    ``_finetuned_map`` for the Label Studio tasks), in label order. Read-only."""
    found = _study_or_fail(store, study)
    query = (
        select(Label.id, Label.example_id, Example.dataset, Example.metric, Example.backbone,
               Example.attribution, Example.class_name, Label.annotator_id, Annotator.name,
               Annotator.simulated, Label.choice, Label.left_map, Label.response_ms, Label.created_at,
               Label.updated_at, Example.original_score, Example.finetuned_score, Example.image_path,
               Example.original_map_path, Example.finetuned_map_path)
        .join(Example, Example.id == Label.example_id)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Example.study_id == found.id)
        .order_by(Label.id)
    )
    rows = []
    with store.engine.connect() as conn:  # Core rows: no ORM identity map for tens of thousands of labels
        for r in conn.execute(query):
            row = {"label_id": r[0], "study": found.name, "example_id": r[1], "dataset": r[2], "metric": r[3],
                   "backbone": r[4], "attribution": r[5], "class_name": r[6], "annotator": pseudonym(r[7]),
                   "simulated": bool(r[9]), "choice": r[10], "left_map": r[11],
                   "chosen_side": _chosen_side(r[10], r[11]), "response_ms": r[12],
                   "created_at": _iso(r[13]), "updated_at": _iso(r[14]), "original_score": r[15],
                   "finetuned_score": r[16]}
            if names:
                row["annotator_name"] = r[8]
            row["_annotator_id"] = r[7]
            row["_image_dir"] = found.image_dir
            row["_image"], row["_original_map"], row["_finetuned_map"] = r[17:20]
            rows.append(row)
    return rows


def _public(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("_")}


def _frame(rows: list[dict], names: bool):
    columns = list(COLUMNS) + (["annotator_name"] if names else [])
    frame = pd.DataFrame([_public(r) for r in rows], columns=columns)
    # nullable integers: a missing response time stays missing instead of turning the column to floats
    for column in ("label_id", "example_id", "response_ms"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _write_csv(rows, path: Path, names: bool) -> None:
    _frame(rows, names).to_csv(path, index=False)


def _write_jsonl(rows, path: Path, names: bool) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(_public(row), ensure_ascii=False) + "\n")


def _write_parquet(rows, path: Path, names: bool) -> None:
    try:
        import pyarrow  # noqa: F401  (an optional extra, for --format parquet only)
    except ImportError as exc:
        raise UserError("--format parquet needs pyarrow: pip install 'harmony[parquet]' (or use --format csv)") from exc
    _frame(rows, names).to_parquet(path, index=False)


def _left_is_original(row: dict) -> bool:
    """The order of a task's maps: as seen where recorded, else fixed by the example id."""
    if row["left_map"] is not None:
        return row["left_map"] == "original"
    return row["example_id"] % 2 == 0


def _ls_choice(choice: str, left_is_original: bool) -> str:
    if choice == "neither":
        return "Neither"
    return "Map A" if (choice == "original") == left_is_original else "Map B"


def _ls_task(task_id: int, first: dict, left_is_original: bool) -> dict:
    image_dir = first["_image_dir"]
    original, finetuned = (_shown_path(image_dir, first[k]) for k in ("_original_map", "_finetuned_map"))
    withheld = (original is None) != (first["_original_map"] is None) or \
        (finetuned is None) != (first["_finetuned_map"] is None)
    if withheld:  # both or neither: one path alone would tell which map the other is
        original = finetuned = None
    left, right = (original, finetuned) if left_is_original else (finetuned, original)
    image = first["_image"] and os.path.join(image_dir or "", first["_image"])
    data = {"image": image, "map_a": left, "map_b": right, "class_name": first["class_name"],
            "example_id": first["example_id"], "dataset": first["dataset"], "metric": first["metric"],
            "backbone": first["backbone"], "attribution": first["attribution"],
            "side_recorded": first["left_map"] is not None, "maps_withheld": withheld}
    key = {"map_a": "original" if left_is_original else "finetuned",
           "map_b": "finetuned" if left_is_original else "original",
           "original_score": first["original_score"], "finetuned_score": first["finetuned_score"],
           "annotators": {}}
    return {"id": task_id, "data": data, "annotations": [], "meta": {"harmony": key}}


def _ls_annotation(annotation_id: int, task_id: int, row: dict, left_is_original: bool) -> dict:
    result = {"id": f"r{row['label_id']}", "from_name": LS_FROM_NAME, "to_name": LS_TO_NAME,
              "type": "choices", "origin": "manual",
              "value": {"choices": [_ls_choice(row["choice"], left_is_original)]}}
    lead_time = None if row["response_ms"] is None else row["response_ms"] / 1000
    return {"id": annotation_id, "result": [result], "completed_by": row["_annotator_id"],
            "created_at": row["created_at"], "updated_at": row["updated_at"], "lead_time": lead_time,
            "was_cancelled": False, "ground_truth": False, "task": task_id}


def label_studio_tasks(rows: list[dict]) -> list[dict]:
    """Label Studio tasks: one per (example, map order seen), each with its labels as annotations."""
    tasks: dict[tuple[int, bool, bool], dict] = {}
    for annotation_id, row in enumerate(sorted(rows, key=lambda r: (r["example_id"], r["label_id"])), start=1):
        left_is_original = _left_is_original(row)
        group = (row["example_id"], left_is_original, row["left_map"] is not None)
        if group not in tasks:
            tasks[group] = _ls_task(len(tasks) + 1, row, left_is_original)
        task = tasks[group]
        task["annotations"].append(_ls_annotation(annotation_id, task["id"], row, left_is_original))
        who = {"annotator": row["annotator"], "simulated": row["simulated"]}
        if "annotator_name" in row:
            who["annotator_name"] = row["annotator_name"]
        task["meta"]["harmony"]["annotators"][str(row["_annotator_id"])] = who
    return list(tasks.values())


def _write_label_studio(rows, path: Path, names: bool) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(label_studio_tasks(rows), handle, ensure_ascii=False, indent=1)


WRITERS: dict[str, Callable[[list[dict], Path, bool], None]] = {
    "csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet, "label-studio": _write_label_studio,
}


def default_path(study: str, fmt: str) -> Path:
    """<outputs root>/exports/<study>.<suffix> (the root: ``paths.outputs``)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in study)
    return outputs_root() / "exports" / f"{safe}{SUFFIXES[fmt]}"


def label_config_path(path: Path) -> Path:
    """Where ``--format label-studio`` writes its labeling config: beside the tasks, as ``<name>.xml``."""
    return path.with_suffix(".xml")


def export_targets(fmt: str, out: Path | None, study: str) -> list[Path]:
    """The files an export writes: the labels (``out``, default :func:`default_path`), and for Label Studio
    the labeling config beside them."""
    path = Path(out) if out is not None else default_path(study, fmt)
    return [path, label_config_path(path)] if fmt == "label-studio" else [path]


def check_export_targets(targets: list[Path], force: bool, protected: list[Path], default: bool) -> None:
    """Refuse, before anything is read, a target that is the store, a folder, an existing file (without
    ``force``), or (for ``--out``) a path whose folder does not exist."""
    for target in targets:
        check_file_target(target, "--out", force, protected)
    folder = targets[0].parent
    if not default and not folder.is_dir():
        raise UserError(f"--out {targets[0]}: folder {folder} does not exist: create it or choose another path")


def export_study(store, study: str, fmt: str, out: Path | None = None, names: bool = False, force: bool = False,
                 protected: list[Path] | None = None) -> tuple[Path, int]:
    """Write ``study``'s labels in ``fmt`` to ``out`` (default :func:`default_path`); (path, labels).

    With ``--format label-studio`` the labeling config is written beside it (``<name>.xml``). No existing
    file is replaced without ``force``, and never one of ``protected`` (the store's files)."""
    if fmt not in WRITERS:
        raise UserError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    targets = export_targets(fmt, out, study)
    check_export_targets(targets, force, protected or [], default=out is None)
    rows = labels_table(store, study, names=names)
    write_new_file(targets[0], lambda temp: WRITERS[fmt](rows, temp, names), force=force)
    if fmt == "label-studio":
        write_file(targets[1], lambda temp: temp.write_text(LABEL_CONFIG, encoding="utf-8"), force=force)
    return targets[0], len(rows)
