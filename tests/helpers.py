"""Small helpers shared by the tests: the console entry in-process, a store built by hand."""
from __future__ import annotations

import io
import sys


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


def add_example(store, study_id: int, **fields) -> int:
    """One example through the store's bulk insert; its id."""
    return store.add_examples(study_id, [fields])[0]
