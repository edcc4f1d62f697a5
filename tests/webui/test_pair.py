"""webui/pair.js's notices and press queue in a real browser, without a page server: the component is
mounted on a blank page and fed the headers a server would send (webui/presses.py's report).

A burst of refusals must end up on screen, each counted and its press named, however many arrive in
one update; a press with nothing on screen goes to the server like any other (in sequence), and a new
press log on the server restarts the numbering.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.end_to_end.browser.page_server import CHROMIUM, CHROMIUM_ARGS, needs_chromium
from webui import pair
from webui.presses import MOVED_ON, NO_EXAMPLE

PAIR_JS = Path(pair.__file__).resolve().parent / "pair.js"

pytestmark = needs_chromium

# Loads pair.js as the page's component module; window.render(bytes) mounts it with one payload.
MOUNT = """async (source) => {
  const module = await import(URL.createObjectURL(new Blob([source], {type: 'text/javascript'})));
  window.sent = [];
  const parent = document.createElement('div');
  document.body.appendChild(parent);
  let at = parent;
  window.render = (bytes) => module.default({parentElement: at, data: new Uint8Array(bytes),
                                             setStateValue: (key, value) => window.sent.push(value)});
  // Streamlit mounting the component afresh: a new parent element, the old one gone
  window.remount = (bytes) => {
    const fresh = document.createElement('div');
    document.body.appendChild(fresh);
    at.remove();
    at = fresh;
    window.render(bytes);
  };
}"""
NOTICES = """() => [...document.querySelectorAll('.hm-refused')].map((n) => ({
  text: n.textContent, presses: (n.dataset.presses || '').split(' ').filter(Boolean).map(Number),
  count: Number(n.dataset.count)}))"""


def header(log: str, processed: int, refused: list[tuple[int | None, str, str]]) -> list[int]:
    """The payload of a screen with no example on it, reporting ``refused`` (every refusal of the log)."""
    counts: dict[str, int] = {}
    for _, reason, _ in refused:
        counts[reason] = counts.get(reason, 0) + 1
    report = {"log": log, "processed": processed, "refused": [list(r) for r in refused][-100:], "refusals": counts}
    return list(pair.pack({"token": None, **report}, None))


def moved_on(seq: int) -> tuple[int, str, str]:
    return seq, MOVED_ON, f"Your “Map A” (press {seq}) was not stored: the page had already moved on."


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def mounted(page):
    page.set_content("<html><body></body></html>")
    page.evaluate(MOUNT, PAIR_JS.read_text())
    return page


def test_a_burst_of_refusals_is_one_notice_that_counts_and_names_every_press(mounted):
    refused = [moved_on(seq) for seq in range(1, 23)]  # 22 refused in one update, as seen at 40-400 ms
    mounted.evaluate("(b) => window.render(b)", header("log-1", 22, refused))
    [notice] = mounted.evaluate(NOTICES)
    assert notice["count"] == 22 and notice["presses"] == list(range(1, 23))
    assert notice["text"].startswith(f"22 presses were not stored: {MOVED_ON}.")
    assert notice["text"].endswith("(presses …, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22)")
    # more of the same reason add up in the same notice; another reason gets its own
    refused += [moved_on(23), moved_on(24), (25, NO_EXAMPLE, "Your “Neither” (press 25) was not stored: "
                                                             "no example was open any more.")]
    mounted.evaluate("(b) => window.render(b)", header("log-1", 25, refused))
    first, second = mounted.evaluate(NOTICES)
    assert (first["count"], first["presses"]) == (24, list(range(1, 25)))
    assert second == {"count": 1, "presses": [25], "text": refused[-1][2]}  # one press: its own message
    # 150 refusals of which the log lists the latest 100: the notice still counts all of them
    refused += [moved_on(seq) for seq in range(26, 176)]
    mounted.evaluate("(b) => window.render(b)", header("log-1", 175, refused))
    first, _ = mounted.evaluate(NOTICES)
    assert first["count"] == 174 and first["text"].startswith("174 presses were not stored")
    assert first["presses"] == [*range(1, 25), *range(76, 176)]
    # the component mounted afresh (as on the end screen): the notices stay, none said twice
    mounted.evaluate("(b) => window.remount(b)", header("log-1", 175, refused))
    assert [(n["count"], n["presses"][-1]) for n in mounted.evaluate(NOTICES)] == [(174, 175), (1, 25)]


def test_presses_with_nothing_on_screen_go_to_the_server_in_sequence_and_a_new_log_renumbers_them(mounted):
    mounted.evaluate("(b) => window.render(b)", header("log-1", 0, []))
    for key in "123":
        mounted.keyboard.press(key)
    # nothing on screen: no local notice, the press is sent for the server to say why (one send at a time)
    assert mounted.evaluate(NOTICES) == []
    assert mounted.evaluate("() => window.sent") == [[{"seq": 1, "token": "", "button": "A"}]]
    assert mounted.evaluate("() => document.querySelector('.hm-pending').dataset.pending") == "3"
    # the server handled press 1 (the next send has 2 and 3), then a new login made a new press log:
    # 2 and 3 become its 1 and 2
    mounted.evaluate("(b) => window.render(b)", header("log-1", 1, []))
    assert mounted.evaluate("() => window.sent.at(-1)") == [{"seq": 2, "token": "", "button": "neither"},
                                                             {"seq": 3, "token": "", "button": "B"}]
    mounted.evaluate("(b) => window.render(b)", header("log-2", 0, []))
    assert mounted.evaluate("() => window.sent.at(-1)") == [{"seq": 1, "token": "", "button": "neither"},
                                                             {"seq": 2, "token": "", "button": "B"}]
    mounted.evaluate("(b) => window.render(b)", header("log-2", 2, [(1, NO_EXAMPLE, "one"), (2, NO_EXAMPLE, "two")]))
    assert mounted.evaluate("() => document.querySelector('.hm-pending').dataset.pending") == "0"
    [notice] = mounted.evaluate(NOTICES)
    assert (notice["count"], notice["presses"]) == (2, [1, 2])
