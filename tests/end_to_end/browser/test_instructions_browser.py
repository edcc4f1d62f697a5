"""The study's instructions and the practice pair in a real browser (Playwright + Debian chromium):
they come before the first example, the practice answer stores nothing, then the examples; Help
comes back to the same example, and a key pressed on the help screen stores nothing."""
from __future__ import annotations

from sqlalchemy import func, select

from harmony_cli.store import Label, LabelAudit, Store
from tests.end_to_end.browser.page_server import logged_in_page, needs_chromium, running_page
from tests.webui_study import make_study

STUDY_TEXT = "Look for the shape of the predicted class, then choose."

pytestmark = needs_chromium


def stored(url: str) -> tuple[list[tuple[int, str]], int]:
    """(the labels as (example, choice), the number of audit rows) in the store now."""
    with Store.open(url, create=False) as store, store.read() as session:
        labels = [(row.example_id, row.choice) for row in session.scalars(select(Label).order_by(Label.id))]
        return labels, session.scalar(select(func.count(LabelAudit.id)))


def test_instructions_and_practice_come_before_the_first_example_and_store_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_study(url, tmp_path / "images", instructions_first=True)
    with Store.open(url) as store:
        store.update_study_config("webui-test", instructions=STUDY_TEXT)
        number = next(i for i, row in enumerate(store.annotator_cells(info["ana"])) if row["metric"] == "rma")
    rma = info["cells"][0]
    viewport = {"width": 1100, "height": 1250}
    with running_page(tmp_path, url) as address, logged_in_page(address, "ana", viewport, 15_000) as page:
        page.get_by_text("Your study cells").wait_for()
        page.locator(f".st-key-cell-{number} button").click()

        page.get_by_text("Before you start").wait_for()
        page.get_by_text(STUDY_TEXT).wait_for()
        assert page.locator(".hm-pair img").count() == 0  # no example before the instructions
        page.get_by_role("button", name="Try the practice pair").click()
        page.get_by_text("Practice pair · not part of the study").wait_for()
        page.locator('.hm-pair img[alt="map B"]').wait_for()
        assert not page.get_by_text("Model prediction: shape-0-0").count()
        page.keyboard.press("1")  # the practice answer, by key as on a real example
        page.get_by_text("You chose map A.").wait_for()
        page.screenshot(path=str(tmp_path / "practice.png"))
        assert stored(url) == ([], 0)  # neither a label nor an audit row

        page.get_by_role("button", name="Start the study").click()
        page.get_by_text("Example 1 of 3").wait_for()
        page.get_by_text("Model prediction: shape-0-0").wait_for()
        page.keyboard.press("2")
        page.get_by_text("Example 2 of 3").wait_for()
        page.get_by_text("Model prediction: shape-0-1").wait_for()
        assert stored(url)[0] == [(rma[0], "neither")]

        page.locator(".st-key-nav-help button").click()
        page.get_by_role("heading", name="Instructions").wait_for()
        # the help screen's own (empty) display is drawn: a key now is this screen's, not the example's
        page.locator('.hm-pair[data-token=""]').wait_for(state="attached")
        page.wait_for_function("!document.querySelector('.hm-pair img')")
        page.keyboard.press("3")  # on the help screen: refused in the page, never stored
        page.locator(".hm-refused").filter(has_text="was not stored").wait_for()
        page.get_by_role("button", name="Back to the example").click()
        page.get_by_text("Model prediction: shape-0-1").wait_for()
        page.locator('.hm-pair img[alt="map B"]').wait_for()
    assert stored(url) == ([(rma[0], "neither")], 1)
    assert (tmp_path / "practice.png").stat().st_size > 0
