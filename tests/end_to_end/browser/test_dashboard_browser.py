"""The admin dashboard in a real browser (Playwright + Debian's chromium, the page server of
tests/end_to_end/browser/page_server.py): the right counts for a seeded store, account management with the
CLI's message, and the dashboard refused to a non-admin who asks for it in the URL."""
from __future__ import annotations

from tests.end_to_end.browser.page_server import log_in, logged_in_page, needs_chromium, running_page
from tests.webui_study import seed_dashboard_study
from webui.dashboard import REFUSED

pytestmark = needs_chromium


def table_rows(page, column: str) -> list[dict[str, str]]:
    """The body rows of the table with a ``column`` header, once it is drawn (the Accounts tab's table is in
    the page too, and the dashboard's tables appear one by one): each row's cells by their column header."""
    table = page.locator("table", has=page.get_by_role("columnheader", name=column, exact=True)).first
    table.wait_for()
    header, *rows = table.evaluate(
        "t => [...t.querySelectorAll('tr')].map(r => [...r.querySelectorAll('th, td')].map(c => c.innerText))")
    return [dict(zip(header, row)) for row in rows]


def test_the_dashboard_shows_the_seeded_counts_to_an_admin_and_is_refused_to_others(tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    seed_dashboard_study(url, tmp_path / "images")
    viewport = {"width": 1200, "height": 1400}
    with running_page(tmp_path, url) as address, logged_in_page(address, "root", viewport, 20_000) as page:
        page.get_by_role("heading", name="Dashboard").wait_for()
        page.get_by_text("incomplete: 4 of 6 labels").wait_for()
        cells = {row["cell"]: row for row in table_rows(page, "chose left")}
        annotators = {row["annotator"]: row for row in table_rows(page, "median s / answer")}
        bias = page.get_by_text("decisive labels chose the map shown on the left").inner_text()
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        page.get_by_role("tab", name="Accounts").click()
        page.get_by_role("textbox", name="Name").last.fill("zed")
        page.locator("input[type=password]").first.fill("short")
        page.get_by_role("button", name="Add account").click()
        page.get_by_text("the password has 5 characters").wait_for()
        error = page.get_by_text("the password has 5 characters").inner_text()

        page.get_by_role("button", name="Log out").click()
        page.get_by_role("textbox", name="New password").wait_for(state="detached")  # the dashboard is gone
        log_in(page, "ana")
        page.get_by_text("Your study cells").wait_for()
        dashboard_buttons = page.get_by_role("button", name="Dashboard").count()
        page.goto(page.url + ("&" if "?" in page.url else "?") + "view=dashboard")  # a forged request
        page.get_by_text(REFUSED).wait_for()
        page.get_by_text("Your study cells").wait_for()  # Streamlit draws the page element by element
        refused_page = page.content()

    # quota 2: rma 4 of 6 labels counted, focus 1 of 4; rma's 4 labels on 3 examples
    figures = ("examples", "labels", "progress")
    assert [cells["rma · tiny · gradcam"][k] for k in figures] == ["3", "4", "4 / 6 (67%)"]
    assert [cells["focus · tiny · gradcam"][k] for k in figures] == ["2", "1", "1 / 4 (25%)"]
    assert cells["rma · tiny · gradcam"]["verdict"].endswith("(incomplete: 4 of 6 labels)")
    assert cells["rma · tiny · gradcam"]["for these annotators"] == "inconclusive"  # 3 examples: too few
    assert "2 of 4" in bias
    figures = ("labels", "cells", "of the examples", "median s / answer")
    assert [annotators["ana"][k] for k in figures] == ["3", "1", "60% of 5", "4.0"]
    assert [annotators["ben"][k] for k in figures] == ["2", "2", "40% of 5", "2.0"]
    assert error == "the password has 5 characters: give one of at least 8"
    assert dashboard_buttons == 0
    assert "Krippendorff" not in refused_page
    assert (tmp_path / "dashboard.png").stat().st_size > 0
