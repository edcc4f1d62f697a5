"""``make demo``: the whole study on the embedded default, stage by stage, each stage timed.

finetune (rma and focus, gradcam) -> build-dataset -> simulate-annotators -> analyze.
Every stage is the real ``harmony`` command, so the demo is exactly what a user runs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from harmony_cli.console import output_console, print_rule
from harmony_cli.defaults import config_default, outputs_root
from rich.table import Table

console = output_console()
HARMONY = [sys.executable, "-m", "harmony_cli.main"]


def _newest(folder: Path) -> Path | None:
    runs = [p for p in folder.glob("*") if p.is_dir()] if folder.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def run_stage(title: str, args: list[str], timings: list[tuple[str, float]]) -> None:
    print_rule(console, f"[bold]{title}")
    console.print("$ harmony " + " ".join(args), style="dim", highlight=False)
    start = time.perf_counter()
    result = subprocess.run([*HARMONY, *args])
    seconds = time.perf_counter() - start
    timings.append((title, seconds))
    console.print(f"[green]{title}: {seconds:.0f} s[/]")
    if result.returncode != 0:
        console.print(f"[bold red]{title} failed (exit {result.returncode}); the demo stops here.[/]")
        sys.exit(result.returncode)


def main() -> None:
    outputs = outputs_root()
    study = os.environ.get("HARMONY_DEMO_STUDY", "demo")
    per_cell = os.environ.get("HARMONY_DEMO_EXAMPLES", "100")
    timings: list[tuple[str, float]] = []
    total = time.perf_counter()

    run_stage("1. finetune (rma, focus; gradcam; tiny backbone)",
              ["finetune", "-m", "metric=rma,focus", "attribution=gradcam"], timings)
    sweep = _newest(outputs / "finetune-multirun")
    run_stage("2. build-dataset", ["build-dataset", f"run={sweep}", f"study.name={study}",
                                   f"study.examples_per_cell={per_cell}"], timings)
    run_stage("3. simulate-annotators", ["simulate-annotators", "--study", study, "--annotators", "5"], timings)
    report_parent = Path(config_default("analysis.out_dir"))
    run_stage("4. analyze", ["analyze", "--study", study], timings)
    report = _newest(report_parent)

    table = Table(title="harmony demo")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for title, seconds in timings:
        table.add_row(title, f"{seconds:.0f}")
    table.add_row("[bold]all stages", f"[bold]{time.perf_counter() - total:.0f}")
    console.print(table)
    console.print(f"fine-tuning runs:   {sweep}  (metrics.json and a PNG of original vs fine-tuned maps per run)")
    if report is not None:
        console.print(f"analysis report:    {report}/report.md, report.json, cells.csv")
        console.print(f"preference chart:   {report}/preferences.png")
    bin_dir = Path(sys.executable).parent
    console.print(f"annotation page:    {bin_dir}/harmony annotators add alice;  "
                  f"{bin_dir}/harmony annotators assign alice --study {study};  "
                  f"{bin_dir}/harmony serve   -> http://localhost:8501", highlight=False)


if __name__ == "__main__":
    main()
