"""The page in a real browser: Debian's chromium for Playwright, and `streamlit run webui/app.py` on a free
loopback port for a store."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.webui_study import PASSWORD, make_load_study

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Every browser test module sets ``pytestmark = needs_chromium``.
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} is absent: install Debian's chromium (.ci/run does)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def streamlit_command(port: int) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(REPO / "webui" / "app.py"),
            "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--server.runOnSave", "false", "--global.developmentMode", "false"]


def wait_healthy(port: int, server: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer on port {port} within {timeout_s} s")


def log_in(page, name: str) -> None:
    """Log ``name`` in on the page's login form (the test studies' shared password)."""
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


@contextmanager
def running_page(folder: Path, url: str):
    """A page server on a free loopback port for the store ``url``; yields its address."""
    port = free_port()
    env = {**os.environ, "HARMONY_DB_URL": url}
    log = folder / "streamlit.log"
    with log.open("w") as log_file:  # a file, not a pipe: a full pipe would stall the server
        server = subprocess.Popen(streamlit_command(port), cwd=folder, env=env, stdout=log_file,
                                  stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextmanager
def logged_in_page(address: str, name: str, viewport: dict, timeout_ms: int):
    """A chromium page at the page server ``address`` with ``name`` logged in; the browser closes after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport)
            page.set_default_timeout(timeout_ms)
            page.goto(address)
            log_in(page, name)
            yield page
        finally:
            browser.close()


@contextmanager
def served_load_study(folder: Path, annotators: int, examples: int):
    """make_load_study's store in ``folder`` behind a page server: its info with ``url`` and ``address``."""
    url = f"sqlite:///{folder / 'harmony.db'}"
    info = make_load_study(url, folder / "images", annotators, examples)
    with running_page(folder, url) as address:
        yield {**info, "url": url, "address": address}
