"""Eight annotators pressing keys faster than the page redraws, on one page server, in a real browser.

What each browser displayed is recorded by the test itself, in the page, at the moment of every
key press (a capture listener that runs before the page's own) and for every display (a
MutationObserver). The stored labels must then be exactly the presses that were not visibly
refused: each for the example that session had on screen, with the choice the pressed key meant
given the map colours it saw (original maps are red, fine-tuned blue).
"""
from __future__ import annotations

import asyncio
import random
import re

import pytest
from sqlalchemy import select

from harmony_cli.store import LabelAudit, Store
from tests.end_to_end.browser.test_annotation_browser import CHROMIUM, CHROMIUM_ARGS, running_page
from tests.webui_study import BLUE, PASSWORD, RED, make_load_study

SESSIONS = 8
EXAMPLES = 60
PRESS_SECONDS = 12
PRESS_GAP_MS = (40, 400)  # a redraw takes longer than the short gaps on 2 busy cores
DOUBLE_PRESS = 0.2

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is absent: install Debian's chromium (.ci/run does)")

# Installed in every document before the app's scripts: the test's own record of what was displayed.
RECORDER = """
window.__presses = []; window.__shown = []; window.__noticed = {}; window.__noticeTexts = [];
const colourOf = (img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const g = canvas.getContext('2d'); g.drawImage(img, 0, 0);
  return Array.from(g.getImageData(0, 0, 1, 1).data.slice(0, 3));
};
const onScreen = () => {
  const name = document.querySelector('.hm-class');
  const a = document.querySelector('img[alt="map A"]'), b = document.querySelector('img[alt="map B"]');
  return name && a && b ? {name: name.textContent, a: colourOf(a), b: colourOf(b)} : null;
};
window.addEventListener('keydown', (e) => {
  if (['1', '2', '3'].includes(e.key)) window.__presses.push({key: e.key, shown: onScreen()});
}, true);
new MutationObserver((mutations) => {
  for (const m of mutations) for (const node of m.addedNodes) {
    if (node.nodeType !== 1) continue;
    const name = node.querySelector && node.querySelector('.hm-class');
    if (name) window.__shown.push(name.textContent);
  }
}).observe(document, {subtree: true, childList: true});
// every 100 ms: the presses each notice on screen names (press number -> [first, last] ms seen)
setInterval(() => {
  const now = performance.now();
  for (const notice of document.querySelectorAll('.hm-refused')) {
    if (!window.__noticeTexts.includes(notice.textContent)) window.__noticeTexts.push(notice.textContent);
    for (const seq of (notice.dataset.presses || notice.dataset.press || '').split(' ').filter(Boolean)) {
      const seen = window.__noticed[seq] || (window.__noticed[seq] = [now, now]);
      seen[1] = now;
    }
  }
}, 100);
"""


@pytest.fixture
def load_server(tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_load_study(url, tmp_path / "images", SESSIONS, EXAMPLES)
    with running_page(tmp_path, url) as address:
        yield {**info, "url": url, "address": address}


async def annotate(browser, address: str, name: str, seed: int, press_seconds: float = PRESS_SECONDS,
                   double_press: float = DOUBLE_PRESS, settle_ms: int = 300, route=None) -> dict:
    """One session: log in, open the cell, press 1/2/3 at random PRESS_GAP_MS gaps (some doubled) for
    ``press_seconds``, wait until the server reported every press, then ``settle_ms`` more; the recorder's
    record. ``route``: a websocket handler between the page and its server (Playwright's route_web_socket)."""
    context = await browser.new_context(viewport={"width": 1000, "height": 1100})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    if route is not None:
        await page.route_web_socket(re.compile(r"/_stcore/stream"), route)
    await page.add_init_script(RECORDER)
    await page.goto(address)
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.locator(".st-key-cell-0 button").click()
    await page.locator(".hm-class").wait_for()
    rng = random.Random(seed)
    deadline = asyncio.get_running_loop().time() + press_seconds
    while asyncio.get_running_loop().time() < deadline:
        await page.keyboard.press(rng.choice("123"))
        if rng.random() < double_press:  # a second key at once: before any page could have redrawn
            await page.keyboard.press(rng.choice("123"))
        await page.wait_for_timeout(rng.randint(*PRESS_GAP_MS))
    # every queued press reported back by the server, and the page idle
    await page.wait_for_function("() => { const p = document.querySelector('.hm-pending');"
                                 " return p && p.dataset.pending === '0'; }")
    await page.wait_for_timeout(settle_ms)  # the notices of the last report sampled
    record = await page.evaluate("() => ({presses: window.__presses, shown: window.__shown,"
                                 " noticed: window.__noticed, texts: window.__noticeTexts})")
    await context.close()
    return record


async def run_sessions(address: str, names: list[str], **options) -> list[dict]:
    """:func:`annotate` for each name at once, in one browser (``options`` as annotate's)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(annotate(browser, address, name, seed, **options)
                                          for seed, name in enumerate(names)))
        finally:
            await browser.close()


def meant(press: dict) -> tuple[str, str]:
    """(choice, left map) that a key meant, from the colours the test saw on screen when it was pressed."""
    colours = {tuple(RED): "original", tuple(BLUE): "finetuned"}
    left, right = colours[tuple(press["shown"]["a"])], colours[tuple(press["shown"]["b"])]
    assert left != right
    return {"1": left, "2": "neither", "3": right}[press["key"]], left


def test_every_stored_label_is_a_press_on_the_example_that_session_displayed(load_server):
    names = sorted(load_server["annotators"])
    records = asyncio.run(run_sessions(load_server["address"], names))
    examples = load_server["examples"]
    with Store.open(load_server["url"]) as store, store.read() as session:
        audit = session.execute(select(LabelAudit.annotator_id, LabelAudit.example_id, LabelAudit.choice,
                                       LabelAudit.left_map).order_by(LabelAudit.id)).all()
    totals = {"presses": 0, "stored": 0, "refused": 0}
    for name, record in zip(names, records):
        presses, refused = record["presses"], set(map(int, record["noticed"]))
        assert len(presses) >= PRESS_SECONDS, f"{name} pressed only {len(presses)} keys"
        assert refused <= set(range(1, len(presses) + 1))
        assert all("not stored" in text for text in record["texts"])
        stored_presses = [p for seq, p in enumerate(presses, start=1) if seq not in refused]
        stored = [(e, c, left) for a, e, c, left in audit if a == load_server["annotators"][name]]
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
