"""Assignments and overlap in a real browser (Playwright + Debian's chromium, one page server).

An account without an assignment sees no study; with labels_per_example=2, three annotators
labelling one cell at once leave every example with exactly two labels, the page handing out
the least-labelled examples and saying when the cell needs nothing more from someone.
"""
from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from harmony_cli.store import Label, Store
from tests.end_to_end.browser.page_server import CHROMIUM, CHROMIUM_ARGS, needs_chromium, running_page
from tests.webui_study import PASSWORD, make_load_study

EXAMPLES = 5
QUOTA = 2
ANNOTATORS = 3
NOTHING_MORE = "This cell needs nothing more from you"
ALL_DONE = "Done: you answered all"

pytestmark = needs_chromium


@pytest.fixture
def team_server(tmp_path):
    """One cell of EXAMPLES examples, annotators a0..a2 assigned, QUOTA labels per example, and zed unassigned."""
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_load_study(url, tmp_path / "images", ANNOTATORS, EXAMPLES)
    with Store.open(url) as store:
        store.update_study_config("webui-load", labels_per_example=QUOTA)
        store.add_annotator("zed", PASSWORD)
    with running_page(tmp_path, url) as address:
        yield {**info, "url": url, "address": address}


async def log_in(browser, address: str, name: str):
    context = await browser.new_context(viewport={"width": 1000, "height": 1100})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(address)
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_role("textbox", name="Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_text("Your study cells").wait_for()
    return context, page


async def label_until_done(browser, address: str, name: str) -> dict:
    """Open the cell and press 1 on each example shown until the page says the cell wants nothing more."""
    context, page = await log_in(browser, address, name)
    await page.locator(".st-key-cell-0 button").click()
    finished = page.get_by_text(NOTHING_MORE).or_(page.get_by_text(ALL_DONE))
    example = page.locator(".hm-class")
    presses = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while loop.time() < deadline and not await finished.count():
        if await example.count():
            await page.keyboard.press("1")
            presses += 1
            # wait until the server reported the press back (stored or refused) before the next one
            await page.wait_for_function("() => { const p = document.querySelector('.hm-pending');"
                                         " return p && p.dataset.pending === '0'; }")
        await page.wait_for_timeout(150)
    ending = await finished.first.text_content() if await finished.count() else None
    refused = await page.locator(".hm-refused").all_text_contents()
    await context.close()
    return {"name": name, "presses": presses, "ending": ending, "refused": refused}


async def run_team(address: str) -> tuple[list[dict], str]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context, page = await log_in(browser, address, "zed")  # no assignment: no study
            await page.get_by_text("No study is open to you yet").wait_for()
            unassigned = await page.locator("[data-testid='stMain']").text_content()
            await context.close()
            team = await asyncio.gather(*(label_until_done(browser, address, f"a{i}") for i in range(ANNOTATORS)))
        finally:
            await browser.close()
    return list(team), unassigned


def test_an_unassigned_account_sees_no_study_and_three_annotators_leave_exactly_two_labels_each(team_server):
    team, unassigned = asyncio.run(run_team(team_server["address"]))
    print([(r["name"], r["presses"], len(r["refused"]), r["ending"]) for r in team])  # shown with -s
    assert "webui-load" not in unassigned and "rma" not in unassigned
    with Store.open(team_server["url"]) as store, store.read() as session:
        counts = dict(session.execute(select(Label.example_id, func.count(Label.id)).group_by(Label.example_id)).all())
        per_annotator = dict(session.execute(select(Label.annotator_id, func.count(Label.id))
                                             .group_by(Label.annotator_id)).all())
        zed = store.annotator("zed").id
    assert {example: counts.get(example, 0) for example in team_server["examples"].values()} == {
        example: QUOTA for example in team_server["examples"].values()}, team
    assert zed not in per_annotator
    assert sum(per_annotator.values()) == QUOTA * EXAMPLES
    for session_record in team:
        assert session_record["ending"] is not None, session_record  # each page said the cell is done for them
        # every refusal said why: the example had filled up, or the press outran the page
        assert all("not stored" in text for text in session_record["refused"]), session_record
