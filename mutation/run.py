"""Mutation testing of harmony's scientific core with cosmic-ray (`make mutate`).

For each module of mutation/modules.toml: cosmic-ray lists every mutant of the file
(a flipped operator, a changed number, a negated condition, ...); mutants outside the
module's `scope`, in never-evaluated annotations, or listed in mutation/equivalent.toml
are skipped; each remaining mutant is applied to a scratch copy of the tree
(outputs/mutation/trees/<module>/<worker>, never the checkout) and the module's tests run once against it.
A mutant is killed when the tests fail (or hang past the timeout). Results live in one
cosmic-ray session per module (outputs/mutation/sessions/), so an interrupted run resumes,
and outputs/mutation/summary.md lists the killed share and every surviving mutant.

    python mutation/run.py                       # every module (make mutate)
    python mutation/run.py --module metrics.rma  # one or several (comma-separated names or paths)
    python mutation/run.py --summary             # rewrite summary.md from the sessions only
    python mutation/run.py --plan                # count mutants, time each module's tests once
    python mutation/run.py --module X --rerun-survivors  # after a test was added for them
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import json
import os
import queue
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import attrs
import cosmic_ray
from cosmic_ray.commands import init as cr_init
from cosmic_ray.mutating import mutate_and_test
from cosmic_ray.testing import run_tests
from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rules import MutationError, mutated_line, skip_reason  # noqa: E402,F401  (beside this file)
from summary import write_summary  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "mutation" / "modules.toml"
EQUIVALENT = REPO / "mutation" / "equivalent.toml"
OUT = Path(os.environ.get("HARMONY_OUTPUTS", REPO / "outputs")) / "mutation"


@dataclass
class Module:
    name: str
    path: str
    tests: list[str]
    select: str | None = None
    scope: list[str] = field(default_factory=list)

    def keys(self, equivalents: list[dict], skip_operators: list[dict]) -> dict:
        """"source": the file and cosmic-ray (when it changes, every result is void); "tests": which tests
        run; "rules": which mutants are skipped."""
        version = getattr(cosmic_ray, "__version__", "")
        rules = json.dumps([self.scope, [e for e in equivalents if e["path"] == self.path], skip_operators],
                           sort_keys=True)
        return {"source": hashlib.sha256((REPO / self.path).read_bytes() + version.encode()).hexdigest(),
                "tests": [sorted(self.tests), self.select], "rules": hashlib.sha256(rules.encode()).hexdigest()}


def results_still_valid(old: dict, new: dict) -> set[str]:
    """Which outcomes of an old session hold for the new one: none when the file changed; a killed
    mutant stays killed when the tests only grew; a survivor only when the tests are the same."""
    if old.get("source") != new["source"]:
        return set()
    if old.get("tests") == new["tests"]:
        return {TestOutcome.KILLED, TestOutcome.SURVIVED, TestOutcome.INCOMPETENT}
    (old_tests, old_select), (new_tests, new_select) = old.get("tests", [[], ""]), new["tests"]
    if set(old_tests) <= set(new_tests) and new_select in (None, old_select):
        return {TestOutcome.KILLED, TestOutcome.INCOMPETENT}
    return set()


def load_config() -> tuple[dict, list[Module], list[dict]]:
    config = tomllib.loads(CONFIG.read_text())
    modules = [Module(**entry) for entry in config.get("module", [])]
    equivalents = tomllib.loads(EQUIVALENT.read_text()).get("equivalent", [])
    for entry in equivalents:
        missing = {"path", "operator", "line", "reason"} - entry.keys()
        if missing:
            raise MutationError(f"{EQUIVALENT.name}: an entry lacks {sorted(missing)}: each needs path, operator, "
                                f"line and reason")
    return config.get("settings", {}), modules, equivalents


def pick(modules: list[Module], wanted: str | None) -> list[Module]:
    if not wanted:
        return modules
    chosen = []
    for item in (w.strip() for w in wanted.split(",") if w.strip()):
        match = [m for m in modules if item in (m.name, m.path)]
        if not match:
            raise MutationError(f"no module {item!r} in {CONFIG.relative_to(REPO)}: one of "
                                f"{', '.join(m.name for m in modules)}")
        chosen += match
    return chosen


# --------------------------------------------------------------------------- running


def copy_tree(dest: Path) -> None:
    """A scratch copy of the checkout's files (tracked and new, not ignored) that mutants may edit."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.splitlines()
    shutil.rmtree(dest, ignore_errors=True)
    for rel in files:
        source = REPO / rel
        if source.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / rel)
    shared = REPO.parent / "shared"  # tests read ../shared (the published study's db) when present
    if shared.is_dir() and not (dest.parent / "shared").is_symlink():
        (dest.parent / "shared").symlink_to(shared)


def make_trees(name: str, count: int) -> list[Path]:
    """Fresh scratch copies for one module's mutants, one per parallel worker (modules may run side by side)."""
    trees = [OUT / "trees" / name / str(k) for k in range(count)]
    for tree in trees:
        copy_tree(tree)
    # `python -m` puts the working directory first on sys.path: make it a folder without the project,
    # so that each test run imports the project from its own tree (PYTHONPATH) only.
    os.chdir(OUT / "trees")
    return trees


def test_paths(module: Module, tree: Path) -> list[str]:
    """The module's tests inside ``tree``; a pattern (tests/harmony_cli/analysis/test_*.py) names every file it matches."""
    paths = []
    for test in module.tests:
        matches = sorted(tree.glob(test)) if any(c in test for c in "*?[") else [tree / test]
        if not matches:
            raise MutationError(f"{module.name}: no test file matches {test!r}: update {CONFIG.relative_to(REPO)}")
        paths += [str(path) for path in matches]
    return paths


def test_command(module: Module, timeout: float, tree: Path) -> str:
    args = ["env", f"PYTHONPATH={tree}", sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
            f"--rootdir={tree}", f"--timeout={int(timeout)}", *test_paths(module, tree)]
    if module.select:
        args += ["-k", module.select]
    return shlex.join(args)


def _spec_key(mutation) -> tuple:
    return mutation.operator_name, mutation.occurrence, tuple(mutation.start_pos), tuple(mutation.end_pos)


def _kept_results(session: Path, outcomes: set[str]) -> dict[tuple, WorkResult]:
    """The results of the mutants run in an existing session whose outcome is in ``outcomes``."""
    if not outcomes:
        return {}
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        return {_spec_key(item.mutations[0]): results[item.job_id] for item in db.work_items
                if item.job_id in results and results[item.job_id].worker_outcome != WorkerOutcome.SKIPPED
                and results[item.job_id].test_outcome in outcomes}


def prepare_session(module: Module, session: Path, equivalents: list[dict], skip_operators: list[dict],
                    tree_dir: Path) -> None:
    """Create the module's session with skipped mutants marked; keep it when nothing changed, else keep
    the results that still hold (see :func:`results_still_valid`)."""
    key_file = session.with_suffix(".key")
    keys = module.keys(equivalents, skip_operators)
    try:
        old = json.loads(key_file.read_text()) if session.exists() else {}
    except (OSError, ValueError):
        old = {}
    if old == keys:
        return
    kept = _kept_results(session, results_still_valid(old, keys))
    session.unlink(missing_ok=True)
    source = (tree_dir / module.path).read_text()
    tree, lines = ast.parse(source), source.splitlines()
    with use_db(str(session), WorkDB.Mode.create) as db, contextlib.chdir(tree_dir):
        cr_init([Path(module.path)], db, {})  # paths relative to a tree
        for item in db.work_items:
            reason = skip_reason(item.mutations[0], module, tree, lines, equivalents, skip_operators)
            if reason:
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=reason))
            elif _spec_key(item.mutations[0]) in kept:
                db.set_result(item.job_id, kept[_spec_key(item.mutations[0])])
    key_file.write_text(json.dumps(keys))


def forget_survivors(session: Path) -> int:
    """Make a session's surviving mutants pending again (a test written since may kill them: a changed
    test file does not change the session's key). Returns how many."""
    with contextlib.closing(sqlite3.connect(session)) as db, db:
        return db.execute("DELETE FROM work_results WHERE test_outcome = ?", (TestOutcome.SURVIVED.name,)).rowcount


def run_module(module: Module, settings: dict, equivalents: list[dict], trees: list[Path],
               rerun_survivors: bool = False) -> None:
    sessions = OUT / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    session = sessions / f"{module.name}.sqlite"
    if not (trees[0] / module.path).is_file():
        raise MutationError(f"{module.name}: {module.path} does not exist: update {CONFIG.relative_to(REPO)}")
    prepare_session(module, session, equivalents, settings.get("skip_operators", []), trees[0])
    if rerun_survivors:
        print(f"[{module.name}] {forget_survivors(session)} surviving mutants to run again", flush=True)
    timeout = float(settings.get("timeout", 300))
    with use_db(str(session), WorkDB.Mode.open) as db:
        pending = list(db.pending_work_items)
        print(f"[{module.name}] {db.num_work_items} mutants, {len(pending)} to run on {len(trees)} workers: "
              f"{test_command(module, timeout, trees[0])}", flush=True)
        if not pending:
            return
        started, cpu_started = time.monotonic(), children_cpu()
        outcome, output = run_tests(test_command(module, timeout, trees[0]), timeout)
        if outcome != TestOutcome.SURVIVED:
            raise MutationError(f"{module.name}: its tests fail without any mutant; fix them first:\n"
                                + output[-2000:])
        free = queue.Queue()
        for tree in trees:
            free.put(tree)

        def run_one(item):
            tree = free.get()
            try:  # the session holds paths relative to a tree: this worker mutates its own
                mutations = [attrs.evolve(m, module_path=tree / m.module_path) for m in item.mutations]
                return mutate_and_test(mutations, test_command(module, timeout, tree), timeout)
            finally:
                free.put(tree)

        with ThreadPoolExecutor(len(trees)) as pool:
            futures = {pool.submit(run_one, item): item for item in pending}
            for done, future in enumerate(as_completed(futures), 1):
                item, result = futures[future], future.result()
                db.set_result(item.job_id, result)
                mutation = item.mutations[0]
                print(f"[{module.name}] {done}/{len(pending)} line {mutation.start_pos[0]} "
                      f"{mutation.operator_name}: {result.test_outcome}", flush=True)
        _record_time(sessions / f"{module.name}.time.json", time.monotonic() - started,
                     children_cpu() - cpu_started, len(pending))


def children_cpu() -> float:
    """CPU seconds used by finished child processes (the test runs): a load-independent cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _record_time(path: Path, seconds: float, cpu: float, mutants: int) -> None:
    """Accumulate wall and CPU seconds of the runs (the baseline run included) per module."""
    totals = json.loads(path.read_text()) if path.exists() else {}
    for key, value in (("seconds", seconds), ("cpu_seconds", cpu), ("mutants", mutants)):
        totals[key] = totals.get(key, 0) + value
    path.write_text(json.dumps(totals))


def plan(modules: list[Module], settings: dict, equivalents: list[dict], tree_dir: Path, timed: bool) -> None:
    """Per module: mutants to run and (``timed``) the CPU seconds of one run of its tests, an upper bound
    per mutant (a killed mutant stops at the first failing test)."""
    timeout, total = float(settings.get("timeout", 300)), 0.0
    for module in modules:
        source = (tree_dir / module.path).read_text()
        tree, lines = ast.parse(source), source.splitlines()
        with use_db(":memory:", WorkDB.Mode.create) as db:
            cr_init([tree_dir / module.path], db, {})
            mutations = [item.mutations[0] for item in db.work_items]
        skip_operators = settings.get("skip_operators", [])
        to_run = sum(skip_reason(m, module, tree, lines, equivalents, skip_operators) is None for m in mutations)
        if not timed:
            print(f"{module.name}: {to_run} of {len(mutations)} mutants to run", flush=True)
            continue
        before = children_cpu()
        outcome, _ = run_tests(test_command(module, timeout, tree_dir), timeout)
        cpu = children_cpu() - before
        total += to_run * cpu
        print(f"{module.name}: {to_run} of {len(mutations)} mutants to run; its tests {outcome.value} in "
              f"{cpu:.0f} CPU s -> at most {to_run * cpu / 60:.0f} CPU min", flush=True)
    if timed:
        print(f"all: at most {total / 3600:.1f} CPU hours")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", help="names or paths from mutation/modules.toml, comma-separated")
    parser.add_argument("--summary", action="store_true", help="only rewrite summary.md from the sessions")
    parser.add_argument("--plan", action="store_true",
                        help="count each module's mutants and time one run of its tests; run no mutant")
    parser.add_argument("--count", action="store_true", help="only count each module's mutants")
    parser.add_argument("--jobs", type=int, help="mutants run at once (default: settings.jobs in modules.toml)")
    parser.add_argument("--rerun-survivors", action="store_true",
                        help="run the surviving mutants of the chosen modules again (after adding tests for them)")
    args = parser.parse_args(argv)
    failed: list[str] = []
    try:
        settings, modules, equivalents = load_config()
        chosen = pick(modules, args.module)
        if not args.summary:
            threads = str(settings.get("threads", 1))
            os.environ.setdefault("HARMONY_TEST_CACHE", str(REPO / "outputs" / "test-cache"))
            os.environ.setdefault("OMP_NUM_THREADS", threads)
            os.environ.setdefault("MKL_NUM_THREADS", threads)
            if args.plan or args.count:  # counting reads the checkout; timing runs tests in a copy
                plan(chosen, settings, equivalents, make_trees("_plan", 1)[0] if args.plan else REPO,
                     timed=args.plan)
                return 0
            failed = run_modules(chosen, settings, equivalents, args.jobs or int(settings.get("jobs", 2)),
                                 args.rerun_survivors)
        path = write_summary(OUT, modules, equivalents, float(settings.get("target", 0.9)))
    except MutationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"summary: {path}")
    return 2 if not args.summary and failed else 0


def run_modules(modules: list[Module], settings: dict, equivalents: list[dict], jobs: int,
                rerun_survivors: bool = False) -> list[str]:
    """Run each module; one whose tests fail unmutated is noted (summary.md says so) and the rest go on."""
    failed = []
    for module in modules:
        error_file = OUT / "sessions" / f"{module.name}.error"
        error_file.parent.mkdir(parents=True, exist_ok=True)
        error_file.unlink(missing_ok=True)
        try:
            run_module(module, settings, equivalents, make_trees(module.name, jobs), rerun_survivors)
            shutil.rmtree(OUT / "trees" / module.name, ignore_errors=True)  # kept only when something failed
        except MutationError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            error_file.write_text(str(exc).splitlines()[0])
            failed.append(module.name)
    return failed


if __name__ == "__main__":
    sys.exit(main())
