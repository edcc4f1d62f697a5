"""GPU check for the real study: is a CUDA machine ready for `experiment=paper`, and what does a cell cost?

    python benchmarks/gpu_check.py [--quick] [--steps N] [--batch-size 32] [--image-size 224]

On a machine without CUDA it prints one line and exits with status 2. On a CUDA machine:

1. The miniature paper cells: README's miniature block (``harmony data make-miniature``,
   ``harmony finetune -m experiment=paper ...`` over the five metrics on resnet18 and a vgg16
   cell, ``build-dataset``, ``simulate-annotators``, ``analyze``) in a temporary folder with
   ``trainer=gpu`` in place of ``trainer=cpu``, through the command line. Prints each command's seconds.
2. A full-size fine-tuning step per backbone (resnet18, vgg16; 1000 classes, random weights:
   timing only) x attribution (gradcam, guided_backprop, excitation_backprop) x metric (one
   per family and all five: rma, focus, road, irof, ris) at 224 px, batch 32, in fp32 and
   bf16 autocast: images/s, peak GPU memory, and the ratio of its step time to a plain
   cross-entropy step of the same model, batch and precision, measured alternately in the
   same run. The best precision per row is marked.

Rows are printed as a table and written as JSON to outputs/bench/gpu_check.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ARCHS = ("resnet18", "vgg16")
ATTRIBUTIONS = ("gradcam", "guided_backprop", "excitation_backprop")
METRICS = ("rma", "focus", "road", "irof", "ris")  # localization x2, perturbation x2, stability
NO_CUDA = ("gpu_check: no CUDA device here (torch.cuda.is_available() is False): run "
           "`python benchmarks/gpu_check.py` on a machine with an NVIDIA GPU")


def harmony(*args: str, cwd: Path, env: dict) -> float:
    """Run ``harmony ARGS`` through ``python -m``; seconds taken (raises on failure, with its last lines)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harmony_cli.main", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"harmony {' '.join(args[:2])} failed ({result.returncode}):\n{tail}")
    return time.perf_counter() - start


def readme_miniature_block() -> list[list[str]]:
    """The commands of README's miniature block (the one tests/end_to_end/test_paper_study.py runs), split as the shell would."""
    text = (REPO / "README.md").read_text()
    block = re.findall(r"```bash\n(.*?)```", text[text.index("<!-- miniature-study"):], flags=re.S)[0]
    return [w for line in block.replace("\\\n", " ").splitlines() if (w := shlex.split(line, comments=True))]


def miniature_rows(workdir: Path) -> list[dict]:
    """README's miniature paper study on the GPU (``trainer=cpu`` -> ``trainer=gpu``), through the CLI."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("HARMONY_DB_URL", None)
    env.pop("HARMONY_OUTPUTS", None)
    rows = []
    for words in readme_miniature_block():
        if words[0] == "export":
            key, _, value = words[1].partition("=")
            env[key] = value
            continue
        args = ["trainer=gpu" if w == "trainer=cpu" else w for w in words[1:]]
        seconds = harmony(*args, cwd=workdir, env=env)
        name = " ".join(args[:2]) + (f" ({next(w for w in args if w.startswith('backbone='))})"
                                     if args[0] == "finetune" else "")
        rows.append({"part": "miniature", "case": name, "seconds": round(seconds, 1)})
        print(f"miniature {name}: {seconds:.1f} s", flush=True)
    return rows


def _config(arch: str, metric: str, attribution: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        return compose("config", overrides=[f"backbone={arch}", f"metric={metric}", f"attribution={attribution}",
                                            "backbone.weights=none", "data=imagenet", "data.root=unused"])


def _timed(step, repeats: int) -> float:
    import torch

    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_row(original, arch: str, metric: str, attribution: str, batch: dict, precision: str, repeats: int) -> dict:
    """One full-size step of FinetuneModule vs a plain cross-entropy step, same model, batch and precision."""
    import torch
    import torch.nn.functional as F

    from lightning_modules.finetune import build_module

    module = build_module(_config(arch, metric, attribution), original=copy.deepcopy(original)).cuda()
    module.train()  # both nets stay in eval mode, as in fit
    optimizer = module.configure_optimizers()
    plain = copy.deepcopy(original).cuda().eval()
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=1e-4)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext

    def ours():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = module.objective(batch)["loss"]
        loss.backward()
        optimizer.step()

    def reference():
        plain_optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(plain(batch["image"]), batch["label"])
        loss.backward()
        plain_optimizer.step()

    reference(), ours()  # warm-up (cuDNN autotuning, lazy buffers)
    torch.cuda.reset_peak_memory_stats()
    ours_s = _timed(ours, repeats)
    peak = torch.cuda.max_memory_allocated() / 2**30
    plain_s = _timed(reference, repeats)
    size = len(batch["label"])
    del module, optimizer, plain, plain_optimizer
    torch.cuda.empty_cache()
    return {"part": "step", "arch": arch, "attribution": attribution, "metric": metric, "precision": precision,
            "images_per_s": round(size / ours_s, 1), "step_s": round(ours_s, 4), "plain_step_s": round(plain_s, 4),
            "ratio": round(ours_s / plain_s, 2), "peak_gib": round(peak, 2)}


def step_rows(batch_size: int, image_size: int, repeats: int, quick: bool) -> list[dict]:
    import torch

    from lightning_modules.backbones import torchvision_classifier

    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(batch_size, 1, image_size, image_size)
    masks[:, :, image_size // 4: 3 * image_size // 4, image_size // 4: 3 * image_size // 4] = 1
    batch = {"image": torch.randn(batch_size, 3, image_size, image_size, generator=generator).cuda(),
             "label": torch.randint(0, 1000, (batch_size,), generator=generator).cuda(), "mask": masks.cuda()}
    metrics = ("rma", "road", "ris") if quick else METRICS
    rows = []
    for arch in ARCHS:
        torch.manual_seed(0)
        original = torchvision_classifier(arch, 1000).eval()
        for attribution in ATTRIBUTIONS:
            for metric in metrics:
                pair = []
                for precision in ("fp32", "bf16"):
                    try:
                        pair.append(step_row(original, arch, metric, attribution, batch, precision, repeats))
                    except Exception as exc:  # noqa: BLE001 - report the case (e.g. out of memory) and go on
                        torch.cuda.empty_cache()
                        pair.append({"part": "step", "arch": arch, "attribution": attribution, "metric": metric,
                                     "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:120]})
                timed = [r for r in pair if "step_s" in r]
                if timed:
                    min(timed, key=lambda r: r["step_s"])["best"] = True
                for row in pair:
                    print(json.dumps(row), flush=True)
                rows += pair
    return rows


def print_table(rows: list[dict], device: str) -> None:
    from console import table_console  # benchmarks/console.py, beside this file
    from rich.table import Table

    table = Table(title=f"gpu_check on {device}: full-size step vs a plain cross-entropy step (same model, batch, "
                        f"precision)")
    columns = ("arch", "attribution", "metric", "precision", "images_per_s", "peak_gib", "ratio", "best")
    for column in columns:
        table.add_column(column)
    for row in rows:
        if row["part"] == "step":
            table.add_row(*[str(row.get(c, row.get("error", "")) if c != "best" else ("*" if row.get("best") else ""))
                            for c in columns])
    table_console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="three metrics (one per family), 3 repeats")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case (median)")
    parser.add_argument("--no-miniature", action="store_true", help="only the full-size steps")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0)
    print(f"gpu_check on {device} (torch {torch.__version__}, CUDA {torch.version.cuda})", flush=True)
    rows: list[dict] = []
    if not args.no_miniature:
        with tempfile.TemporaryDirectory(prefix="harmony-gpu-check-") as workdir:
            rows += miniature_rows(Path(workdir))
    rows += step_rows(args.batch_size, args.image_size, 3 if args.quick else args.steps, args.quick)
    print_table(rows, device)
    out = REPO / "outputs" / "bench" / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": device, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
