"""``harmony serve``: the annotation page (webui/app.py) from any folder, with the page's own settings.

Streamlit reads ``.streamlit/config.toml`` from beside the script, so the installed page
keeps its settings (no usage statistics, no error details) whatever the working folder;
the store and everything relative stay in the working folder.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import typer

from ..errors import UserError
from .options import DbOption

MAX_PORT = 65535


def page_script() -> Path:
    """The installed (or checked-out) ``webui/app.py``, found without importing the page's package
    (imports run webui -> harmony_cli, never back)."""
    spec = importlib.util.find_spec("webui")
    script = Path(spec.origin).resolve().parent / "app.py" if spec is not None and spec.origin else None
    if script is None or not script.is_file():
        raise UserError(f"the annotation page {script} is missing: reinstall harmony (pip install harmony)")
    return script


def streamlit_command(port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line of the page."""
    return [sys.executable, "-m", "streamlit", "run", str(page_script()), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true"]


def serve(
    port: int = typer.Option(8501, "--port", help="Port of the page."),
    address: str = typer.Option("localhost", "--address",
                                help="Address to listen on (0.0.0.0: every network interface)."),
    db: DbOption = None,
) -> None:
    """Start the annotation page: annotators log in with accounts from `harmony annotators add`."""
    if not 1 <= port <= MAX_PORT:
        raise UserError(f"--port {port} is not a TCP port: give a number from 1 to {MAX_PORT} (default 8501)")
    if db:
        os.environ["HARMONY_DB_URL"] = db
    command = streamlit_command(port, address)
    typer.echo(f"annotation page: http://{address}:{port}  (Ctrl+C stops it)")
    sys.stdout.flush()
    # Streamlit takes this process's place: signals (Ctrl+C, a service manager's stop) reach it directly.
    os.execv(command[0], command)
