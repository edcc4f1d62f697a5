"""Every press is stored or shown as refused, in a real browser on a slow connection: 0 silent.

Two annotators press 1/2/3 at 40-400 ms, some keys doubled, while every message from the page server
reaches the browser 0.8 s late (a distant server): most presses outrun the page and are refused, many in
one update. What the browser showed is recorded by the test itself in the page (a capture listener for
the keys, a sampler of the notices every 100 ms): a refused press counts as shown only if a notice named
it for READ_MS, long enough to be read. The stored labels must be exactly the other presses, each for
the example on screen when it was pressed (tests/end_to_end/browser/test_load_browser.py's check).
"""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from harmony_cli.store import LabelAudit, Store
from tests.end_to_end.browser.page_server import needs_chromium
from tests.end_to_end.browser.sessions import meant, run_sessions

SESSIONS = 2
EXAMPLES = 60
PRESS_SECONDS = 8  # at test_load_browser's PRESS_GAP_MS, 40-400 ms between keys
DOUBLE_PRESS = 0.3
LATENCY_S = 0.8  # every server message reaches the browser this late
READ_MS = 3000

pytestmark = needs_chromium


async def delay_server_messages(route) -> None:
    """Forward the page's websocket, each message from the server LATENCY_S late and in order."""
    server = route.connect_to_server()
    loop = asyncio.get_running_loop()
    server.on_message(lambda message: loop.call_later(LATENCY_S, route.send, message))


def test_every_press_is_stored_or_shown_refused_long_enough_to_read(load_study_server):
    names = sorted(load_study_server["annotators"])
    records = asyncio.run(run_sessions(load_study_server["address"], names, press_seconds=PRESS_SECONDS,
                                       double_press=DOUBLE_PRESS, settle_ms=READ_MS + 500,
                                       route=delay_server_messages))
    examples = load_study_server["examples"]
    with Store.open(load_study_server["url"]) as store, store.read() as session:
        audit = session.execute(select(LabelAudit.annotator_id, LabelAudit.example_id, LabelAudit.choice,
                                       LabelAudit.left_map).order_by(LabelAudit.id)).all()
    totals = {"presses": 0, "stored": 0, "refused": 0, "silent": 0}
    for name, record in zip(names, records):
        presses = record["presses"]
        named = {int(seq): last - first for seq, (first, last) in record["noticed"].items()}
        assert set(named) <= set(range(1, len(presses) + 1)), (name, sorted(named))
        assert all("not stored" in text for text in record["texts"]), record["texts"]
        stored = [(e, c, left) for a, e, c, left in audit if a == load_study_server["annotators"][name]]
        stored_presses = [p for seq, p in enumerate(presses, start=1) if seq not in named]
        # a refused press whose notice went before it could be read is as good as silent
        silent = sorted(seq for seq, shown_ms in named.items() if shown_ms < READ_MS)
        totals["silent"] += len(silent) + abs(len(stored) - len(stored_presses))
        assert not silent, (name, len(presses), {seq: named[seq] for seq in silent})
        assert len(stored) == len(stored_presses), (name, len(presses), len(named), len(stored))
        for press, (example_id, choice, left) in zip(stored_presses, stored):
            assert press["shown"] is not None and example_id == examples[press["shown"]["name"]]
            assert (choice, left) == meant(press)
        totals["presses"] += len(presses)
        totals["stored"] += len(stored)
        totals["refused"] += len(named)
    print(f"{SESSIONS} sessions, {PRESS_SECONDS} s, {LATENCY_S} s late: {totals}")  # shown with -s
    # the run did what it is for: presses were stored, and more were refused than six notices could hold
    assert totals["stored"] >= SESSIONS and totals["refused"] > 6 and totals["silent"] == 0, totals
