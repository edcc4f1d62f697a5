"""The admin dashboard (webui/dashboard.py, webui/admin_accounts.py) under Streamlit's AppTest.

The study of tests/webui_study.py (cells rma: 3 examples, focus: 2) with labels_per_example 2, an admin
``root`` and the labels of tests/webui_study.py's DASHBOARD_SEED; every expected figure below is worked out
by hand from DASHBOARD_SEED.
"""
from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from harmony_cli.store import Annotator, Store
from harmony_cli.store.accounts import LOCK_AFTER
from tests.helpers import run_main
from tests.webui.apptest import APP
from tests.webui_study import PASSWORD, make_study, seed_dashboard_study
from harmony_cli.analysis.decisions import FIXED_NOTE
from harmony_cli.store.models import SequentialCell
from webui.dashboard import REFUSED

@pytest.fixture(scope="module")
def study_template(tmp_path_factory):
    """This module's template: the dashboard study (conftest's ``study`` copies it)."""
    folder = tmp_path_factory.mktemp("dashboard-study")
    return folder, seed_dashboard_study(f"sqlite:///{folder / 'harmony.db'}", folder / "images")


def logged_in(name: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    at.text_input(key="login-name").input(name)
    at.text_input(key="login-password").input(PASSWORD)
    return at.button[0].click().run()


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def submit(at: AppTest, label: str) -> AppTest:
    return next(b for b in at.button if b.label == label).click().run()


def rows(table) -> dict[str, dict]:
    frame = table.value
    return {row[frame.columns[0]]: row.to_dict() for _, row in frame.iterrows()}


def test_an_admin_lands_on_the_dashboard_with_the_studys_figures(study):
    at = logged_in("root")
    assert not at.exception
    assert titles(at) == ["Dashboard"]
    cells, annotators, accounts, assignments = (rows(t) for t in at.table)
    # quota 2: rma r0 has 2 labels, r1 and r2 one each (4 of 6); focus f0 one (1 of 4)
    assert cells["rma · tiny · gradcam"]["progress"] == "4 / 6 (67%)"
    assert cells["focus · tiny · gradcam"]["progress"] == "1 / 4 (25%)"
    assert (cells["rma · tiny · gradcam"]["examples"], cells["rma · tiny · gradcam"]["labels"]) == (3, 4)
    assert cells["rma · tiny · gradcam"]["verdict"].endswith("(incomplete: 4 of 6 labels)")
    assert cells["focus · tiny · gradcam"]["verdict"].endswith("(incomplete: 1 of 4 labels)")
    assert f"Note: {FIXED_NOTE}." in [c.value for c in at.caption]  # a fixed design's verdicts: not for stopping
    # decisive with a side, rma: ana r0 O|left O (left), ana r1 F|left O (right), ben r0 F|left F (left)
    assert cells["rma · tiny · gradcam"]["chose left"].startswith("67% [")
    assert cells["focus · tiny · gradcam"]["chose left"].startswith("0% [")  # ben f0 O|left F
    assert "**2 of 4** decisive labels chose the map shown on the left (50%" in "\n".join(m.value for m in at.markdown)
    # ana: 3 labels in 1, 4 and 30 s (median 4); ben: 2 labels in 1 and 3 s; each assigned the 5 examples
    assert annotators["ana"] == {"annotator": "ana", "labels": 3, "cells": 1, "of the examples": "60% of 5",
                                 "median s / answer": "4.0"}
    assert annotators["ben"] == {"annotator": "ben", "labels": 2, "cells": 2, "of the examples": "40% of 5",
                                 "median s / answer": "2.0"}
    assert annotators["cy"] == {"annotator": "cy", "labels": 0, "cells": 0, "of the examples": "0% of 5",
                                "median s / answer": "–"}  # assigned, nothing labelled yet
    assert "root" not in annotators  # neither assigned nor labelling
    assert assignments == {name: {"annotator": name, "cells": "whole study"} for name in ("ana", "ben", "cy")}
    assert set(accounts) == {"ana", "ben", "cy", "root"} and accounts["root"]["admin"] == "yes"
    assert accounts["cy"]["active"] == "–"

    at.selectbox(key="dashboard-scope").select("focus · tiny · gradcam").run()
    focus = rows(at.table[1])
    assert focus["ben"] == {"annotator": "ben", "labels": 1, "cells": 1, "of the examples": "50% of 2",
                            "median s / answer": "3.0"}
    assert (focus["ana"]["labels"], focus["ana"]["of the examples"]) == (0, "0% of 2")


def test_a_non_admin_never_gets_the_dashboard_even_when_asking_for_it(study):
    at = logged_in("ana")
    assert titles(at) == ["Your study cells"]
    assert not [b for b in at.button if b.label in ("Dashboard", "Annotate")]
    at.query_params["view"] = "dashboard"  # a forged request
    at.run()
    assert titles(at) == ["Your study cells"]
    assert [e.value for e in at.error] == [REFUSED]
    assert not at.table and not [b for b in at.button if b.label == "Add account"]


def test_an_admin_demoted_meanwhile_loses_the_dashboard_at_once(study):
    at = logged_in("root")
    assert titles(at) == ["Dashboard"]
    at.text_input(key="account-add-name").input("mallory")
    at.text_input(key="account-add-password").input("a-long-password")
    with study["store"].write() as session:
        session.get(Annotator, study["root"]).is_admin = False
    submit(at, "Add account")  # the form was on screen; its submission comes after the demotion
    assert titles(at) == ["Your study cells"] and not at.table
    assert study["store"].annotator("mallory") is None


def test_an_admin_switches_between_the_dashboard_and_annotating(study):
    at = logged_in("root")
    at.button(key="dashboard-annotate").click().run()
    assert titles(at) == ["Your study cells"]
    at.button(key="header-dashboard").click().run()
    assert titles(at) == ["Dashboard"]


def cli_error(monkeypatch, capsys, url: str, *args: str, stdin: str = "") -> str:
    """The CLI's one error line for ``harmony annotators ARGS --db url``, without its ``error: ``."""
    code, _, err = run_main(monkeypatch, capsys, "annotators", *args, "--db", url, stdin=stdin)
    [line] = err.strip().splitlines()
    assert code == 2 and line.startswith("error: ")
    return line.removeprefix("error: ")


def add_account(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="account-add-name").input(name)
    at.text_input(key="account-add-password").input(password)
    return submit(at, "Add account")


def test_a_bad_account_input_gives_the_clis_line_and_changes_nothing(study, monkeypatch, capsys):
    store, url = study["store"], study["url"]
    at = logged_in("root")
    for name, password, cli_args, stdin in (
            ("zed", "short", ("add", "zed", "--password-stdin"), "short\n"),
            ("ana", "long enough", ("add", "ana", "--password-stdin"), "long enough\n"),
            ("bad\tname", "long enough", ("add", "bad\tname", "--password-stdin"), "long enough\n")):
        add_account(at, name, password)
        assert not at.exception
        assert [e.value for e in at.error] == [cli_error(monkeypatch, capsys, url, *cli_args, stdin=stdin)]
    assert {a.name for a in store.annotators()} == {"ana", "ben", "cy", "root"}

    at.selectbox(key="account-password-name").select("ana")
    at.text_input(key="account-password-new").input("tiny")
    submit(at, "Set password")
    assert [e.value for e in at.error] == [cli_error(monkeypatch, capsys, url, "set-password", "ana",
                                                     "--password-stdin", stdin="tiny\n")]
    assert store.authenticate("ana", PASSWORD) is not None  # unchanged


def test_an_admin_adds_deactivates_and_resets_accounts_from_the_page(study):
    store = study["store"]
    at = add_account(logged_in("root"), " Zoë ", "zoe-password-1")
    assert [s.value for s in at.success] == ["added annotator Zoë"]
    assert store.authenticate("Zoë", "zoe-password-1") is not None and not store.annotator("Zoë").is_admin
    assert "Zoë" in rows(at.table[2])  # the accounts table shows the change made in this run

    at.selectbox(key="account-active-name").select("ben")
    submit(at, "Deactivate")
    assert [s.value for s in at.success] == ["deactivated annotator ben"]
    assert not store.annotator("ben").active

    at.selectbox(key="account-password-name").select("ana")
    at.text_input(key="account-password-new").input("a-new-password")
    submit(at, "Set password")
    assert [s.value for s in at.success] == ["set the password of annotator ana"]
    assert store.authenticate("ana", "a-new-password") is not None and store.authenticate("ana", PASSWORD) is None

    later = time.time() + 1000  # after the logins above, which took the clock's time
    for attempt in range(LOCK_AFTER + 1):  # far enough apart to pass every delay, until the lock
        store.login("ana", "wrong", client="203.0.113.9", now=later + 100 * attempt)
    assert "locked" in store.login("ana", "a-new-password", client="203.0.113.9", now=later + 10_000).message
    at.selectbox(key="account-active-name").select("ana")
    submit(at, "Unlock logins")
    assert [s.value for s in at.success] == ["unlocked ana"]
    assert store.login("ana", "a-new-password", client="203.0.113.9", now=later + 10_001).annotator is not None


def test_the_dashboards_verdicts_are_harmony_analyzes_and_leave_simulated_labels_out(tmp_path):
    """Two cells with different verdicts (one all Neither, one mostly fine-tuned), quota 3 unmet, and a
    simulated annotator whose labels must not count."""
    import json

    from typer.testing import CliRunner

    from harmony_cli.analysis import AnalysisSettings
    from harmony_cli.main import app
    from harmony_cli.analysis.study import analyze_study_labels as run_analysis
    from webui.dashboard import cached_analysis, study_figures

    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    with Store.open(url) as store:
        study = store.get_or_create_study("verdicts", config={"labels_per_example": 3})
        people = [store.add_annotator(name, None).id for name in ("p", "q")]
        robot = store.add_annotator("robot", None, simulated=True).id
        labels = []
        for metric, n, choose in (("road", 40, lambda i: "neither"),
                                  ("irof", 30, lambda i: "original" if i < 3 else "finetuned")):
            cell = dict(dataset="synthetic", metric=metric, backbone="tiny", attribution="gradcam")
            ids = store.add_examples(study.id, [dict(cell, source_key=f"{metric}{i}", position=i, class_name="c")
                                                for i in range(n)])
            labels += [dict(annotator_id=a, example_id=e, choice=choose(i), left_map="original")
                       for i, e in enumerate(ids) for a in people]
            labels += [dict(annotator_id=robot, example_id=ids[0], choice="original", left_map="finetuned")]
        store.add_labels(labels, source="test")
        figures = study_figures(store, "verdicts", AnalysisSettings.defaults(), run_analysis)
        cached = study_figures(store, "verdicts", AnalysisSettings.defaults(), cached_analysis)
    result = CliRunner().invoke(app, ["analyze", "--db", url, "--study", "verdicts", "--format", "json",
                                      "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    cli = {c["metric"]: (c["verdict"], c["verdicts"]["these_annotators"])
           for c in json.loads(result.stdout[result.stdout.index("{"):])["cells"]}
    shown = {c["metric"]: (c["verdict"], c["verdict_these_annotators"]) for c in figures.cells}
    # both verdicts, for people (two annotators: neither cell can be shown to people) and for these two; the
    # latter differ between the cells: each went to its own cell
    assert shown == cli and len({these for _, these in shown.values()}) == 2
    assert {c["metric"]: (c["verdict"], c["verdict_these_annotators"]) for c in cached.cells} == cli
    rows = {c["metric"]: c for c in figures.cells}
    # the robot's label on each cell's first example is left out: 2 real labels per example, quota 3
    assert (rows["road"]["labels"], rows["road"]["caveat"]) == (80, "incomplete: 80 of 120 labels")
    assert (rows["irof"]["labels"], rows["irof"]["caveat"]) == (60, "incomplete: 60 of 90 labels")
    assert figures.label_source == "real" and figures.notes[0].startswith("2 simulated labels left out")
    assert (rows["irof"]["decisive"], rows["irof"]["chose_left"]) == (60, 6)  # original on the left: 3 x 2


def test_an_admin_assigns_and_unassigns_cells_with_the_clis_rules(study, monkeypatch, capsys):
    store, url = study["store"], study["url"]
    at = logged_in("root")
    at.selectbox(key="assign-name").select("root")
    at.multiselect(key="assign-cells").select("focus/tiny/gradcam")
    submit(at, "Assign")
    assert not at.exception
    assert [s.value for s in at.success] == ["assigned focus/tiny/gradcam of study webui-test to root"]
    assert [(a["annotator"], a["metric"]) for a in store.assignments("webui-test") if a["annotator"] == "root"] == \
        [("root", "focus")]
    assert rows(at.table[3])["root"]["cells"] == "focus/tiny/gradcam"
    assert rows(at.table[1])["root"]["of the examples"] == "0% of 2"  # the focus cell's 2 examples, none labelled
    assert [r["metric"] for r in store.annotator_cells(study["root"])] == ["focus"]

    # ana has the whole study: a cell cannot be taken from it, as on the command line
    at.selectbox(key="assign-name").select("ana")
    at.multiselect(key="assign-cells").set_value(["rma/tiny/gradcam"])
    submit(at, "Unassign")
    assert [e.value for e in at.error] == [cli_error(monkeypatch, capsys, url, "unassign", "ana", "--study",
                                                     "webui-test", "--cell", "rma/tiny/gradcam")]
    at.multiselect(key="assign-cells").set_value([])
    submit(at, "Unassign")  # no cells: the whole study
    assert [s.value for s in at.success] == ["unassigned study webui-test from ana"]
    assert store.annotator_cells(study["ana"]) == [] and "ana" not in rows(at.table[3])
    assert rows(at.table[1])["ana"]["of the examples"] == "not assigned"  # her 3 labels stay

    store.update_study_config("webui-test", open=False)
    submit(at, "Assign")
    assert [s.value for s in at.success] == ["assigned study webui-test to ana (the study is closed to new labels: "
                                             "`harmony studies open webui-test`)"]


def test_a_study_without_labels_and_a_store_without_studies(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    monkeypatch.setenv("HARMONY_DB_URL", url)
    with Store.open(url) as store:
        store.add_annotator("root", PASSWORD, admin=True)
    at = logged_in("root")
    assert not at.exception and titles(at) == ["Dashboard"]
    assert [i.value for i in at.info] == ["No study yet: build one (harmony build-dataset) or import one "
                                          "(harmony import-legacy)."]
    make_study(url, tmp_path / "images")  # labels_per_example unset: 5
    at.run()
    assert not at.exception
    cells = rows(at.table[0])
    assert cells["rma · tiny · gradcam"]["progress"] == "0 / 15 (0%)"
    assert cells["rma · tiny · gradcam"]["verdict"] == "– (incomplete: 0 of 15 labels)"
    assert cells["focus · tiny · gradcam"]["chose left"] == "–"
    assert {name: row["of the examples"] for name, row in rows(at.table[1]).items()} == \
        {"ana": "0% of 5", "ben": "0% of 5", "cy": "0% of 5"}
    assert "no labels yet · 5 labels per example · open to new labels" in at.caption[0].value


def test_logging_out_of_the_dashboard_leaves_no_view_for_the_next_account_in_the_tab(study):
    """After an admin logs out, a non-admin logging in on the same page gets their cells, no refusal."""
    at = logged_in("root")
    at = at.button(key="dashboard-annotate").click().run()
    at = at.button(key="header-dashboard").click().run()  # the view is now in the page's URL
    assert titles(at) == ["Dashboard"] and "view" in at.query_params
    at.button(key="log-out").click().run()
    assert "view" not in at.query_params
    at.text_input(key="login-name").input("ana")
    at.text_input(key="login-password").input(PASSWORD)
    at = at.button[0].click().run()
    assert not at.exception and "Dashboard" not in titles(at)
    assert REFUSED not in [e.value for e in at.error]


def test_the_dashboard_shows_real_and_simulated_labels_apart(study):
    """After a simulation round (2 simulated annotators x 5 examples) the figures stay the 5 DASHBOARD_SEED
    labels' and the caption counts the two kinds apart."""
    from harmony_cli.study.simulate import simulate

    assert simulate(study["store"], "webui-test", n_annotators=2).added == 10
    at = logged_in("root")
    assert not at.exception
    caption = at.caption[0].value
    assert "figures of the real labels · 5 real labels · 10 simulated labels (never counted toward" in caption
    assert rows(at.table[0])["rma · tiny · gradcam"]["progress"] == "4 / 6 (67%)"  # the real labels' alone


def test_a_sequential_studys_verdicts_are_its_recorded_decisions(study):
    store = study["store"]
    store.update_study_config("webui-test", design="sequential",
                              sequential={"look_every": 2, "max_labels_per_cell": 6})
    with store.write() as session:  # what the looks recorded: rma decided at its 4 labels, focus not yet looked at
        session.add(SequentialCell(study_id=study["study_id"], dataset="synthetic", metric="rma", backbone="tiny",
                                   attribution="gradcam", look=2, verdict="no_preference", labels=4))
    at = logged_in("root")
    assert not at.exception
    cells = rows(at.table[0])
    assert cells["rma · tiny · gradcam"]["verdict"] == "no_preference at 4 labels (look 2 of 3)"
    assert cells["focus · tiny · gradcam"]["verdict"] == "undecided, look 0 of 3"
    assert "for these annotators" not in at.table[0].value.columns
    captions = [c.value for c in at.caption]
    assert f"Note: {FIXED_NOTE}." not in captions and any(c.startswith("Sequential design") for c in captions)
