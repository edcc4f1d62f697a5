"""Small helpers shared by the tests: the console entry in-process or as a process, a store built by hand."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HARMONY = Path(sys.executable).parent / "harmony"


def run_main(monkeypatch, capsys, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """``harmony ARGS`` through the console entry ``harmony_cli.main:main`` in this process:
    (exit status, stdout, stderr)."""
    from harmony_cli.main import main

    monkeypatch.setattr(sys, "argv", ["harmony", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def harmony_main(monkeypatch, capsys, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """The console entry ``harmony_cli.main:main`` in this process (same error path, no interpreter start)."""
    code, out, err = run_main(monkeypatch, capsys, *args, stdin=stdin)
    return subprocess.CompletedProcess(args, code, out, err)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assignable_store(db: Path) -> None:
    """A store with an open study "pilot" (an rma and a focus example), an imported (closed) study "old" and an
    annotator "ana" without a password."""
    from harmony_cli.store import Store

    with Store.open(str(db)) as store:
        study = store.get_or_create_study("pilot")
        cell = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")
        store.add_examples(study.id, [dict(c, source_key="0", class_name="c")
                                      for c in (cell, dict(cell, metric="focus"))])
        store.get_or_create_study("old", source="legacy")
        store.add_annotator("ana", None)


def row_counts(url: str) -> dict[str, int]:
    """Rows of every table of the store at ``url`` (which must exist)."""
    from sqlalchemy import func, select

    from harmony_cli.store import Store
    from harmony_cli.store.models import Base

    with Store.open(url, create=False) as store, store.read() as session:
        return {name: session.scalar(select(func.count()).select_from(table))
                for name, table in Base.metadata.tables.items()}


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (none if it does not exist)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def add_example(store, study_id: int, **fields) -> int:
    """One example through the store's bulk insert; its id."""
    return store.add_examples(study_id, [fields])[0]


PILOT_CELL = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")


def add_labelled_pilot(store) -> None:
    """A study "pilot" of 12 rma examples that 2 annotators answered in full (each choice on a third of
    them, in different rotations: enough for a report)."""
    study = store.get_or_create_study("pilot", config={"higher_is_better": {"rma": True}})
    ids = store.add_examples(study.id, [dict(PILOT_CELL, source_key=str(i), class_name="c") for i in range(12)])
    for a, name in enumerate(("ann1", "ann2")):
        annotator = store.add_annotator(name, None)
        for i, example_id in enumerate(ids):
            store.answer(annotator.id, example_id, ("finetuned", "neither", "original")[(i + a) % 3])


def harmony(*args: str, cwd: Path = REPO, timeout: int = 600, stdin: str | None = None,
            warnings: bool = False) -> subprocess.CompletedProcess:
    """Run the installed ``harmony`` console script; ``warnings``: let Python's warnings through, as a user
    sees them (a one-line-error check wants them)."""
    command = [str(HARMONY)] if HARMONY.is_file() else [sys.executable, "-m", "harmony_cli.main"]
    env = dict(os.environ) if warnings else {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          input=stdin)


def stores_in_threads(url: str, work, count: int, timeout: float = 120) -> None:
    """``work(t, store)`` for t in 0..count-1, each in its own thread with its own store at ``url`` (like
    ``count`` page servers), released together once every store is open; any thread's exception fails the test
    (it would otherwise vanish with its thread)."""
    import threading

    from harmony_cli.store import Store

    barrier, errors = threading.Barrier(count), []

    def one(t: int) -> None:
        store = Store.open(url)
        try:
            barrier.wait()
            work(t, store)
        except Exception as exc:
            errors.append(exc)
        finally:
            store.close()

    workers = [threading.Thread(target=one, args=(t,)) for t in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout)
    assert not any(worker.is_alive() for worker in workers), f"a thread ran past {timeout} s"
    assert not errors, errors
