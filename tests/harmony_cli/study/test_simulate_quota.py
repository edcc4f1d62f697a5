"""Simulated labels never fill the labels_per_example quota that real annotators fill on the page.

The study of tests/webui_study.py (5 examples in two cells), quota 2, and three real annotators who try
to answer every example through the page's path (Store.answer with a session): the first two are taken,
the third is refused as full. The same outcome is expected with or without a simulation round
(5 simulated annotators, each answering every example) done before.
"""
from __future__ import annotations

import pytest

from harmony_cli.store import ExampleFull, Store
from harmony_cli.study.simulate import simulate
from tests.webui_study import PASSWORD, make_study

QUOTA = 2


def real_answers(store: Store, info: dict, names: list[str]) -> dict[str, list[bool]]:
    """Each name's page answers to every example, in order: whether each was stored (False: refused as full)."""
    outcome = {}
    for name in names:
        account = store.annotator_by_id(info[name])
        outcome[name] = []
        for example_id in [e for cell in info["cells"] for e in cell]:
            try:
                store.answer(account.id, example_id, "neither", left_map="original", response_ms=900,
                             session_version=account.session_version)
                outcome[name].append(True)
            except ExampleFull:
                outcome[name].append(False)
    return outcome


@pytest.fixture(params=[False, True], ids=["no-simulation", "after-simulation"])
def study(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_study(url, tmp_path / "images")
    with Store.open(url) as store:
        info["dee"] = store.add_annotator("dee", PASSWORD).id
        store.assign("dee", "webui-test")
        store.update_study_config("webui-test", labels_per_example=QUOTA)
        if request.param:
            assert simulate(store, "webui-test", n_annotators=5).added == 25
        yield store, info


def test_real_annotators_fill_the_quota_exactly_as_without_simulated_labels(study):
    store, info = study
    cell = {"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam"}
    # before any real answer every example still wants labels from a real annotator
    assert store.next_to_label(info["ana"], info["study_id"], cell, QUOTA) == info["cells"][0][0]
    [rma] = [row for row in store.annotator_cells(info["ana"]) if row["metric"] == "rma"]
    assert (rma["labels"], rma["needed"], rma["available"], rma["complete"]) == (0, 3 * QUOTA, 3, False)
    outcome = real_answers(store, info, ["ana", "ben", "dee"])
    # two real labels per example: ana's and ben's are taken, dee's refused on every example
    assert outcome == {"ana": [True] * 5, "ben": [True] * 5, "dee": [False] * 5}
    [rma] = [row for row in store.annotator_cells(info["dee"]) if row["metric"] == "rma"]
    assert (rma["labels"], rma["available"], rma["complete"]) == (3 * QUOTA, 0, True)
    assert store.next_to_label(info["dee"], info["study_id"], cell, QUOTA) is None
