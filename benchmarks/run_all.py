"""Run every benchmark in benchmarks/ and write outputs/bench/summary.md.

Each ``bench_*.py`` has ``main(argv) -> list[dict]`` returning rows with keys
benchmark, case, ours_s, reference_s, ratio, target, ok (and optional extras).
``python benchmarks/run_all.py --quick`` runs the small sizes.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_markdown(rows: list[dict], failures: list[str], seconds: float, quick: bool) -> str:
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor() or 'cpu'}"
    lines = [
        "# harmony benchmarks",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}; {machine}; torch {torch.__version__}; "
        f"{'quick sizes' if quick else 'full sizes'}; {seconds:.0f} s in all.",
        "",
        "Ratios compare against a reference measured in the same run (speed-up = reference / ours "
        "unless the target says otherwise).",
        "",
        "| benchmark | case | ours (s) | reference (s) | ratio | target | ok | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = {True: "yes", False: "**no**", None: ""}.get(r.get("ok"), str(r.get("ok")))
        lines.append("| " + " | ".join([_fmt(r.get("benchmark")), _fmt(r.get("case")), _fmt(r.get("ours_s")),
                                        _fmt(r.get("reference_s")), _fmt(r.get("ratio")), _fmt(r.get("target")),
                                        ok, _fmt(r.get("notes"))]) + " |")
    if failures:
        lines += ["", "## Benchmarks that failed to run", ""] + [f"- {f}" for f in failures]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", help="benchmark file stems to run, e.g. bench_metrics")
    parser.add_argument("--out", default="outputs/bench/summary.md")
    args = parser.parse_args(argv)
    rows, failures, start = [], [], time.perf_counter()
    for path in sorted(HERE.glob("bench_*.py")):
        if args.only and path.stem not in args.only:
            continue
        print(f"== {path.stem}", flush=True)
        try:
            rows += _load(path).main(["--quick"] if args.quick else [])
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            failures.append(f"{path.stem}: {type(exc).__name__}: {exc}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(summary_markdown(rows, failures, time.perf_counter() - start, args.quick))
    print(out.read_text())
    print(f"wrote {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
