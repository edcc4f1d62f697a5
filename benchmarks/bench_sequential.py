"""The annotation page's store path in a sequential study: answering while the store does the cells' looks.

8 annotators (threads) answer at full speed through the page's functions (webui.session.submit_answer with
a logged-in session's version, then the next example's screen), as benchmarks/bench_webui.py does, in two
studies of the same store with the same cells and examples: one of the fixed design (the reference), one
sequential (a look every 10 real labels of a cell; a decided cell is refused and skipped). The two
alternate in rounds so that both meet the same machine load. Two loads: annotators who read each pair for
``--think`` seconds (0.5: two answers a second each, several times faster than people; the 50 ms target is
theirs), and annotators at full speed (a stress test: 8 threads of one process share its interpreter, so the
latency is mostly the wait for the others, for both designs alike). Measured: p50/p95 of "answer + next example";
the sequential path includes the looks (each runs the rule on the cell's labels when one is due, after the
answer's transaction) and the next-example query that skips decided cells. Before the measured rounds both
paths run once for WARM_UP_S: a page server computes the rule's boundaries once per design (about 0.5 s
for 100 looks), at its first look.

    .venv/bin/python benchmarks/bench_sequential.py            # 4,000 examples, 8 annotators, 30 s
    .venv/bin/python benchmarks/bench_sequential.py --quick    # 1,000 examples, 8 annotators, 6 s
"""
from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

from console import print_timing_rows, table_console  # benchmarks/console.py, beside this file
from sqlalchemy import func, insert, select

from harmony_cli.store import Annotator, AnswerRefused, Example, Store
from harmony_cli.store.models import SequentialCell
from webui.session import BUTTONS, SECRET_NAME, example_screen, looks_done, open_cell, submit_answer

P95_TARGET_S = 0.050  # the paced load's p95 (an annotator's wait after a key press)
STRESS_RATIO = 1.10   # at full speed: the sequential design no slower than the fixed one, give or take
CELL_SIZE = 500
ROUNDS = 3
LOOK_EVERY = 10
MAX_LABELS = 1000  # the published study's cells: 200 examples x 5 labels, so 100 looks
STUDIES = {"bench-fixed": {"design": "fixed"},
           "bench-sequential": {"design": "sequential",
                                "sequential": {"max_labels_per_cell": MAX_LABELS, "look_every": LOOK_EVERY}}}
WARM_UP_S = 1.0  # both paths once, unmeasured: the rule's boundaries are computed once per process and design


def build_studies(store: Store, examples: int, annotators: int) -> tuple[dict[str, int], list[dict], list[int]]:
    """Both studies (the same cells of CELL_SIZE examples) and ``annotators`` real accounts assigned to both."""
    cells = [{"dataset": "synthetic", "metric": f"metric{i}", "backbone": "tiny", "attribution": "gradcam"}
             for i in range((examples + CELL_SIZE - 1) // CELL_SIZE)]
    with store.write() as session:  # real accounts (their labels count and trigger looks), without a password
        session.execute(insert(Annotator), [dict(name=f"bench{i}", password_hash=None) for i in range(annotators)])
    with store.read() as session:
        ids = list(session.scalars(select(Annotator.id).where(Annotator.name.like("bench%")).order_by(Annotator.id)))
    study_ids = {}
    for name, design in STUDIES.items():
        study = store.get_or_create_study(name, config={"labels_per_example": annotators + 1, **design})
        with store.write() as session:
            session.execute(insert(Example), [
                dict(study_id=study.id, **cells[i // CELL_SIZE], source_key=f"k{i}", position=i % CELL_SIZE,
                     class_name="shape", image_path=f"{i}.png", original_map_path=f"{i}-a.png",
                     finetuned_map_path=f"{i}-b.png") for i in range(examples)])
        for i in range(annotators):
            store.assign(f"bench{i}", name)
        study_ids[name] = study.id
    return study_ids, cells, ids


def annotate(store: Store, secret: str, annotator_id: int, study_id: int, cells: list[dict], first: int,
             deadline: float, seed: int, think: float = 0.0) -> dict:
    """One annotator until ``deadline``, cell after cell, ``think`` seconds between an answer's screen and the
    next answer: latencies, answers, refusals (a cell decided by another writer's look between two of this one's
    answers)."""
    rng = random.Random(seed)
    latencies, refused = [], 0
    for cell in cells[first:] + cells[:first]:
        cursor = open_cell(store, annotator_id, study_id, cell)
        while cursor.example_id is not None and time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                submit_answer(store, secret, annotator_id, cursor, rng.choice(BUTTONS), cursor.token,
                              session_version=0)
            except AnswerRefused:
                refused += 1
            example_screen(store, secret, annotator_id, cursor, None)
            latencies.append(time.perf_counter() - start)
            if think:
                time.sleep(think)
        if time.perf_counter() >= deadline:
            break
    return {"latencies": latencies, "refused": refused}


def run_load(store: Store, secret: str, study_id: int, cells: list[dict], annotator_ids: list[int],
             seconds: float, think: float = 0.0) -> dict:
    """Every annotator in its own thread for ``seconds``; the latencies and refusals of all."""
    results: list = [None] * len(annotator_ids)
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        try:
            results[i] = annotate(store, secret, annotator_ids[i], study_id, cells, i % len(cells), deadline, i,
                                  think)
        except BaseException as exc:  # raised below, not lost with its thread
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(annotator_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return {"latencies": [x for r in results for x in r["latencies"]], "refused": sum(r["refused"] for r in results)}


def measured_rounds(store: Store, secret: str, study_ids: dict[str, int], cells: list[dict],
                    annotator_ids: list[int], seconds: float, think: float) -> tuple[dict, dict]:
    """(fixed, sequential): latencies and refusals of ``seconds`` split over ROUNDS alternating rounds, so that
    both designs meet the same machine load."""
    fixed, sequential = {"latencies": [], "refused": 0}, {"latencies": [], "refused": 0}
    for _ in range(ROUNDS):
        for total, name in ((fixed, "bench-fixed"), (sequential, "bench-sequential")):
            part = run_load(store, secret, study_ids[name], cells, annotator_ids, seconds / ROUNDS / 2, think)
            total["latencies"] += part["latencies"]
            total["refused"] += part["refused"]
    return fixed, sequential


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 examples for 6 s (a smoke run)")
    parser.add_argument("--examples", type=int)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--think", type=float, default=0.5, help="seconds each annotator reads a pair (paced load)")
    args = parser.parse_args(argv)
    examples = args.examples or (1_000 if args.quick else 4_000)
    seconds = args.seconds or (6.0 if args.quick else 30.0)

    with tempfile.TemporaryDirectory(prefix="bench-sequential-") as folder:
        store = Store.open(f"sqlite:///{Path(folder) / 'harmony.db'}")
        study_ids, cells, annotator_ids = build_studies(store, examples, args.annotators)
        secret = store.secret(SECRET_NAME)
        for name in STUDIES:
            run_load(store, secret, study_ids[name], cells, annotator_ids, WARM_UP_S)
        loads = {think: measured_rounds(store, secret, study_ids, cells, annotator_ids, seconds, think)
                 for think in (args.think, 0.0)}
        looks_done(timeout=120)  # the page server's look thread catches up before the store goes
        with store.read() as session:
            looks = session.scalar(select(func.coalesce(func.sum(SequentialCell.look), 0)))
            decided = session.scalar(select(func.count(SequentialCell.id)).where(SequentialCell.verdict != "undecided"))
        store.close()

    n = args.annotators
    answers = ", ".join(f"{len(sequential['latencies']):,} vs {len(fixed['latencies']):,} answers "
                        f"({'full speed' if not think else f'{think} s reading'})"
                        for think, (fixed, sequential) in loads.items())
    refused = sum(sequential["refused"] for _, sequential in loads.values())
    where = (f"{examples:,} examples in {len(cells)} cells, {n} annotators, sqlite; sequential: {looks} looks, "
             f"{decided} cells decided, {refused} answers refused in a cell decided meanwhile; {answers}")
    rows = []
    for think, (fixed, sequential) in loads.items():
        for q, label in ((0.50, "p50"), (0.95, "p95")):
            ours, reference = percentile(sequential["latencies"], q), percentile(fixed["latencies"], q)
            paced = f"reading {think} s" if think else "full speed (stress)"
            target, ok = ((f"< {P95_TARGET_S} s", ours < P95_TARGET_S) if think
                          else (f"ratio <= {STRESS_RATIO}", ours / reference <= STRESS_RATIO))
            rows.append({"benchmark": "sequential", "case": f"answer + next example, {label}, {n} annotators "
                         f"{paced}, sequential vs fixed design", "ours_s": ours, "reference_s": reference,
                         "ratio": ours / reference, "target": target, "ok": ok, "notes": where})
    print_timing_rows("Annotation page in a sequential study (reference: the fixed design, same cells, same writers, "
                      "same run)", rows)
    table_console().print(where, highlight=False, soft_wrap=True)
    return rows


if __name__ == "__main__":
    main()
