"""Bad input to every command, as one table: exit status 2, no traceback, one line that names the
problem and its fix, and the folder exactly as it was (no leftover file or folder, the store
byte-identical).

Each case runs the console entry (``harmony_cli.main:main``) in-process, in a folder holding a small
store (``store.db``), a symbolic and a hard link to it, a text file, an empty folder, a damaged
store, a damaged database of the original app and a fixtures folder of the original app. The
folder's whole tree (names and SHA-256 of every file) is compared before and after.

A read-only or full place is simulated in-process as the operating system reports it: for the
store, SQLite's answer to a reader of a WAL database that cannot create its -shm file ("unable to
open database file" on a read-only file system, "disk I/O error" on a full one, both measured on a
real tmpfs) together with the file system's statistics (``os.statvfs``); for output files, the
errno of every write below the folder.
"""
from __future__ import annotations

import builtins
import errno
import hashlib
import json
import os
import shutil
import sqlite3
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest

from harmony_cli.store import Store
from tests.conftest import TEST_CACHE
from tests.helpers import add_labelled_pilot, run_main
from tests.legacy_fixtures import write_fixtures

# Words of the old, wrong fixes that must not come back.
NOT_HARMONY_FIX = "made by harmony"
FROZEN = datetime(2026, 1, 2, 3, 4, 5)
LEGACY_FIX = "import-legacy"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The folder every case starts from (copied per case)."""
    root = tmp_path_factory.mktemp("bad_input_table")
    with closing(Store.open(f"sqlite:///{root / 'store.db'}")) as store:
        add_labelled_pilot(store)
    (root / "text.txt").write_text("not a database\n")
    (root / "emptydir").mkdir()
    (root / "damaged.db").write_bytes((root / "store.db").read_bytes()[:8192])  # a store cut short
    _damaged_legacy_database(root / "legacy_damaged.sqlite3")
    write_fixtures(root / "fixtures")
    broken = root / "fixtures_broken"
    shutil.copytree(root / "fixtures", broken)
    examples = json.loads((broken / "example.json").read_text())
    examples[0]["fields"]["experiment"] = 99  # refers to an experiment the fixtures do not hold
    (broken / "example.json").write_text(json.dumps(examples))
    (root / "with_report").mkdir()
    (root / "with_report" / "report.json").write_text("an earlier report\n")
    (root / "with_power").mkdir()
    (root / "with_power" / "power.csv").write_text("an earlier power table\n")
    (root / "labels.xml").write_text("<View>someone else's labeling config</View>\n")
    return root


def _damaged_legacy_database(path: Path) -> None:
    """A database of the original app (its example table) whose data pages are overwritten."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE relevavance_example (id INTEGER PRIMARY KEY, image TEXT)")
    conn.executemany("INSERT INTO relevavance_example (image) VALUES (?)", [("x" * 200,) for _ in range(400)])
    conn.commit()
    conn.close()
    data = bytearray(path.read_bytes())
    data[4096 * 3:4096 * 8] = b"\x07" * (4096 * 5)  # leaves page 1 (the schema) whole
    path.write_bytes(bytes(data))


@pytest.fixture
def workspace(template, tmp_path, monkeypatch) -> Path:
    """A fresh copy of the template with the links, as the working folder; no store from the environment."""
    root = tmp_path / "work"
    shutil.copytree(template, root)
    (root / "store_link.db").symlink_to(root / "store.db")
    os.link(root / "store.db", root / "store_hard.db")
    os.link(root / "store.db", root / "store.xml")
    os.link(root / "store.db", root / "with_hard_report.db")
    (root / "with_hard_report").mkdir()
    os.link(root / "store.db", root / "with_hard_report" / "report.json")
    monkeypatch.chdir(root)
    monkeypatch.delenv("HARMONY_DB_URL", raising=False)
    monkeypatch.delenv("HARMONY_OUTPUTS", raising=False)
    return root


def tree(root: Path) -> dict[str, str]:
    """Every entry below ``root``: a file's SHA-256, 'dir' or the target of a link."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[key] = "dir"
        else:
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# --- places that refuse writes, as the operating system reports them --------------------------------------

class _RefusingConnection:
    """What sqlite3 hands a reader of a WAL store that cannot create the -shm beside it."""

    def __init__(self, message: str):
        self.message = message

    def execute(self, *args, **kwargs):
        raise sqlite3.OperationalError(self.message)

    def close(self) -> None:
        pass


def _statvfs(read_only: bool, free_blocks: int):
    return os.statvfs_result((4096, 4096, 1000, free_blocks, free_blocks, 1000, 1000, 1000,
                              os.ST_RDONLY if read_only else 0, 255))


def store_read_only(monkeypatch, root: Path) -> None:
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _RefusingConnection("unable to open database file"))
    monkeypatch.setattr(os, "statvfs", lambda path: _statvfs(True, 1000))


def store_disk_full(monkeypatch, root: Path) -> None:
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: _RefusingConnection("disk I/O error"))
    monkeypatch.setattr(os, "statvfs", lambda path: _statvfs(False, 0))


def _writes_below_fail(code: int):
    def setup(monkeypatch, root: Path) -> None:
        folder = str(root / "place")
        os.mkdir(folder)  # part of the template for this case: it exists before and after
        real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

        def below(path) -> bool:
            return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(folder)

        def refuse(path):
            raise OSError(code, os.strerror(code), os.fspath(path))

        def fake_open(file, mode="r", *args, **kwargs):
            if below(file) and any(m in mode for m in "wax+"):
                refuse(file)
            return real_open(file, mode, *args, **kwargs)

        def fake_os_open(path, flags, *args, **kwargs):
            if below(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                refuse(path)
            return real_os_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if below(path):
                refuse(path)
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return setup


def page_never_starts(monkeypatch, root: Path) -> None:
    """serve hands its process to Streamlit (os.execv): a bad port must be refused before that."""
    def execv(*args):
        raise AssertionError(f"serve started the page: {args}")
    monkeypatch.setattr(os, "execv", execv)


place_read_only = _writes_below_fail(errno.EROFS)
place_full = _writes_below_fail(errno.ENOSPC)

FAST_DATA = ["data.train_size=8", "data.val_size=4", "data.test_size=4", "data.image_size=16"]
PASSWORD_TOO_SHORT = "short\n"

# (id, arguments, words the line must hold, words it must not hold, setup)
CASES = [
    # export: never over the store, never over a file without --force
    ("export over the store", ["export", "--study", "pilot", "--out", "store.db", "--db", "store.db"],
     ["is the store", "another path"], [], None),
    ("export over the store with --force", ["export", "--study", "pilot", "--out", "store.db", "--db", "store.db",
                                           "--force"], ["is the store"], [], None),
    ("export over a symlink to the store", ["export", "--study", "pilot", "--out", "store_link.db", "--db",
                                            "store.db"], ["is the store"], [], None),
    ("export over a hard link to the store", ["export", "--study", "pilot", "--out", "store_hard.db", "--db",
                                              "store.db", "--force"], ["is the store"], [], None),
    ("export reading the store through a link", ["export", "--study", "pilot", "--out", "store.db", "--db",
                                                 "store_link.db"], ["is the store"], [], None),
    ("export over the store's -wal file", ["export", "--study", "pilot", "--out", "store.db-wal", "--db",
                                           "store.db"], ["is the store"], [], None),
    ("export over an existing file", ["export", "--study", "pilot", "--out", "text.txt", "--db", "store.db"],
     ["exists already", "--force"], [], None),
    ("label-studio over an unrelated .xml", ["export", "--study", "pilot", "--format", "label-studio", "--out",
                                             "labels.json", "--db", "store.db"], ["labels.xml", "--force"], [], None),
    ("label-studio whose .xml is the store", ["export", "--study", "pilot", "--format", "label-studio", "--out",
                                              "store.json", "--db", "store.db", "--force"], ["is the store"], [],
     None),
    ("export of an unknown study", ["export", "--study", "nope", "--db", "store.db"], ["nope", "pilot"], [], None),
    ("export into a folder path", ["export", "--study", "pilot", "--out", "emptydir", "--db", "store.db"],
     ["is a folder", "file path"], [], None),
    ("export into a missing folder", ["export", "--study", "pilot", "--out", "missing/x.csv", "--db", "store.db"],
     ["does not exist", "create it"], [], None),
    ("export onto a full disk", ["export", "--study", "pilot", "--out", "place/x.csv", "--db", "store.db"],
     ["no space left", "free some space"], [], place_full),
    ("export onto a read-only file system", ["export", "--study", "pilot", "--out", "place/x.csv", "--db",
                                             "store.db"], ["read-only file system", "writable folder"], [],
     place_read_only),
    ("export in an unknown format", ["export", "--study", "pilot", "--format", "xlsx", "--db", "store.db"],
     ["xlsx", "label-studio"], [], None),
    ("export with an unknown option", ["export", "--study", "pilot", "--bogus"], ["no such option", "--help"], [],
     None),
    # analyze and power: their report folders
    ("analyze over an earlier report", ["analyze", "--study", "pilot", "--out", "with_report", "--db", "store.db"],
     ["report.json already", "--force"], [], None),
    ("analyze over the store as --out", ["analyze", "--study", "pilot", "--out", "store.db", "--db", "store.db"],
     ["is the store"], [], None),
    ("analyze over a report file linked to the store", ["analyze", "--study", "pilot", "--out", "with_hard_report",
                                                        "--db", "store.db", "--force"], ["is the store"], [], None),
    ("analyze with a bad --format", ["analyze", "--format", "pdf", "--db", "store.db"], ["pdf", "--help"], [], None),
    ("power over an earlier run", ["power", "--out", "with_power", "--db", "store.db"],
     ["power.csv already", "--force"], [], None),
    ("power over the store as --out", ["power", "--out", "store.db", "--db", "store.db"], ["is the store"], [],
     None),
    ("power with a word for a number", ["power", "--simulations", "many"], ["--simulations", "--help"], [], None),
    ("power with no examples", ["power", "--examples", "0"], ["--examples", "positive whole numbers"], [], None),
    ("power with no simulations", ["power", "--simulations", "0"], ["--simulations 0", "at least 1"], [], None),
    ("power with a family of no cells", ["power", "--cells", "0", "--simulations", "1", "--examples", "10",
                                         "--annotators", "1"], ["--cells 0", "at least 1"], [], None),
    ("power looked at with a fixed design", ["power", "--look-every", "10"], ["--look-every", "--design sequential"],
     [], None),
    ("power sequential never looked at", ["power", "--design", "sequential", "--look-every", "0"],
     ["--look-every 0", "at least 1"], [], None),
    # replay: its folder, the study, the design's numbers
    ("replay of an unknown study", ["replay", "--study", "nope", "--db", "store.db"], ["nope", "pilot"], [], None),
    ("replay over the store as --out", ["replay", "--study", "pilot", "--out", "store.db", "--db", "store.db"],
     ["is the store"], [], None),
    ("replay looked at after no labels", ["replay", "--look-every", "0", "--db", "store.db"],
     ["--look-every 0", "at least 1"], [], None),
    ("replay looked at after its last label", ["replay", "--look-every", "9", "--max-labels", "3", "--db",
                                               "store.db"], ["--look-every 9", "--max-labels 3"], [], None),
    # data preview and make-miniature: unwritable places, the store, existing files, bad numbers
    ("preview under /proc", ["data", "preview", "--out", "/proc/harmony-preview.png"], ["cannot write", "--out"],
     [], None),
    ("preview on a read-only file system", ["data", "preview", "--out", "place/p.png"],
     ["read-only file system", "writable folder"], [], place_read_only),
    ("preview over the store of HARMONY_DB_URL", ["data", "preview", "--out", "store_link.db", "--force"],
     ["is the store"], [], lambda monkeypatch, root: monkeypatch.setenv("HARMONY_DB_URL", "store.db")),
    ("preview over an existing file", ["data", "preview", "--out", "text.txt"], ["exists already", "--force"], [],
     None),
    ("preview with a read-only data cache", ["data", "preview", "--out", "p.png", "paths.cache=place/cache",
                                             *FAST_DATA], ["data cache", "paths.cache"], [], place_read_only),
    ("preview of an empty split", ["data", "preview", "--out", "p.png", *FAST_DATA, "data.train_size=0"],
     ["data.train_size=0", "at least 1"], [], None),
    ("train-base of an unknown backbone", ["data", "train-base", "backbone=nope"], ["unknown backbone 'nope'"], [],
     None),
    ("train-base of an empty split", ["data", "train-base", *FAST_DATA, "data.train_size=0"],
     ["data.train_size=0", "at least 1"], [], None),
    ("preview of negative images", ["data", "preview", "--out", "p.png", *FAST_DATA, "data.image_size=-3"],
     ["data.image_size=-3", "at least 8"], [], None),
    ("miniature under /proc", ["data", "make-miniature", "/proc/harmony-mini", "--weights", "none"],
     ["cannot write", "writable place"], [], None),
    ("miniature on a read-only file system", ["data", "make-miniature", "place/mini", "--weights", "none"],
     ["read-only file system", "writable place"], [], place_read_only),
    ("miniature over a file", ["data", "make-miniature", "store.db", "--weights", "none"],
     ["already exists", "new folder"], [], None),
    ("miniature of 0-pixel images", ["data", "make-miniature", "mini", "--image-size", "0"],
     ["--image-size 0", "at least 8"], [], None),
    ("miniature with a negative seed", ["data", "make-miniature", "mini", "--seed", "-1"], ["--seed -1"], [], None),
    ("miniature stand-ins too small", ["data", "make-miniature", "mini", "--weights-image-size", "8"],
     ["vgg16", "at least 32", "--weights-image-size"], [], None),
    # serve
    ("serve on port 70000", ["serve", "--port", "70000"], ["--port 70000", "1 to 65535"], [], page_never_starts),
    ("serve on port 0", ["serve", "--port", "0"], ["--port 0", "1 to 65535"], [], page_never_starts),
    ("serve on a word", ["serve", "--port", "http"], ["--port", "--help"], [], page_never_starts),
    # opening a store: the real cause and the real fix
    ("a store on a read-only file system", ["studies", "--db", "store.db"], ["read-only file system", "copy"],
     [NOT_HARMONY_FIX], store_read_only),
    ("adding to a store on a read-only file system", ["annotators", "add", "zed", "--password-stdin", "--db",
                                                      "store.db"], ["read-only file system"], [NOT_HARMONY_FIX],
     store_read_only),
    ("a store on a full disk", ["annotators", "list", "--db", "store.db"], ["is full", "free some space"],
     [NOT_HARMONY_FIX], store_disk_full),
    ("exporting from a store on a full disk", ["export", "--study", "pilot", "--out", "x.csv", "--db", "store.db"],
     ["is full", "free some space"], [NOT_HARMONY_FIX], store_disk_full),
    ("a text file as the store", ["studies", "--db", "text.txt"], ["not an sqlite database", "harmony store"],
     [LEGACY_FIX, NOT_HARMONY_FIX], None),
    ("a damaged store", ["studies", "--db", "damaged.db"], ["damaged", "backup"], [LEGACY_FIX, NOT_HARMONY_FIX],
     None),
    ("a damaged database of the original app", ["studies", "--db", "legacy_damaged.sqlite3"],
     ["damaged", "backup"], [LEGACY_FIX], None),
    ("a folder as the store", ["annotators", "list", "--db", "emptydir"], ["is a folder", "file path"], [], None),
    ("a missing store", ["studies", "close", "pilot", "--db", "missing.db"], ["no harmony store", "--db"], [],
     None),
    ("instructions from a folder", ["studies", "set-instructions", "pilot", "--file", "emptydir", "--db",
                                    "store.db"], ["emptydir is a folder", "--file"], [], None),
    ("labels per example of 0", ["studies", "set-labels-per-example", "pilot", "0", "--db", "store.db"],
     ["at least 1"], [], None),
    ("a study that does not exist", ["studies", "open", "nope", "--db", "store.db"], ["nope", "harmony studies"],
     [], None),
    # import-legacy: wrong input, and nothing left when it fails after opening a new store
    ("import of a missing path", ["import-legacy", "nowhere.sqlite3", "--db", "new.db"], ["does not exist"], [],
     None),
    ("import of a text file", ["import-legacy", "text.txt", "--db", "new.db"], ["not an sqlite database"], [], None),
    ("import of a damaged database", ["import-legacy", "damaged.db", "--db", "new.db"], ["damaged", "backup"],
     [], None),
    ("import of fixtures that refer to nothing", ["import-legacy", "fixtures_broken", "--db", "new.db"],
     ["experiment 99", "missing"], [], None),
    ("import into a new store at the default place", ["import-legacy", "fixtures_broken"],
     ["experiment 99", "missing"], [], None),
    ("import with a path as study name", ["import-legacy", "fixtures", "--study", "../x", "--db", "new.db"],
     ["is not a study name"], [], None),
    ("import with a missing images folder", ["import-legacy", "fixtures", "--images", "nowhere", "--db", "new.db"],
     ["is not a folder"], [], None),
    ("import into a text file", ["import-legacy", "fixtures", "--db", "text.txt"], ["not an sqlite database"],
     [LEGACY_FIX], None),
    # annotators: a refused password leaves no new store
    ("a short password into a new store", ["annotators", "add", "bob", "--password-stdin", "--db", "new.db"],
     ["at least 8"], [], None),
    ("a short password into the default store", ["annotators", "add", "bob", "--password-stdin"],
     ["at least 8"], [], None),
    ("an account without a name", ["annotators", "add"], ["missing argument", "--help"], [], None),
    # finetune: a failed run or sweep leaves no outputs/, sweep folder or multirun.yaml
    ("a sweep over an unknown metric", ["finetune", "-m", "metric=rma,nope"], ["unknown metric 'nope'"], [], None),
    ("a sweep of a missing weights file", ["finetune", "-m", "metric=rma,focus", "backbone.weights=/nowhere.pt",
                                           f"paths.cache={TEST_CACHE / 'cache'}"], ["/nowhere.pt", "does not exist"],
     [], None),
    ("a run of a missing weights file", ["finetune", "backbone.weights=/nowhere.pt",
                                         f"paths.cache={TEST_CACHE / 'cache'}"], ["/nowhere.pt", "does not exist"],
     [], None),
    ("a sweep into its own folder", ["finetune", "-m", "metric=rma,nope", "hydra.sweep.dir=sweep"],
     ["unknown metric 'nope'"], [], None),
]


@pytest.mark.parametrize("args, expected, forbidden, setup", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_everything_as_it_was(args, expected, forbidden, setup,
                                                                      workspace, monkeypatch, capsys):
    if setup is not None:
        setup(monkeypatch, workspace)
    before = tree(workspace)
    code, out, err = run_main(monkeypatch, capsys, *args, stdin=PASSWORD_TOO_SHORT)
    monkeypatch.undo()
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]  # Hydra's log lines
    assert code == 2, (code, err[-2000:])
    assert "Traceback" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    line = lines[0].lower()
    assert all(word.lower() in line for word in expected), lines[0]
    assert not any(word.lower() in line for word in forbidden), lines[0]
    assert tree(workspace) == before


def test_the_same_commands_work_on_good_input(workspace, monkeypatch, capsys):
    """The cases fail for their bad input alone: with --force, or a new path, the same commands write."""
    code, _, err = run_main(monkeypatch, capsys, "export", "--study", "pilot", "--out", "text.txt", "--db",
                            "store.db", "--force")
    assert code == 0, err
    assert (workspace / "text.txt").read_text().startswith("label_id,")
    code, _, err = run_main(monkeypatch, capsys, "export", "--study", "pilot", "--format", "label-studio",
                            "--out", "labels.json", "--db", "store.db", "--force")
    assert code == 0, err
    assert (workspace / "labels.xml").read_text().startswith("<View>\n  <Header")  # replaced only when asked
    code, _, err = run_main(monkeypatch, capsys, "export", "--study", "pilot", "--db", "store.db")
    assert code == 0, err
    assert (workspace / "outputs" / "exports" / "pilot.csv").is_file()
    code, _, err = run_main(monkeypatch, capsys, "power", "--out", "with_power", "--db", "store.db", "--force",
                            "--examples", "10", "--annotators", "2", "--simulations", "2")
    assert code == 0, err
    assert (workspace / "with_power" / "power.csv").read_text() != "an earlier power table\n"


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    """The check before the work and the move after it leave a window: the move itself refuses an existing
    name (without --force), so another program's file that appeared meanwhile stays."""
    from harmony_cli.errors import UserError
    from harmony_cli.outputs import write_file

    target = tmp_path / "labels.csv"

    def write_while_another_program_creates_the_target(temp: Path) -> None:
        temp.write_text("ours\n")
        target.write_text("theirs\n")

    with pytest.raises(UserError, match="exists already"):
        write_file(target, write_while_another_program_creates_the_target)
    assert target.read_text() == "theirs\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # no temporary file left
    write_file(target, lambda temp: temp.write_text("ours\n"), force=True)
    assert target.read_text() == "ours\n"


def test_two_default_report_folders_in_one_second_do_not_meet(workspace, monkeypatch, capsys):
    """The default report folder is named by the second: a second report in the same second gets its own."""
    from harmony_cli.commands import analyze

    monkeypatch.setattr(analyze, "datetime", type("Frozen", (), {"now": staticmethod(lambda *a: FROZEN)}))
    for _ in range(2):
        code, _, err = run_main(monkeypatch, capsys, "analyze", "--study", "pilot", "--db", "store.db")
        assert code == 0, err
    folders = sorted(p.name for p in (workspace / "outputs" / "reports").iterdir())
    assert folders == ["pilot-2026-01-02_03-04-05", "pilot-2026-01-02_03-04-05-2"]

