"""Annotators in a real browser, several at once: each session logs in, opens a cell and presses 1/2/3
faster than the page redraws, while a recorder installed in the page notes what was on screen at each press."""
from __future__ import annotations

import asyncio
import random
import re

from tests.end_to_end.browser.page_server import CHROMIUM, CHROMIUM_ARGS
from tests.webui_study import BLUE, PASSWORD, RED

PRESS_SECONDS = 12
PRESS_GAP_MS = (40, 400)  # a redraw takes longer than the short gaps on 2 busy cores
DOUBLE_PRESS = 0.2

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
