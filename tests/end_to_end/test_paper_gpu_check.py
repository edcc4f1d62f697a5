"""benchmarks/gpu_check.py on a machine without CUDA: one clear line, status 2 (CUDA hidden when present)."""
from __future__ import annotations

import os
import subprocess
import sys
from tests.conftest import REPO



def test_gpu_check_without_cuda_says_so_in_one_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpu_check: no CUDA device") and "NVIDIA GPU" in lines[0]
