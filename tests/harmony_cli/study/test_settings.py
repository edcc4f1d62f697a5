"""study.design and study.sequential (harmony_cli/study/settings.py): their defaults from conf/study, a Hydra
override, the one-line refusals, and the study's record of them (what a later build must repeat)."""
from __future__ import annotations

import pytest

from harmony_cli.errors import UserError
from harmony_cli.hydra_app import compose_config
from harmony_cli.designs import RULE_FIELDS, RULE_KEY
from harmony_cli.study.settings import StudySettings, pre_registered_rule
from harmony_cli.study.study_row import StudyRow


def test_the_design_composes_from_conf_and_overrides_and_is_recorded_with_the_study():
    cfg = compose_config(["study.design=sequential", "study.sequential.look_every=5",
                          "study.sequential.max_labels_per_cell=40"], task="build_dataset")
    settings = StudySettings.from_config(cfg.study)
    assert settings.design == "sequential"
    assert settings.pinned()["sequential"] == {"max_labels_per_cell": 40, "look_every": 5}
    assert settings.pinned()["design"] == "sequential"
    assert StudySettings.defaults(design="sequential", examples_per_cell=20, labels_per_example=5,
                                  sequential={"look_every": 10, "max_labels_per_cell": 100}).sequential[
        "max_labels_per_cell"] == 100  # exactly what a cell can get
    default = StudySettings.defaults()
    assert (default.design, default.sequential) == ("fixed", {"max_labels_per_cell": None, "look_every": 10})


@pytest.mark.parametrize("overrides, fragment", [
    ({"design": "adaptive"}, "study.design='adaptive' is unknown: choose one of fixed, sequential"),
    ({"sequential": {"look_every": 0, "max_labels_per_cell": None}}, "study.sequential.look_every=0 must be"),
    ({"sequential": {"look_every": 10, "max_labels_per_cell": -5}}, "study.sequential.max_labels_per_cell=-5"),
    ({"sequential": {"look_every": 2.5, "max_labels_per_cell": None}}, "look_every=2.5 must be a whole number"),
    ({"sequential": {"look_every": 10, "max_labels": 5}}, "study.sequential.max_labels is not a sequential setting"),
    ({"design": "sequential", "examples_per_cell": 20, "labels_per_example": 5,
      "sequential": {"look_every": 10, "max_labels_per_cell": 101}},
     "max_labels_per_cell=101 is more than a cell can get (examples_per_cell x labels_per_example = 100)"),
])
def test_an_unknown_design_or_a_non_positive_number_is_one_line(overrides, fragment):
    with pytest.raises(UserError) as error:
        StudySettings.defaults(**overrides)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_study_built_with_another_design_is_not_completed_with_this_one(sqlite_url, tmp_path):
    from harmony_cli.store import Store

    with Store.open(sqlite_url) as store:
        fixed = StudySettings.defaults()
        study = store.get_or_create_study("s", config=fixed.pinned(), image_dir=str(tmp_path / "s"))
        store.add_examples(study.id, [dict(dataset="d", metric="rma", backbone="b", attribution="a", source_key="0",
                                           class_name="c")])
        other = StudySettings.defaults(design="sequential")
        with pytest.raises(UserError, match="study.design=fixed \\(not sequential\\)"):
            StudyRow.open(store, "s", other, other.pinned(), tmp_path / "s")


def test_a_sequential_study_records_its_rule_and_refuses_completion_under_another(sqlite_url, tmp_path):
    from harmony_cli.store import Store

    cfg = compose_config(["study.design=sequential", "analysis.settings.alpha=0.01",
                          "analysis.settings.generalize=these_annotators", "analysis.settings.bootstrap_resamples=7"],
                         task="build_dataset")
    settings = StudySettings.from_config(cfg.study)
    rule = pre_registered_rule(settings, cfg.analysis.settings)[RULE_KEY]
    # what the looks decide with, and nothing they do not read (a descriptive bootstrap is not the rule)
    assert set(rule) == set(RULE_FIELDS) and (rule["alpha"], rule["generalize"]) == (0.01, "these_annotators")
    assert pre_registered_rule(StudySettings.from_config(compose_config([], task="build_dataset").study),
                               cfg.analysis.settings) == {}      # a fixed study's rule is analyze's, at the end
    with Store.open(sqlite_url) as store:
        study = store.get_or_create_study("s", config={**settings.pinned(), RULE_KEY: rule},
                                          image_dir=str(tmp_path / "s"))
        store.add_examples(study.id, [dict(dataset="d", metric="rma", backbone="b", attribution="a", source_key="0",
                                           class_name="c")])
        with pytest.raises(UserError, match=r"analysis.settings.alpha=0.01 \(not 0.05: the sequential rule it "
                                            r"recorded\)") as error:
            StudyRow.open(store, "s", settings, {**settings.pinned(), RULE_KEY: {**rule, "alpha": 0.05}}, tmp_path / "s")
        assert "\n" not in str(error.value)
        again = StudyRow.open(store, "s", settings, {**settings.pinned(), RULE_KEY: dict(rule)}, tmp_path / "s")
        assert again.config[RULE_KEY] == rule
