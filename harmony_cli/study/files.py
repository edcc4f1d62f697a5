"""Files of a study: atomic writes, content-hash names, study names as folder names, write failures.

Every file a study command writes goes through :func:`write_atomic` (a tmp file in the
same folder renamed into place): a file exists whole or not at all, and a failing write
leaves no tmp file behind. A failure the user can fix (a read-only or full disk) becomes one
line through :func:`file_write_failure`; a full or read-only store says so itself
(:mod:`harmony_cli.store.db`).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from ..errors import UserError

# A study name is also its image folder's name: letters, digits, dot, dash, underscore, space.
STUDY_NAME = re.compile(r"^(?!\.)[\w.\- ]{1,200}$")
# errno of a write that failed because of the place, not the program: the user can fix it.
PLACE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
                errno.EEXIST: "a file is in the way"}


def check_study_name(name: str, option: str = "study.name") -> str:
    """``name`` if it is usable as a study name and folder name, else a one-line UserError."""
    if not isinstance(name, str) or not STUDY_NAME.match(name) or name.strip() != name or ".." in name:
        raise UserError(f"{option}={name!r} is not a study name: use letters, digits, '.', '-', '_' or spaces "
                        f"(no path separators, no '..', not starting with '.')")
    return name


def content_name(data: bytes, suffix: str = ".png") -> str:
    """File name from the content's SHA-256: the same bytes, the same name."""
    return hashlib.sha256(data).hexdigest()[:32] + suffix


def write_atomic(path: str | os.PathLike, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a tmp file renamed into place; whether a file was created.

    A file of the same size already there is left alone (content-named files: the same bytes).
    No fsync: atomic against a killed process (what resume must survive); one fsync per file
    would dominate the run time on slow disks.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def write_content_named(folder: str | os.PathLike, data: bytes, created: list[Path] | None = None,
                        suffix: str = ".png") -> str:
    """Write ``data`` under ``folder`` as its content-hash name; that name. New files go to ``created``."""
    name = content_name(data, suffix)
    if write_atomic(Path(folder) / name, data) and created is not None:
        created.append(Path(folder) / name)
    return name


def remove_files(paths: list[Path]) -> None:
    """Remove files a failed step created (best effort: the step's error is what the user sees)."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, innermost first (what creating it adds)."""
    folder = Path(folder).absolute()
    return [f for f in (folder, *folder.parents) if not f.exists()] if not folder.exists() else []


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is empty: what a failed step created and left unused."""
    for folder in folders:
        try:
            Path(folder).rmdir()
        except OSError:
            break  # not empty, not there, or not ours to remove: neither is any folder above it


def study_folder(root: str | os.PathLike, name: str) -> Path:
    """The image folder of study ``name`` under ``root`` (``study.image_dir``), resolved; a one-line
    UserError when it is a symbolic link: the images would go to wherever it points."""
    folder = Path(root) / name
    if folder.is_symlink():
        raise UserError(f"the study's image folder {folder} is a symbolic link (to {os.readlink(folder)}), so its "
                        f"images would be written elsewhere: remove the link, or give study.image_dir=PATH "
                        f"a real folder")
    return folder.resolve()


def check_writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` and write (then remove) a probe file in it; a one-line UserError if either fails."""
    probe = Path(folder) / f".harmony-probe-{os.getpid()}"
    try:
        write_atomic(probe, b"probe")
        probe.unlink()
    except OSError as exc:
        fix = f"free space there or give a writable folder with {option}=PATH"
        error = file_write_failure(exc, folder, fix) or UserError(f"cannot write to {folder} ({exc}); {fix}")
        raise error from exc


def file_write_failure(exc: BaseException, folder: str | os.PathLike, fix: str) -> UserError | None:
    """A one-line UserError for a file write that failed because of its place (disk full, read-only, ...).

    None for any other failure: a bug keeps its traceback.
    """
    if isinstance(exc, OSError) and exc.errno in PLACE_ERRNOS:
        return UserError(f"cannot write to {folder}: {PLACE_ERRNOS[exc.errno]} ({exc.strerror}); {fix}")
    return None


