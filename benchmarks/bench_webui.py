"""The annotation page's store path under load: annotators answering at once.

Each annotator is a thread that does what the page does per answer, with the same
functions (webui.session): store the answer (one upsert + audit row), move to the next
unanswered example, and fetch the screen of that example. Now and then it goes back and
changes an answer, as people do. Measured: answers per second, p50/p95 latency of
"answer + fetch next example", and, against what every thread remembers it answered,
zero lost, changed or duplicated labels.

Measured with assignments on: the page's path (webui.session.submit_answer) with a logged-in
session's answer, so that the store checks in the answer's transaction that the account's
session holds, the study is open, the cell is assigned and the example is below its
labels_per_example (set above the number of writers, so that no answer is refused: the checks
run, the quota never binds), and the next example is the least-labelled one.

The reference is the same 8 writers in the same run with assignments off: the answer stored
without the session check or the study's rules, and the next example the next unanswered one in
shown order (the page before sessions and assignments).

    .venv/bin/python benchmarks/bench_webui.py            # 10,000 examples, 8 annotators, 30 s
    .venv/bin/python benchmarks/bench_webui.py --quick    # 2,000 examples, 8 annotators, 5 s
    .venv/bin/python benchmarks/bench_webui.py --db postgresql+psycopg://...   # an empty PostgreSQL store
"""
from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from harmony_cli.store import Annotator, Example, Label, LabelAudit, Store
from webui.session import (BUTTONS, SECRET_NAME, CellCursor, choice_for, example_screen, left_map, open_cell,
                           submit_answer)

P95_TARGET_S = 0.050
CELL_SIZE = 1000
ROUNDS = 5  # the two paths alternate this many times
CHANGE_RATE = 0.05  # share of answers followed by going back and changing the previous one


def build_study(store: Store, examples: int, annotators: int) -> tuple[int, list[dict], list[int]]:
    """A study of ``examples`` examples in cells of CELL_SIZE, and the annotators (bulk inserts)."""
    study = store.get_or_create_study("bench-webui", image_dir=None)
    cells = [{"dataset": "synthetic", "metric": f"metric{i}", "backbone": "tiny", "attribution": "gradcam"}
             for i in range((examples + CELL_SIZE - 1) // CELL_SIZE)]
    rows = [dict(study_id=study.id, **cells[i // CELL_SIZE], source_key=f"k{i}", position=i % CELL_SIZE,
                 class_name="shape", image_path=f"{i}.png", original_map_path=f"{i}-a.png",
                 finetuned_map_path=f"{i}-b.png") for i in range(examples)]
    with store.write() as session:
        session.execute(insert(Example), rows)
        # accounts without a password (they cannot log in): this measures answering, not argon2
        session.execute(insert(Annotator), [dict(name=f"bench{i}", password_hash=None, simulated=True)
                                            for i in range(annotators)])
    with store.read() as session:
        ids = list(session.scalars(select(Annotator.id).where(Annotator.name.like("bench%")).order_by(Annotator.id)))
    # assignments on for the first half (the measured writers); every writer's label counts toward the
    # quota, which stays above their number so that the checks run but never refuse
    for i in range(annotators // 2):
        store.assign(f"bench{i}", "bench-webui")
    store.update_study_config("bench-webui", labels_per_example=annotators + 1)
    return study.id, cells, ids


def previous_submit(store: Store, secret: str, annotator_id: int, cursor: CellCursor, button: str) -> bool:
    """The answer path with assignments off (and no session check): store for the cursor's example, move on
    to the next unanswered one in shown order."""
    shown = cursor.example_id
    left = left_map(secret, annotator_id, shown)
    store.answer(annotator_id, shown, choice_for(button, left), left_map=left, response_ms=0, source="page")
    following = store.next_unlabeled(annotator_id, cursor.study_id, cursor.cell, after=shown)
    cursor.show(None if following is None else cursor.example_ids.index(following))
    return True


def submit(store: Store, secret: str, annotator_id: int, cursor: CellCursor, button: str, bound: bool) -> bool:
    if not bound:
        return previous_submit(store, secret, annotator_id, cursor, button)
    return submit_answer(store, secret, annotator_id, cursor, button, cursor.token, session_version=0)


def annotate(store: Store, secret: str, annotator_id: int, study_id: int, cells: list[dict], first_cell: int,
             deadline: float, seed: int, bound: bool) -> dict:
    """One annotator at full speed until ``deadline``: latencies and the answers it expects stored."""
    rng = random.Random(seed)
    latencies: list[float] = []
    expected: dict[int, str] = {}
    answers = 0
    for cell in cells[first_cell:] + cells[:first_cell]:
        cursor = open_cell(store, annotator_id, study_id, cell)
        while cursor.example_id is not None and time.perf_counter() < deadline:
            example_id = cursor.example_id
            button = rng.choice(BUTTONS)
            start = time.perf_counter()
            stored = submit(store, secret, annotator_id, cursor, button, bound)
            example_screen(store, secret, annotator_id, cursor, None)
            latencies.append(time.perf_counter() - start)
            assert stored, "an answer was refused"
            answers += 1
            expected[example_id] = choice_for(button, left_map(secret, annotator_id, example_id))
            if rng.random() < CHANGE_RATE and cursor.example_id is not None:
                cursor.show(cursor.example_ids.index(example_id))  # back to it, and change the answer
                button = rng.choice(BUTTONS)
                submit(store, secret, annotator_id, cursor, button, bound)
                answers += 1
                expected[example_id] = choice_for(button, left_map(secret, annotator_id, example_id))
        if time.perf_counter() >= deadline:
            break
    return {"latencies": latencies, "expected": expected, "answers": answers}


def run_load(store: Store, secret: str, study_id: int, cells: list[dict], annotator_ids: list[int],
             seconds: float, bound: bool = True) -> dict:
    """All annotators in threads for ``seconds``; latencies, throughput and what each expects."""
    results: list[dict | BaseException] = [None] * len(annotator_ids)
    deadline = time.perf_counter() + seconds

    def work(i: int) -> None:
        try:
            results[i] = annotate(store, secret, annotator_ids[i], study_id, cells, i % len(cells), deadline,
                                  seed=i, bound=bound)
        except BaseException as exc:  # reported below, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(annotator_ids))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    for result in results:
        if isinstance(result, BaseException):
            raise result
    latencies = sorted(x for r in results for x in r["latencies"])
    return {"wall": wall, "latencies": latencies, "answers": sum(r["answers"] for r in results),
            "expected": {(annotator_ids[i], e): c for i, r in enumerate(results) for e, c in r["expected"].items()}}


def merge(total: dict, part: dict) -> None:
    """Add one round's result to the running total of its path."""
    total["wall"] = total.get("wall", 0.0) + part["wall"]
    total["answers"] = total.get("answers", 0) + part["answers"]
    total["latencies"] = sorted(total.get("latencies", []) + part["latencies"])
    total["expected"] = {**total.get("expected", {}), **part["expected"]}


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def check_labels(store: Store, expected: dict[tuple[int, int], str], answers: int,
                 annotator_ids: list[int]) -> dict:
    """Lost (expected but absent or different) and duplicated labels, and unaudited answers."""
    with store.read() as session:
        rows = session.execute(select(Label.annotator_id, Label.example_id, Label.choice)
                               .where(Label.annotator_id.in_(annotator_ids))).all()
        audits = session.scalar(select(func.count(LabelAudit.id)).where(LabelAudit.annotator_id.in_(annotator_ids)))
    stored: dict[tuple[int, int], str] = {}
    duplicated = 0
    for annotator_id, example_id, choice in rows:
        duplicated += (annotator_id, example_id) in stored
        stored[(annotator_id, example_id)] = choice
    lost = sum(stored.get(key) != choice for key, choice in expected.items())
    unexpected = len(set(stored) - set(expected))
    return {"lost": lost, "duplicated": duplicated, "unexpected": unexpected, "unaudited": answers - audits}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 examples for 5 s (a smoke run)")
    parser.add_argument("--db", help="an empty store URL (default: a new SQLite file in a temporary folder)")
    parser.add_argument("--examples", type=int)
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args(argv)
    examples = args.examples or (2_000 if args.quick else 10_000)
    seconds = args.seconds or (5.0 if args.quick else 30.0)

    with tempfile.TemporaryDirectory(prefix="bench-webui-") as folder:
        store = Store.open(args.db or f"sqlite:///{Path(folder) / 'harmony.db'}")
        backend = store.engine.dialect.name
        study_id, cells, annotator_ids = build_study(store, examples, 2 * args.annotators)
        secret = store.secret(SECRET_NAME)
        # reference: assignments off, the same number of writers, on their own accounts, in
        # alternating rounds so that both meet the same machine load
        previous, load = {}, {}
        for _ in range(ROUNDS):
            merge(previous, run_load(store, secret, study_id, cells, annotator_ids[args.annotators:],
                                     seconds / ROUNDS, bound=False))
            merge(load, run_load(store, secret, study_id, cells, annotator_ids[:args.annotators], seconds / ROUNDS))
        integrity = check_labels(store, {**previous["expected"], **load["expected"]},
                                 previous["answers"] + load["answers"], annotator_ids)
        store.close()

    n = args.annotators
    p50, p95 = percentile(load["latencies"], 0.50), percentile(load["latencies"], 0.95)
    ref_p50, ref_p95 = percentile(previous["latencies"], 0.50), percentile(previous["latencies"], 0.95)  # previous path
    per_answer, ref_per_answer = load["wall"] / load["answers"], previous["wall"] / previous["answers"]
    throughput = load["answers"] / load["wall"]
    bad = integrity["lost"] + integrity["duplicated"] + integrity["unexpected"] + integrity["unaudited"]
    where = f"{examples:,} examples, {n} annotators, {backend}"
    counts = (f"{integrity['lost']} lost, {integrity['duplicated']} duplicated, {integrity['unexpected']} "
              f"unexpected, {integrity['unaudited']} unaudited after {load['answers'] + previous['answers']:,} answers")
    rows = [
        {"benchmark": "webui", "case": f"answer + next example, p50, {n} annotators, assignments on", "ours_s": p50,
         "reference_s": ref_p50, "ratio": p50 / ref_p50, "target": f"< {P95_TARGET_S} s", "ok": p50 < P95_TARGET_S,
         "notes": where},
        {"benchmark": "webui", "case": f"answer + next example, p95, {n} annotators, assignments on", "ours_s": p95,
         "reference_s": ref_p95, "ratio": p95 / ref_p95, "target": f"< {P95_TARGET_S} s", "ok": p95 < P95_TARGET_S,
         "notes": where},
        {"benchmark": "webui", "case": f"seconds per answer, {n} annotators together", "ours_s": per_answer,
         "reference_s": ref_per_answer, "ratio": per_answer / ref_per_answer,
         "target": f">= {n} answers/s (one per person per second)", "ok": throughput >= n,
         "notes": f"{throughput:.0f} answers/s; {where}"},
        {"benchmark": "webui", "case": "lost or duplicated labels", "ours_s": None, "reference_s": None,
         "ratio": None, "target": "0", "ok": bad == 0, "notes": counts},
    ]
    print_table(rows)
    return rows


def print_table(rows: list[dict]) -> None:
    table = Table(title="Annotation page: answering through the store with assignments on (reference: "
                        "assignments off, same writers, same run)")
    for column in ("case", "ours_s", "reference_s", "ratio", "target", "ok", "notes"):
        table.add_column(column, justify="right" if column in ("ours_s", "reference_s", "ratio") else "left")

    def fmt(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    for row in rows:
        table.add_row(row["case"], fmt(row["ours_s"]), fmt(row["reference_s"]), fmt(row["ratio"], 2), row["target"],
                      "[green]yes[/]" if row["ok"] else "[red]NO[/]", row["notes"])
    Console().print(table)


if __name__ == "__main__":
    main()
