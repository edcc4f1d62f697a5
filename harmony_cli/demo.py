"""``make demo``: the whole study on the embedded default, stage by stage, each stage timed.

finetune (rma and focus, gradcam) -> build-dataset -> simulate-annotators -> analyze.
Every stage is the real ``harmony`` command, so the demo is exactly what a user runs. It ends with
the verdict table and the three things to try next, each a command that works from this folder.

Run again, it reuses what it made: a finished fine-tuning sweep of the same overrides is kept (an
interrupted one is resumed), and build-dataset and simulate-annotators add nothing to a complete
study. Arguments are Hydra overrides for finetune and build-dataset (``trainer.max_steps=20``: a
shorter demo); ``HARMONY_DEMO_STUDY`` and ``HARMONY_DEMO_EXAMPLES`` name the study and its size.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harmony_cli.console import output_console, print_rule
from harmony_cli.defaults import config_default, outputs_root

console = output_console()
HARMONY = [sys.executable, "-m", "harmony_cli.main"]
SWEEP = ["metric=rma,focus", "attribution=gradcam"]
JOBS = 2  # the sweep's runs: rma and focus


def _newest(folder: Path) -> Path | None:
    runs = [p for p in folder.glob("*") if p.is_dir()] if folder.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def run_stage(title: str, args: list[str], timings: list[tuple[str, float]]) -> None:
    print_rule(console, f"[bold]{title}")
    console.print("$ harmony " + " ".join(args), style="dim", highlight=False)
    start = time.perf_counter()
    # unbuffered: in a log file each line of the stage appears when it is printed, not minutes later
    result = subprocess.run([*HARMONY, *args], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    timings.append((title, seconds))
    console.print(f"[green]{title}: {seconds:.0f} s[/]")
    if result.returncode != 0:
        console.print(f"[bold red]{title} failed (exit {result.returncode}); the demo stops here.[/]")
        sys.exit(result.returncode)


def earlier_sweep(outputs: Path, overrides: list[str]) -> tuple[Path | None, bool]:
    """The newest sweep of these overrides under ``outputs`` and whether all its runs finished."""
    from lightning_modules.finetune.rundir import find_resumable  # torch: the demo's own process only starts the steps

    sweep = find_resumable(outputs / "finetune-multirun", overrides, multirun=True)
    finished = sweep is not None and len(list(sweep.glob("*/metrics.json"))) == JOBS
    return sweep, finished


def finetune_stage(outputs: Path, extra: list[str], timings: list[tuple[str, float]]) -> Path:
    """Stage 1: the sweep, fine-tuned once; a later demo reuses it, or resumes it when interrupted."""
    title = "1. finetune (rma, focus; gradcam; tiny backbone)"
    sweep, finished = earlier_sweep(outputs, [*SWEEP, *extra])
    if finished:
        print_rule(console, f"[bold]{title}")
        console.print(f"reusing the finished sweep {sweep} (remove it to fine-tune again)", highlight=False)
        timings.append((title, 0.0))
        return sweep
    resume = ["ckpt_path=last"] if sweep is not None else []
    run_stage(title, ["finetune", "-m", *SWEEP, *extra, *resume], timings)
    return _newest(outputs / "finetune-multirun")


def _harmony_command() -> str:
    """How to call harmony from this folder: ``harmony`` when it is on PATH, else its path."""
    here = Path(sys.executable).parent / "harmony"
    found = shutil.which("harmony")
    if found and Path(found).resolve() == here.resolve():
        return "harmony"
    return _path_from_here(here) if here.exists() else f"{_path_from_here(Path(sys.executable))} -m harmony_cli.main"


def _path_from_here(path: Path) -> str:
    """``path`` relative to this folder when it lies inside it, else absolute."""
    relative = os.path.relpath(path)
    return str(path.absolute()) if relative.startswith("..") else relative


def next_steps(study: str, report: Path | None, seconds: float) -> None:
    """The three things to try next, each a command to copy."""
    harmony = _harmony_command()
    lines = [f"harmony demo done in {seconds:.0f} s. Next:",
             f"  open the page:       {harmony} annotators add alice && {harmony} annotators assign alice "
             f"--study {study} && {harmony} serve",
             f"  run the real study:  {harmony} data make-miniature mini/   # rehearse it first: README, "
             f"\"Running the real study\""]
    if report is not None:
        lines.append(f"  read the report:     less {_path_from_here(report / 'report.md')}   # charts: "
                     f"{_path_from_here(report / 'preferences.png')}")
    console.print("\n".join(lines), highlight=False)


def main() -> None:
    extra = sys.argv[1:]
    outputs = outputs_root()
    study = os.environ.get("HARMONY_DEMO_STUDY", "demo")
    per_cell = os.environ.get("HARMONY_DEMO_EXAMPLES", "100")
    timings: list[tuple[str, float]] = []
    total = time.perf_counter()

    sweep = finetune_stage(outputs, extra, timings)
    run_stage("2. build-dataset", ["build-dataset", f"run={sweep}", f"study.name={study}",
                                   f"study.examples_per_cell={per_cell}", *extra], timings)
    run_stage("3. simulate-annotators", ["simulate-annotators", "--study", study, "--annotators", "5"], timings)
    report_parent = Path(config_default("analysis.out_dir"))
    run_stage("4. analyze", ["analyze", "--study", study], timings)
    next_steps(study, _newest(report_parent), time.perf_counter() - total)


if __name__ == "__main__":
    main()
