"""outputs/mutation/summary.md from the per-module cosmic-ray sessions (see run.py)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome

# A skipped mutant's result output starts with one of these (run.py writes them).
EQUIVALENT_TAG, OUT_OF_SCOPE_TAG = "equivalent: ", "out of scope: "


def _changed_line(diff: str | None) -> str:
    """The mutated source line from a unified diff ("+" side)."""
    added = [line[1:].strip() for line in (diff or "").splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    return " / ".join(added) or "?"


def _source_line(repo: Path, path: str, line: int) -> str:
    try:
        return (repo / path).read_text().splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return "?"


def module_results(session: Path) -> dict:
    """Counts of one session and its surviving and excluded mutants."""
    counts = Counter()
    survivors, excluded = [], []
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            mutation = item.mutations[0]
            result = results.get(item.job_id)
            where = (mutation.start_pos[0], mutation.start_pos[1], mutation.operator_name)
            if result is None:
                counts["pending"] += 1
            elif result.worker_outcome == WorkerOutcome.SKIPPED:
                tag = "equivalent" if (result.output or "").startswith(EQUIVALENT_TAG) else "out_of_scope"
                counts[tag] += 1
                if tag == "equivalent":
                    excluded.append((*where, result.output[len(EQUIVALENT_TAG):]))
            elif result.worker_outcome == WorkerOutcome.NO_TEST:
                counts["no_mutation"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                survivors.append((*where, _changed_line(result.diff)))
            else:  # killed, timed out, or broke the import (incompetent): the tests noticed
                counts["killed"] += 1
    return {"counts": counts, "survivors": sorted(survivors), "excluded": sorted(excluded)}


def _row(module, results: dict | None, target: float, timing: dict | None) -> str:
    if results is None:
        return f"| {module.name} | `{module.path}` | not run | | | | | | |"
    c = results["counts"]
    judged = c["killed"] + c["survived"]
    share = c["killed"] / judged if judged else float("nan")
    status = "pending" if c["pending"] else ("ok" if share >= target else "**below**")
    per = max(timing["mutants"], 1) if timing else 1
    seconds = f"{timing['seconds'] / per:.0f} / {timing.get('cpu_seconds', 0) / per:.0f}" if timing else ""
    return (f"| {module.name} | `{module.path}` | {judged + c['pending']} | {c['equivalent']} | {c['killed']} | "
            f"{c['survived']} | {share:.0%} | {status} | {seconds} |")


def write_summary(out: Path, modules: list, equivalents: list[dict], target: float) -> Path:
    repo = Path(__file__).resolve().parent.parent
    sessions = out / "sessions"
    lines = ["# Mutation testing: the scientific core", "",
             f"cosmic-ray mutants per module (mutation/modules.toml), each run against the module's tests; "
             f"target: >= {target:.0%} of the non-equivalent mutants killed. Equivalent mutants "
             f"(mutation/equivalent.toml, and annotations that are never evaluated) are not counted.", "",
             "| module | file | mutants (non-equivalent) | equivalent | killed | survived | killed share | target "
             "| s/mutant (wall / CPU) |",
             "|---|---|---|---|---|---|---|---|---|"]
    details, used_reasons = [], set()
    for module in modules:
        session = sessions / f"{module.name}.sqlite"
        error_file = sessions / f"{module.name}.error"
        if error_file.exists():
            lines.append(f"| {module.name} | `{module.path}` | **not run: {error_file.read_text().strip()}** "
                         f"| | | | | | |")
            continue
        results = module_results(session) if session.exists() else None
        timing_file = sessions / f"{module.name}.time.json"
        timing = json.loads(timing_file.read_text()) if timing_file.exists() else None
        lines.append(_row(module, results, target, timing))
        if results is None:
            continue
        used_reasons |= {reason for *_, reason in results["excluded"]}
        if results["survivors"]:
            details += ["", f"## Surviving mutants: {module.name} (`{module.path}`)", ""]
            details += [f"- line {line}:{col} `{op}`: `{_source_line(repo, module.path, line)}` -> `{mutated}`"
                        for line, col, op, mutated in results["survivors"]]
        listed = [e for e in results["excluded"] if not e[3].startswith("an annotation")]
        annotations = len(results["excluded"]) - len(listed)
        if listed or annotations:
            details += ["", f"## Excluded as equivalent: {module.name}", ""]
            if annotations:
                details.append(f"- {annotations} mutants inside annotations (never evaluated)")
            details += [f"- line {line}:{col} `{op}`: {reason}" for line, col, op, reason in listed]
    stale = [e for e in equivalents if e["reason"] not in used_reasons
             and any(m.path == e["path"] and (sessions / f"{m.name}.sqlite").exists() for m in modules)]
    if stale:
        details += ["", "## Stale exclusions (match no mutant: delete them from mutation/equivalent.toml)", ""]
        details += [f"- `{e['path']}` `{e['operator']}` `{e['line']}`" for e in stale]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.md"
    path.write_text("\n".join(lines + details) + "\n")
    return path
