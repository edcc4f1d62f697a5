"""Is any fine-tuning step slower than in an earlier commit? Step cost per metric, base vs now.

    python benchmarks/bench_versus.py [--base REF] [--rounds 2] [--quick]

Runs this checkout's ``bench_finetune.step_rows`` (every STEP_CASES entry: step seconds / a plain
cross-entropy step of the same model and batch) against the library code of ``REF`` (extracted
with ``git archive`` to a temporary folder) and of the working tree, alternately in separate
processes, ``--rounds`` times each. Each side's ratio is normalized by its own plain step, so
load on a shared machine cancels; ratio = now / base of those step ratios (median over rounds),
target <= 1.05 ("no metric slower than before"). A case the base cannot run (a setting it
lacks) is reported as such. The default base, BEFORE_METRICS_WORK, is the commit before ROAD curves,
Focus mosaics and RIS in one pass: the "before" the fine-tuning benchmarks compare with.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from rich.table import Table
from console import table_console  # benchmarks/console.py, beside this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BEFORE_METRICS_WORK = "c860600"  # the commit before the metrics work (a fresh clone has it)


def _extract(ref: str, folder: Path) -> None:
    done = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True)
    if done.returncode:
        raise RuntimeError(f"git cannot read commit {ref} here ({done.stderr.decode().strip()[:120]}): run it "
                           f"in a full clone (not shallow, not an unpacked sdist) or pass --base")
    archive = done.stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def _worker(quick: bool, only: str | None) -> None:
    """One side: every step case, one JSON line each (``error`` where this tree cannot run it)."""
    sys.path.insert(0, str(HERE))
    import bench_finetune

    for case in bench_finetune.STEP_CASES:
        metric, attribution, _, _, overrides = case
        key = f"{metric} + {attribution} {' '.join(overrides)}".strip()
        if only and only not in key:
            continue
        try:
            (row,) = bench_finetune.step_rows(quick, [case])
            print(json.dumps({"case": key, "ratio": row["ratio"]}), flush=True)
        except Exception as error:  # noqa: BLE001 - a setting the base lacks is a result here
            print(json.dumps({"case": key, "error": f"{type(error).__name__}: {str(error)[:80]}"}), flush=True)


def _side(tree: Path, quick: bool, only: str | None) -> dict[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(tree), "HYDRA_FULL_ERROR": "0"}
    command = [sys.executable, str(HERE / "bench_versus.py"), "--worker"] + (["--quick"] if quick else [])
    command += ["--only", only] if only else []
    out = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {row["case"]: row for row in rows}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=BEFORE_METRICS_WORK,
                        help=f"the earlier commit (default {BEFORE_METRICS_WORK}: before the metrics work)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per side (default 2)")
    parser.add_argument("--quick", action="store_true", help="small batch, few repeats")
    parser.add_argument("--only", help="the cases whose name contains this text, e.g. 'ris'")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.quick, args.only)
        return []
    runs: dict[str, list[dict]] = {"base": [], "now": []}
    with tempfile.TemporaryDirectory(prefix="harmony-base-") as tmp:
        _extract(args.base, Path(tmp))
        for _ in range(args.rounds):
            runs["base"].append(_side(Path(tmp), args.quick, args.only))
            runs["now"].append(_side(REPO, args.quick, args.only))
    rows = []
    for case in runs["now"][0]:
        base = [r[case]["ratio"] for r in runs["base"] if "ratio" in r.get(case, {})]
        now = [r[case]["ratio"] for r in runs["now"] if "ratio" in r.get(case, {})]
        row = {"benchmark": f"finetune step vs {args.base}", "case": case, "target": "<= 1.05"}
        if base and now:
            ratio = statistics.median(now) / statistics.median(base)
            row.update(ours_s=statistics.median(now), reference_s=statistics.median(base), ratio=ratio,
                       ok=ratio <= 1.05, notes="ours_s / reference_s: step / plain step, now and base")
        else:
            errors = {r[case].get("error") for r in runs["base"] if case in r} - {None}
            row.update(ok=None, notes=f"base cannot run it: {'; '.join(sorted(errors)) or 'not in base'}")
        rows.append(row)
    table = Table(title=f"fine-tuning step / plain step, now vs {args.base} ({args.rounds} rounds, alternating)")
    for column in ("case", "base", "now", "now / base", "target", "ok", "notes"):
        table.add_column(column, overflow="fold")
    for row in rows:
        fmt = (lambda v: f"{v:.3g}" if isinstance(v, float) else "")
        table.add_row(row["case"], fmt(row.get("reference_s")), fmt(row.get("ours_s")), fmt(row.get("ratio")),
                      row["target"], "" if row["ok"] is None else str(row["ok"]), row["notes"])
    table_console().print(table)
    return rows


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:
        sys.exit(f"bench_versus: {error}")
