"""The page under assignments (Streamlit's AppTest): what an unassigned account sees, an answer on an
example that filled up meanwhile, a study closed while its page is open, a cell that needs nothing more."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.webui.apptest import (APP, displayed, enter_cell, label_rows, log_in, new_page, press, refused,
                                 sent_text)


def test_an_unassigned_account_sees_no_study(study):
    study["store"].unassign("ana", "webui-test")
    at = log_in(new_page(), "ana")
    assert [t.value for t in at.title] == ["Your study cells"]
    assert [i.value for i in at.info] == ["No study is open to you yet: your study's admin assigns you one."]
    assert not any(b.key and b.key.startswith("cell-") for b in at.button)


def test_an_example_filled_by_others_meanwhile_is_refused_visibly_and_the_page_moves_on(study):
    store, rma = study["store"], study["cells"][0]
    store.update_study_config("webui-test", labels_per_example=1)
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert displayed(at)[0]["prediction"] == "shape-0-0"
    store.answer(study["ben"], rma[0], "neither", session_version=0)  # ben fills it while ana looks at it
    press(at, "A")
    [message] = refused(at)
    assert "was not stored: this example has its 1 labels from other annotators already" in message
    assert displayed(at)[0]["prediction"] == "shape-0-1"  # moved on to one that still needs a label
    assert label_rows(store, study["ana"]) == []
    press(at, "B")
    press(at, "neither")
    assert len(label_rows(store, study["ana"])) == 2 and len(refused(at)) == 1


def test_a_cell_whose_other_examples_are_full_needs_nothing_more_from_the_annotator(study):
    store, rma = study["store"], study["cells"][0]
    store.update_study_config("webui-test", labels_per_example=1)
    for example in rma[1:]:
        store.answer(study["ben"], example, "neither", session_version=0)
    at = log_in(new_page(), "ana")
    assert "2 / 3 labels (1 per example) · you answered 0 of 3" in sent_text(at)  # ben's two, toward 3
    at = enter_cell(at, store, study["ana"], "rma")
    press(at, "A")
    assert [s.value for s in at.success] == [
        "This cell needs nothing more from you: every example you have not answered has its 1 labels from other "
        "annotators. Thank you!"]


def test_a_study_closed_while_its_page_is_open_takes_no_answer_and_says_so(study):
    store = study["store"]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    store.update_study_config("webui-test", open=False)  # by an admin, while the example is on screen
    press(at, "A")
    assert label_rows(store, study["ana"]) == []
    assert any("this study is closed to new labels" in m for m in refused(at))
    assert any("closed to new labels for you" in w.value for w in at.warning)
    at.button(key="nav-cells").click().run()
    assert [i.value for i in at.info] == ["No study is open to you yet: your study's admin assigns you one."]
    reloaded = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not any(b.key and b.key.startswith("cell-") for b in log_in(reloaded, "ana").button)
