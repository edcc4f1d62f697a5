"""The annotation page in a real browser: `streamlit run webui/app.py` driven by Playwright.

Logs in, answers three examples with the keyboard, checks the labels in the database against
the colours the browser showed, checks that both maps of a pair have one byte length and that
no image URL repeats across cells, and scans everything the app sent to the browser for a word
that would unblind the maps.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from harmony_cli.store import Label, Store
from tests.end_to_end.browser.page_server import CHROMIUM, CHROMIUM_ARGS, log_in, needs_chromium, running_page
from tests.webui_study import RED, make_study

LEAK = re.compile(rb"original|finetuned|learn", re.IGNORECASE)

pytestmark = needs_chromium


@pytest.fixture
def page_server(tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_study(url, tmp_path / "images")
    with running_page(tmp_path, url) as address:
        yield {**info, "url": url, "address": address}


# The images on screen, read in the page: their URLs, byte sizes, and map A's colour.
SHOWN_MAPS = """async () => {
  const imgs = [...document.querySelectorAll('.hm-pair img')];
  const sizes = await Promise.all(imgs.map(async (img) => (await (await fetch(img.src)).arrayBuffer()).byteLength));
  const a = document.querySelector('img[alt="map A"]');
  const canvas = document.createElement('canvas');
  canvas.width = a.naturalWidth; canvas.height = a.naturalHeight;
  canvas.getContext('2d').drawImage(a, 0, 0);
  return {sources: imgs.map((img) => img.src), sizes,
          colourA: Array.from(canvas.getContext('2d').getImageData(0, 0, 1, 1).data.slice(0, 3))};
}"""


def is_streamlit_bundle(url: str) -> bool:
    """Streamlit's own static script/style/font bundle: the same for every app, not ours."""
    path = url.split("://", 1)[-1].split("/", 1)[-1]
    return path.startswith("static/") or path in ("", "favicon.png")


def record_traffic(page, sent: list[tuple[str, bytes]]) -> None:
    """Append (where, what) to ``sent`` for every websocket frame and every response the page receives."""
    def on_websocket(ws):
        def frame(payload):
            sent.append((f"websocket {ws.url}", payload if isinstance(payload, bytes) else payload.encode()))
        ws.on("framereceived", frame)

    def on_response(response):
        sent.append(("url", response.url.encode()))
        if not is_streamlit_bundle(response.url):
            try:
                sent.append((f"body {response.url}", response.body()))
            except Exception:  # a redirect or an aborted request has no body
                pass

    page.on("websocket", on_websocket)
    page.on("response", on_response)


def answer_by_keys(page, rma: list[int]) -> tuple[dict, list[str], list[list[int]]]:
    """Answer the rma cell's three examples with keys; what each answer must store (from the colours
    on screen), the image URLs shown and their byte sizes."""
    expected, sources, sizes = {}, [], []
    for i, (key, button) in enumerate((("1", "A"), ("ArrowRight", "B"), ("2", "neither"))):
        page.get_by_text(f"Example {i + 1} of 3").wait_for()
        page.get_by_text(f"Model prediction: shape-0-{i}").wait_for()
        shown = page.evaluate(SHOWN_MAPS)
        sources += shown["sources"]
        sizes.append(shown["sizes"])
        left = "original" if tuple(shown["colourA"]) == RED else "finetuned"
        expected[rma[i]] = ({"A": left, "B": "finetuned" if left == "original" else "original"}
                            .get(button, "neither"), left)
        page.keyboard.press(key)
    return expected, sources, sizes


def test_keyboard_annotation_in_a_real_browser_stays_blinded(page_server, tmp_path):
    from playwright.sync_api import sync_playwright

    sent: list[tuple[str, bytes]] = []  # (where, what) of everything the app sent
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1250})
            record_traffic(page, sent)
            page.set_default_timeout(15_000)
            page.goto(page_server["address"])

            log_in(page, "ana")
            page.get_by_text("Your study cells").wait_for()
            store = Store.open(page_server["url"])
            rows = store.annotator_cells(page_server["ana"])
            number = next(i for i, row in enumerate(rows) if row["metric"] == "rma")
            page.locator(f".st-key-cell-{number} button").click()

            expected, sources, sizes = answer_by_keys(page, page_server["cells"][0])
            page.get_by_text("Done: you answered all 3 examples of this cell").wait_for()
            page.screenshot(path=str(tmp_path / "annotation_done.png"))
            dom = page.content().encode()
            page.locator(".st-key-nav-cells button").click()  # the other cell: its maps must not repeat a URL
            page.get_by_text("Your study cells").wait_for()
            page.locator(f".st-key-cell-{1 - number} button").click()
            page.get_by_text("Model prediction: shape-1-0").wait_for()
            shown = page.evaluate(SHOWN_MAPS)
            sources += shown["sources"]
            sizes.append(shown["sizes"])
        finally:
            browser.close()

    with store.read() as session:
        labels = list(session.scalars(select(Label).where(Label.annotator_id == page_server["ana"])))
    store.close()
    assert {label.example_id: (label.choice, label.left_map) for label in labels} == expected
    assert all(label.response_ms >= 0 for label in labels)
    assert all(size_a == size_b for _, size_a, size_b in sizes), sizes  # both maps of a pair: one byte length
    assert len(set(sources)) == len(sources), "an image URL was served twice"
    assert all(source.startswith("blob:") for source in sources)

    assert any(where.startswith("websocket") for where, _ in sent), "no websocket traffic was seen"
    assert not any("/media/" in where for where, _ in sent), "an image went out under a media URL"
    leaks = [(where, LEAK.search(data).group(0)) for where, data in [*sent, ("dom", dom)] if LEAK.search(data)]
    assert leaks == []
    assert (tmp_path / "annotation_done.png").stat().st_size > 0


def test_the_page_url_logs_in_on_reload_until_log_out_in_a_real_browser(page_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(page_server["address"])
            log_in(page, "ana")
            page.get_by_text("Your study cells").wait_for()
            page.wait_for_url(re.compile(r"[?&]session="))
            saved = page.url  # what a bookmark, the history or a shoulder-surfer keeps
            other = browser.new_page()
            other.set_default_timeout(15_000)
            other.goto(saved)
            other.get_by_text("Your study cells").wait_for()  # a reload or a second tab stays logged in
            page.locator(".st-key-log-out button").click()
            page.get_by_role("button", name="Log in").wait_for()
            after = browser.new_page()
            after.set_default_timeout(15_000)
            after.goto(saved)
            after.get_by_role("button", name="Log in").wait_for()
            assert after.get_by_text("Your study cells").count() == 0
            other.reload()  # the second tab, which held the same login
            other.get_by_role("button", name="Log in").wait_for()
        finally:
            browser.close()
