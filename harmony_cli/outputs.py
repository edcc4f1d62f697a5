"""Files and folders a command writes where the user says (``--out``): never over the store, never over
a file that exists without ``--force``, and whole or not at all.

Every such write goes through a temporary sibling (same folder, so the same file system) that is
renamed into place once complete. A target is compared with the store's files by what it resolves
to and by inode (:func:`os.path.samefile`), so a symbolic or hard link to the store is refused too,
with or without ``--force``.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import UserError
from .store.db import resolve_db_url, sqlite_path

# Files of an SQLite store besides the database itself.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def store_files(*dbs: str | None) -> list[Path]:
    """The files of the SQLite stores ``dbs`` name (``--db`` values; None: the default store)."""
    files = []
    for db in dbs:
        path = sqlite_path(resolve_db_url(db))
        if path is not None:
            files += [path, *(path.with_name(path.name + side) for side in SQLITE_SIDE_FILES)]
    return files


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode (links of any kind), or the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


def check_not_store(path: Path, option: str, protected: Iterable[Path]) -> None:
    """A one-line UserError when ``path`` is (or links to) one of the store's files."""
    for store_file in protected:
        if same_file(path, store_file):
            raise UserError(f"{option} {path} is the store {store_file}: harmony never writes over its store, "
                            f"give {option} another path")


def check_file_target(path: Path, option: str, force: bool, protected: Iterable[Path] = ()) -> None:
    """Refuse ``path`` as an output file: the store, a folder, or (without ``force``) an existing file."""
    check_not_store(path, option, protected)
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder: give a file path such as {path / ('out' + path.suffix)}")
    if (path.exists() or path.is_symlink()) and not force:
        raise UserError(f"{option} {path} exists already: add --force to replace it, or give {option} a new path")


def check_folder_target(folder: Path, names: Iterable[str], option: str, force: bool,
                        protected: Iterable[Path] = ()) -> None:
    """Refuse ``folder`` as an output folder whose files will be ``names``: a file, the store's folder entry,
    or (without ``force``) a folder already holding one of ``names``."""
    protected = list(protected)
    check_not_store(folder, option, protected)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder} is a file, not a folder: give a folder (it is created)")
    for name in names:
        check_not_store(folder / name, option, protected)
    existing = [name for name in names if (folder / name).exists() or (folder / name).is_symlink()]
    if existing and not force:
        raise UserError(f"{option} {folder} holds {existing[0]} already: add --force to replace it, or give "
                        f"{option} a new folder")


def check_writable_place(path: Path, option: str) -> None:
    """Fail with one line, before any work, when nothing can be written where ``path`` would go. Creates
    nothing: the nearest existing folder above ``path`` gets a probe file, removed at once."""
    folder = next(p for p in Path(os.path.abspath(path)).parents if p.exists() or p == p.parent)
    if not folder.is_dir():
        raise UserError(f"{option} {path}: {folder} is a file, not a folder: give {option} a path in a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".harmony-probe-"):
            pass
    except OSError as exc:
        raise write_error(path, exc, option) from exc


def write_error(path: Path, exc: OSError, option: str) -> UserError:
    """The one line for a write the place refused: a full disk wants space, anything else another place."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"cannot write {path} ({exc.strerror}): free some space, or give {option} a path on "
                         f"another disk")
    return UserError(f"cannot write {path} ({exc.strerror or exc}): give {option} a path in a writable folder")


def move_into_place(temp: Path, path: Path, option: str, force: bool) -> None:
    """Rename ``temp`` to ``path``; without ``force`` only where nothing is (a hard link, which fails on an
    existing name, so a file that appeared since the check is not replaced either)."""
    if force:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise UserError(f"{option} {path} exists already: add --force to replace it, or give {option} a new "
                        f"path") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists() or path.is_symlink():  # a file system without hard links: check, then rename
            raise UserError(f"{option} {path} exists already: add --force to replace it, or give {option} a new "
                            f"path") from None
        os.replace(temp, path)
        return
    os.unlink(temp)


def write_file(path: Path, write: Callable[[Path], None], option: str = "--out", force: bool = False) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place: a reader sees the old file or
    the whole new one; a failure leaves nothing (and says so in one line when the place is at fault). An
    existing ``path`` is replaced only with ``force``."""
    try:
        handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as exc:
        raise write_error(path, exc, option) from exc
    os.close(handle)
    try:
        write(Path(temp))
        move_into_place(Path(temp), path, option, force)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise write_error(path, exc, option) from exc
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_new_file(path: Path, write: Callable[[Path], None], option: str = "--out", force: bool = False) -> None:
    """:func:`write_file`, creating the folders above ``path`` first; on failure they are removed again."""
    created = missing_folders(path.parent)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, write, option, force)
    except OSError as exc:
        remove_empty_folders(created)
        raise write_error(path, exc, option) from exc
    except BaseException:
        remove_empty_folders(created)
        raise


def write_folder(folder: Path, write: Callable[[Path], None], option: str = "--out", force: bool = False) -> list[str]:
    """Run ``write(staging)`` on a new folder beside ``folder``, then move its files into ``folder`` (the whole
    staging folder when ``folder`` is new); the names moved. A failure leaves nothing of this call."""
    created = missing_folders(folder.parent)
    staging = folder.parent / f".{folder.name}.tmp-{secrets.token_hex(4)}"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions for the renamed folder
    except OSError as exc:
        remove_empty_folders(created)
        raise write_error(folder, exc, option) from exc
    try:
        write(staging)
        names = sorted(p.name for p in staging.iterdir())
        if folder.exists():  # its other files stay; ours go in one by one, atomically each
            for name in names:
                move_into_place(staging / name, folder / name, option, force)
            staging.rmdir()
        else:
            os.replace(staging, folder)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        remove_empty_folders(created)
        if isinstance(exc, OSError):
            raise write_error(folder, exc, option) from exc
        raise
    return names


def new_folder(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``folder-3``, ... when it exists (default folders named by the second)."""
    candidate, number = Path(folder), 1
    while candidate.exists() or candidate.is_symlink():
        number += 1
        candidate = Path(f"{folder}-{number}")
    return candidate


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, innermost first (what a mkdir would create)."""
    folder = Path(os.path.abspath(folder))
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def remove_empty_folders(folders: Iterable[Path]) -> None:
    """Remove ``folders`` (innermost first) that are empty: what a failed call created and left unused."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty, or gone: the ones above stay too
