"""The installed package, as a new user meets it: build the wheel, install it into a fresh venv
outside the checkout, and run every stage from another folder.

The fresh venv borrows the dev venv's dependencies through a .pth file (no torch re-install) and
gets the wheel with --no-deps; the checkout is not on its path, which the first test asserts.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import CACHE_OVERRIDES, REPO

# What a wheel is built from: the project's files, copied so the build leaves nothing in the checkout.
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "harmony_cli", "lightning_modules", "webui",
           "conf")
VERSION = re.search(r'__version__ = "([^"]+)"', (REPO / "harmony_cli" / "__init__.py").read_text()).group(1)


@dataclass
class Installed:
    venv: Path
    wheel: Path
    source: Path  # the copy of the project the wheel was built from
    work: Path  # the folder every command runs in (outside the checkout)

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "HARMONY_CONF", "HARMONY_OUTPUTS", "HARMONY_DB_URL", "VIRTUAL_ENV")}
        return {**env, "PATH": f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}

    def run(self, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.venv / "bin" / args[0]), *args[1:]], cwd=self.work, env=self.env(),
                              capture_output=True, text=True, timeout=timeout)


def _build_wheel(source: Path, dest: Path) -> Path:
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dest / "dist"), str(source)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (dest / "dist").glob("harmony-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> Installed:
    """The wheel, installed into a fresh venv whose only harmony is the wheel's (built once per session)."""
    root = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(root / "source", root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.check_output([str(venv / "bin" / "python"), "-c",
                                         "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # the dev venv's dependencies (a plain path: the .pth files in it, e.g. an editable install, stay inactive)
    dev = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "harmony_dev_dependencies.pth").write_text("\n".join(sorted(dev)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", "--ignore-installed", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    work = root / "work"
    work.mkdir()
    return Installed(venv, wheel, root / "source", work)


PAGE_ASSETS = {"webui/pair.js", "webui/pair.css", "webui/practice_pair/image.png",
               "webui/practice_pair/on_object.png", "webui/practice_pair/off_object.png"}
# the embedded default's trained base model (lightning_modules/backbones/shipped.py)
SHIPPED_WEIGHTS = {p.relative_to(REPO).as_posix() for p in (REPO / "lightning_modules/backbones/shipped").glob("*.pt")}


def test_wheel_ships_the_configs_and_the_page_settings(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    configs = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert {n.removeprefix("harmony_cli/conf/") for n in names if n.startswith("harmony_cli/conf/")} == configs
    assert "webui/.streamlit/config.toml" in names and "webui/app.py" in names
    assert PAGE_ASSETS <= set(names)  # the pair component and the practice pair's images
    assert SHIPPED_WEIGHTS and SHIPPED_WEIGHTS <= set(names)


def test_sdist_ships_the_configs_and_the_page_settings(installed, tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=installed.source,
                   check=True, capture_output=True, timeout=300)
    (sdist,) = tmp_path.glob("harmony-*.tar.gz")
    names = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
    configs = {f"conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert configs <= names and "webui/.streamlit/config.toml" in names and "setup.py" in names
    assert PAGE_ASSETS <= names and SHIPPED_WEIGHTS <= names


def test_the_fresh_venv_imports_the_wheel_not_the_checkout(installed):
    where = installed.run("python", "-c", "import harmony_cli, webui; print(harmony_cli.__file__); "
                                          "print(webui.__file__)")
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(installed.venv), line
    assert installed.run("harmony", "--version").stdout.strip() == f"harmony {VERSION}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def test_serve_starts_the_page_from_any_folder(installed):
    port = _free_port()
    process = subprocess.Popen([str(installed.venv / "bin" / "harmony"), "serve", "--port", str(port),
                                "--address", "127.0.0.1"], cwd=installed.work, env=installed.env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", process) == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_every_stage_runs_from_another_folder_and_writes_under_its_outputs(installed, trained_tiny):
    cfg = installed.run("harmony", "finetune", "--cfg", "job")
    assert cfg.returncode == 0 and "metric:" in cfg.stdout, cfg.stderr[-2000:]
    # the test session's generated splits and base model (trained_tiny) are read from the test cache
    inputs = CACHE_OVERRIDES
    finetune = installed.run("harmony", "finetune", *inputs, "trainer.max_steps=2", "trainer.val_check_interval=2",
                             "finetune.batch_size=8", "finetune.val_size=16", "finetune.plot_images=2")
    assert finetune.returncode == 0, finetune.stderr[-3000:]
    outputs = installed.work / "outputs"
    (run,) = (outputs / "finetune").iterdir()
    assert (run / "metrics.json").is_file()
    for args in (["build-dataset", *inputs, "study.name=wheel", "study.examples_per_cell=4", "study.image_size=64"],
                 ["simulate-annotators", "--study", "wheel", "--annotators", "3"],
                 ["analyze", "--study", "wheel"]):
        result = installed.run("harmony", *args)
        assert result.returncode == 0, (args, result.stderr[-3000:])
    assert (outputs / "harmony.db").is_file() and any((outputs / "study_images").iterdir())
    assert list(outputs.glob("reports/*/report.json"))
    assert sorted(p.name for p in installed.work.iterdir()) == ["outputs"]
