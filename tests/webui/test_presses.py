"""The browser's press queue on the server (webui/presses.py), without Streamlit: presses are taken strictly
in sequence; any other number is refused once, visibly, and never makes the real presses after it look
handled; a burst of refusals is counted in full for the browser's notices."""
from __future__ import annotations

import shutil

import pytest
from sqlalchemy import func, select

from harmony_cli.store import Label, Store
from webui.presses import BAD_NUMBER, MOVED_ON, NO_ANSWER, OUT_OF_SEQUENCE, PressLog, handle_presses
from webui.session import open_cell

SECRET = "presses-secret"


@pytest.fixture
def page(study_template, tmp_path):
    """ana's cursor on the rma cell's first example, an empty press log, and a press handler."""
    folder, info = study_template
    shutil.copy(folder / "harmony.db", tmp_path / "harmony.db")
    with Store.open(f"sqlite:///{tmp_path / 'harmony.db'}") as store:
        cell = next(row for row in store.annotator_cells(info["ana"]) if row["metric"] == "rma")
        cursor, log = open_cell(store, info["ana"], info["study_id"], cell, now=0.0), PressLog()

        def handle(presses: list) -> None:
            handle_presses(store, SECRET, info["ana"], cursor, presses, log)

        def stored() -> int:
            with store.read() as session:
                return session.scalar(select(func.count(Label.id)).where(Label.annotator_id == info["ana"]))

        yield {"cursor": cursor, "log": log, "handle": handle, "stored": stored}


def test_press_numbers_out_of_range_are_refused_once_and_the_next_real_press_is_stored(page):
    cursor, log, handle, stored = page["cursor"], page["log"], page["handle"], page["stored"]
    handle([{"seq": 1, "token": cursor.token, "button": "A"}])
    assert (stored(), log.processed, log.refused) == (1, 1, [])
    token = cursor.token
    forged = [{"seq": 10 ** 9, "token": token, "button": "A"}, {"seq": 3, "token": token, "button": "B"},  # gaps
              *({"seq": bad, "token": token, "button": "A"} for bad in (-3, 0, 2.5, "2", True, None)),
              {"token": token, "button": "A"}, "not a press"]
    handle(forged)
    assert (stored(), log.processed, cursor.token) == (1, 1, token)  # nothing stored, nothing skipped
    assert [(seq, reason) for seq, reason, _ in log.refused] == [(None, BAD_NUMBER)] * 8 + [
        (3, OUT_OF_SEQUENCE), (10 ** 9, OUT_OF_SEQUENCE)]
    assert "out of sequence (the page expected 2)" in log.refused[-1][2]
    handle(forged)  # the same queue again (a rerun of the page): its faults were said once
    assert len(log.refused) == 10 and log.report()["refusals"] == {BAD_NUMBER: 8, OUT_OF_SEQUENCE: 2}
    # the browser's real next press is still taken: the session is not jammed
    handle([{"seq": 2, "token": token, "button": "B"}])
    assert (stored(), log.processed, len(log.refused)) == (2, 2, 10) and cursor.token != token


def test_a_number_given_twice_or_a_press_naming_garbage_is_refused_not_crashing(page):
    cursor, log, handle, stored = page["cursor"], page["log"], page["handle"], page["stored"]
    handle([{"seq": 1, "token": cursor.token, "button": "A"}, {"seq": 1, "token": cursor.token, "button": "B"},
            {"seq": 2, "token": cursor.token, "button": ["A"]}, {"seq": 3, "token": ["t"], "button": "A"}])
    assert stored() == 1 and log.processed == 3
    assert [(seq, reason) for seq, reason, _ in log.refused][:2] == [(1, OUT_OF_SEQUENCE), (2, NO_ANSWER)]
    assert log.refused[2][0] == 3 and "was not stored" in log.refused[2][2]


def test_a_burst_of_refusals_is_counted_in_full_for_the_browser(page):
    """150 presses queued on one display: the first is stored, the 149 others refused, every one counted
    in the report even though the log lists only the latest hundred."""
    cursor, log, handle, stored = page["cursor"], page["log"], page["handle"], page["stored"]
    token = cursor.token
    handle([{"seq": seq, "token": token, "button": "neither"} for seq in range(1, 151)])
    report = log.report()
    assert stored() == 1 and report["processed"] == 150
    assert report["refusals"] == {MOVED_ON: 149}
    assert [seq for seq, _, _ in report["refused"]] == list(range(51, 151))
