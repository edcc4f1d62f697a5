"""The original HARMONY Django app's study, read from its SQLite database or its fixtures folder.

The original app kept its study in a Django SQLite database (tables
``relevavance_*`` and ``auth_user``) and was seeded from Django fixtures
(``dataset.json``, ``experiment.json``, ``cnnmodel.json``,
``relevancymethod.json``, ``example.json``). Both are read without writing to them.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..store.diagnose import open_failure, remove_new_side_files, side_files


class LegacyFormatError(UserError):
    """The path is not a database or fixtures folder of the original HARMONY app."""


@dataclass
class LegacyStudy:
    """The original app's study, read from its database or fixtures; ids are the legacy primary keys."""

    names: dict[str, dict[int, str]]        # dataset/experiment/cnnmodel/relevancymethod: pk -> name
    # pk, dataset, experiment, cnnmodel, relevancymethod (legacy pks), image, original, learn, prediction
    examples: list[dict]
    users: dict[int, str] = field(default_factory=dict)   # pk -> username
    admins: set[int] = field(default_factory=set)         # pks of the users who administered the original app
    labels: list[tuple[int, int, int, str]] = field(default_factory=list)  # (pk, user, example, choice)
    format: str = "sqlite"


def _not_harmony(path: Path, why: str) -> LegacyFormatError:
    return LegacyFormatError(f"{path} is not a study of the original HARMONY app ({why}): give import-legacy its "
                             f"SQLite database (db.sqlite3) or its Django fixtures folder")


def read_legacy_sqlite(path: Path) -> LegacyStudy:
    """Read the original app's SQLite database without writing to it."""
    existed = [side.exists() for side in side_files(path)]
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise _not_harmony(path, f"cannot open it: {exc}") from exc
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:  # its header is SQLite's (read_legacy): damaged, or its place
            conn.close()
            remove_new_side_files(path, existed)
            raise open_failure(path, exc) from exc
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
        admins = set()
        if "auth_user" in tables:
            users = dict(conn.execute("SELECT id, username FROM auth_user"))
            columns = {r[1] for r in conn.execute("PRAGMA table_info(auth_user)")}
            if "is_superuser" in columns:
                admins = {r[0] for r in conn.execute("SELECT id FROM auth_user WHERE is_superuser")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        remove_new_side_files(path, existed)
        raise open_failure(path, exc) from exc
    finally:
        conn.close()
    return LegacyStudy(names=names, examples=examples, users=users, labels=labels, format="sqlite", admins=admins)


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
    admins = {_pk(o.get("pk"), "a user", folder) for o in objects.get("user", []) if o["fields"].get("is_superuser")}
    labels = sorted((_pk(o.get("pk"), "a label", folder), _pk(o["fields"].get("user"), "a label's user", folder),
                     _pk(o["fields"].get("example"), "a label's example", folder), str(o["fields"].get("choice", "")))
                    for o in objects.get("label", []))
    return LegacyStudy(names=names, examples=examples, users=users, labels=labels, format="fixtures", admins=admins)


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
