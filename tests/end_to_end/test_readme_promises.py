"""README promises without a test elsewhere: `harmony finetune --cfg job`, the mask outlines of
`harmony data preview`, and `make bench` writing its summary.

(`make demo` itself is not run here: CI runs it, and it takes minutes.)
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from omegaconf import OmegaConf
from PIL import Image
from scipy import ndimage
from tests.conftest import REPO

TEST_CACHE = Path(os.environ.get("HARMONY_TEST_CACHE", REPO / "outputs" / "test-cache"))


def harmony(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m harmony_cli.main ARGS` in ``tmp_path``, as a user runs it, writing under tmp_path/outputs."""
    env = dict(os.environ, HARMONY_OUTPUTS=str(tmp_path / "outputs"),
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "harmony_cli.main", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def metric_yaml(name: str) -> dict:
    """conf/metric/<name>.yaml as written (found wherever the config groups live in the checkout)."""
    found = [p for p in REPO.glob(f"**/conf/metric/{name}.yaml") if "outputs" not in p.parts]
    assert found, f"no conf/metric/{name}.yaml in the checkout"
    return OmegaConf.to_container(OmegaConf.load(found[0]))


def test_cfg_job_prints_the_composed_config_and_runs_nothing(tmp_path):
    result = harmony(tmp_path, "finetune", "--cfg", "job", "metric=focus", "finetune.lr=0.123")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["metric"] == metric_yaml("focus")  # the chosen group option, whole
    assert printed["finetune"]["lr"] == 0.123  # the override applied
    for group in ("data", "backbone", "attribution", "trainer"):
        assert group in printed, sorted(printed)
    assert not (tmp_path / "outputs").exists(), "printing the config must not start a run"


def outline_region(png: np.ndarray) -> np.ndarray:
    """The picture's pixels in a one-item preview: the rows/columns with saturated colour (not text)."""
    colored = png.max(2) - png.min(2) > 40
    rows, cols = np.where(colored.mean(1) > 0.03)[0], np.where(colored.mean(0) > 0.03)[0]
    return png[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_data_preview_outlines_the_synthetic_masks(tmp_path):
    """The PNG has white outline pixels along the object mask's boundary, and few elsewhere."""
    from lightning_modules.data import SyntheticDataModule

    out = tmp_path / "preview.png"
    result = harmony(tmp_path, "data", "preview", "--n", "1", "--out", str(out), f"paths.cache={TEST_CACHE / 'cache'}")
    assert result.returncode == 0, result.stderr
    region = outline_region(np.asarray(Image.open(out).convert("RGB")).astype(int))
    datamodule = SyntheticDataModule(cache_dir=TEST_CACHE / "cache")
    datamodule.setup()
    mask = datamodule.split("train")[0]["mask"][0].numpy() > 0.5
    # the mask at the PNG's resolution (nearest pixel), its boundary, and a 3-pixel band around it
    h, w = region.shape[:2]
    rows = np.minimum(((np.arange(h) + 0.5) * mask.shape[0] / h).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * mask.shape[1] / w).astype(int), mask.shape[1] - 1)
    big = mask[rows][:, cols]
    boundary = big ^ ndimage.binary_erosion(big)
    band = ndimage.binary_dilation(boundary, iterations=3)
    white = (region.min(2) > 200) & (region.max(2) - region.min(2) < 40)
    assert boundary.sum() > 20, "the first synthetic item has an object"
    covered = (ndimage.binary_dilation(white, iterations=2) & boundary).sum() / boundary.sum()
    assert covered > 0.8, f"only {covered:.0%} of the mask boundary has an outline"
    assert (white & band).sum() / white.sum() > 0.6, "white pixels are mostly not on the mask boundary"


STAND_IN = '''
import time

def main(argv):
    start = time.perf_counter()
    sorted(range(20000, 0, -1))
    ours = time.perf_counter() - start
    return [dict(benchmark="stand-in", case="sort 20,000" + (" (quick)" if "--quick" in argv else ""),
                 ours_s=ours, reference_s=2 * ours, ratio=2.0, target=">= 1.5x", ok=True)]
'''


def test_bench_writes_its_summary_and_names_broken_benchmarks(tmp_path, monkeypatch):
    """benchmarks/run_all.py (make bench) over a stand-in folder: one benchmark that measures,
    one that breaks; the summary has the first's row and names the second."""
    spec = importlib.util.spec_from_file_location("harmony_run_all", REPO / "benchmarks" / "run_all.py")
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "bench_standin.py").write_text(STAND_IN)
    (folder / "bench_broken.py").write_text("def main(argv):\n    raise RuntimeError('no reference here')\n")
    monkeypatch.setattr(run_all, "HERE", folder)
    out = tmp_path / "bench" / "summary.md"
    assert run_all.main(["--quick", "--out", str(out)]) == 1  # a broken benchmark fails the run
    text = out.read_text()
    assert "| benchmark | case | ours (s) | reference (s) | ratio | target | ok |" in text
    row = next(line for line in text.splitlines() if line.startswith("| stand-in |"))
    assert "sort 20,000 (quick)" in row and "| 2 |" in row and "| yes |" in row
    assert "bench_broken: RuntimeError: no reference here" in text
    assert "quick sizes" in text
