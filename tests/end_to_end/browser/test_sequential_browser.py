"""A sequential study in a real browser: the cell an annotator is labelling is decided meanwhile (other
annotators' one-sided labels, written through the store, reach a deciding look); the annotator's next press is
refused, the page shows no further example of the cell, the cell list says it is decided, and the admin
dashboard shows the decision and the labels it was made at."""
from __future__ import annotations

from harmony_cli.store import Store
from tests.end_to_end.browser.page_server import log_in, logged_in_page, needs_chromium, running_page
from tests.webui_study import decide_with_seeders, make_sequential_study
from webui.app import DECIDED

pytestmark = needs_chromium


def test_a_decided_cell_shows_no_further_example_and_the_dashboard_shows_the_decision(tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_sequential_study(url, tmp_path / "images")
    viewport = {"width": 1100, "height": 1250}
    with running_page(tmp_path, url) as address, logged_in_page(address, "ana", viewport, 20_000) as page:
        page.get_by_text("Your study cells").wait_for()
        with Store.open(url) as store:
            number = next(i for i, row in enumerate(store.annotator_cells(info["ana"])) if row["metric"] == "rma")
            page.locator(f".st-key-cell-{number} button").click()
            page.get_by_text("Example 1 of 12").wait_for()
            page.get_by_text("Model prediction: rma-shape-").wait_for()
            given = decide_with_seeders(store, info, "rma")  # meanwhile, the other annotators decide the cell
            [state] = [s for s in store.sequential_cells(info["study_id"]) if s["metric"] == "rma"]
        page.keyboard.press("1")
        page.get_by_text(DECIDED).wait_for()
        shown_after = page.get_by_text("Model prediction: rma-shape-").count()
        page.locator(".st-key-nav-cells button").click()
        page.get_by_text("decided: needs no more labels").wait_for()
        cell_list = page.get_by_text("decided: needs no more labels").count()
        page.get_by_role("button", name="Log out").click()
        log_in(page, "root")
        page.get_by_role("heading", name="Dashboard").wait_for()
        decision = f"{state['verdict']} at {state['labels']} labels (look {state['look']} of 8)"
        page.get_by_text(decision).wait_for()
        page.screenshot(path=str(tmp_path / "sequential_dashboard.png"), full_page=True)

    assert state["verdict"] == "aligned" and state["labels"] <= given  # one-sided labels: aligned
    assert shown_after == 0 and cell_list == 1
    with Store.open(url) as store:
        assert store.label(info["ana"], info["cells"]["rma"][0]) is None  # the refused press stored nothing
        assert store.next_to_label(info["ana"], info["study_id"], {"dataset": "synthetic", "metric": "rma",
                                   "backbone": "tiny", "attribution": "gradcam"}, 8) is None
