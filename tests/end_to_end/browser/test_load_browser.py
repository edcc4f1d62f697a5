"""Eight annotators pressing keys faster than the page redraws, on one page server, in a real browser.

What each browser displayed is recorded by the test itself, in the page, at the moment of every
key press (a capture listener that runs before the page's own) and for every display (a
MutationObserver). The stored labels must then be exactly the presses that were not visibly
refused: each for the example that session had on screen, with the choice the pressed key meant
given the map colours it saw (original maps are red, fine-tuned blue).
"""
from __future__ import annotations

import asyncio

from sqlalchemy import select

from harmony_cli.store import LabelAudit, Store
from tests.end_to_end.browser.page_server import needs_chromium
from tests.end_to_end.browser.sessions import PRESS_SECONDS, meant, run_sessions

SESSIONS = 8
EXAMPLES = 60

pytestmark = needs_chromium


def test_every_stored_label_is_a_press_on_the_example_that_session_displayed(load_study_server):
    names = sorted(load_study_server["annotators"])
    records = asyncio.run(run_sessions(load_study_server["address"], names))
    examples = load_study_server["examples"]
    with Store.open(load_study_server["url"]) as store, store.read() as session:
        audit = session.execute(select(LabelAudit.annotator_id, LabelAudit.example_id, LabelAudit.choice,
                                       LabelAudit.left_map).order_by(LabelAudit.id)).all()
    totals = {"presses": 0, "stored": 0, "refused": 0}
    for name, record in zip(names, records):
        presses, refused = record["presses"], set(map(int, record["noticed"]))
        assert len(presses) >= PRESS_SECONDS, f"{name} pressed only {len(presses)} keys"
        assert refused <= set(range(1, len(presses) + 1))
        assert all("not stored" in text for text in record["texts"])
        stored_presses = [p for seq, p in enumerate(presses, start=1) if seq not in refused]
        stored = [(e, c, left) for a, e, c, left in audit if a == load_study_server["annotators"][name]]
        # every press is stored or visibly refused, and every stored label is one of the stored presses, in order
        assert len(stored) == len(stored_presses), (name, len(presses), len(refused), len(stored))
        assert stored, f"{name} stored nothing in {PRESS_SECONDS} s"
        displayed = {examples[shown] for shown in record["shown"]}
        for press, (example_id, choice, left) in zip(stored_presses, stored):
            assert press["shown"] is not None, "a press with nothing on screen was stored"
            assert example_id == examples[press["shown"]["name"]]
            assert example_id in displayed
            assert (choice, left) == meant(press)
        totals["presses"] += len(presses)
        totals["stored"] += len(stored)
        totals["refused"] += len(refused)
    print(f"{SESSIONS} sessions, {PRESS_SECONDS} s: {totals}")  # shown with -s
    # the load did what it is for: each session stored answers, and presses that outran the page were refused
    assert totals["stored"] >= SESSIONS and totals["refused"] >= 1, totals
