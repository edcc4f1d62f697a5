"""conf/ is the only source of defaults: a changed YAML default changes what harmony does, no settings
class carries a default of its own that differs from conf/, and every command's --db is one option."""
from __future__ import annotations

import dataclasses
import inspect
import shutil
from pathlib import Path

import pytest
import typer
import yaml

from harmony_cli.analysis import AnalysisSettings
from harmony_cli.defaults import config_default, outputs_root
from harmony_cli.hydra_app import config_dir
from harmony_cli.main import app
from harmony_cli.store import StoreError, resolve_db_url, study_rules
from harmony_cli.study.export import default_path
from harmony_cli.study.settings import RenderSettings, StudySettings
from lightning_modules.finetune import FinetuneModule
from tests.conf_checks import class_defaults_against_conf

# Each settings class and the config group that holds its keys.
SETTINGS_GROUPS = [(StudySettings, "study"), (RenderSettings, "study"), (AnalysisSettings, "analysis.settings")]
# Parameters whose None means "derive it" (from the metric class), not a value conf/ could hold.
DERIVED_WHEN_NONE = {"metric_name", "higher_is_better"}


def _rewrite(path: Path, **keys) -> None:
    text = yaml.safe_load(path.read_text())
    for dotted, value in keys.items():
        node = text
        *parents, last = dotted.split("__")
        for parent in parents:
            node = node[parent]
        node[last] = value
    path.write_text(yaml.safe_dump(text))


def test_a_changed_yaml_default_changes_the_settings_the_store_url_and_the_page_rules(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    shutil.copytree(config_dir(), conf)
    elsewhere = tmp_path / "elsewhere"
    _rewrite(conf / "study" / "default.yaml", labels_per_example=3, colormap="viridis", examples_per_cell=7)
    _rewrite(conf / "analysis" / "default.yaml", settings__alpha=0.01, settings__bootstrap_resamples=11)
    _rewrite(conf / "paths" / "default.yaml", outputs=str(elsewhere))
    monkeypatch.setenv("HARMONY_CONF", str(conf))
    monkeypatch.delenv("HARMONY_OUTPUTS", raising=False)
    monkeypatch.delenv("HARMONY_DB_URL", raising=False)

    study = StudySettings.defaults()
    assert (study.labels_per_example, study.colormap, study.examples_per_cell) == (3, "viridis", 7)
    assert RenderSettings.defaults().colormap == "viridis"
    assert study_rules({}, "harmony").labels_per_example == 3  # a study that records none: the page's quota
    analysis = AnalysisSettings.defaults(seed=4)
    assert (analysis.alpha, analysis.bootstrap_resamples, analysis.seed) == (0.01, 11, 4)
    assert outputs_root() == elsewhere
    assert resolve_db_url() == f"sqlite:///{elsewhere / 'harmony.db'}"
    assert default_path("pilot", "csv").parent == elsewhere / "exports"


@pytest.mark.parametrize("cls, group", SETTINGS_GROUPS, ids=lambda x: getattr(x, "__name__", x))
def test_no_settings_class_carries_a_default_that_differs_from_conf(cls, group):
    configured = config_default(group)
    differing = {}
    for item in dataclasses.fields(cls):
        assert item.name in configured, f"{cls.__name__}.{item.name} has no key in conf/ ({group})"
        if item.default is not dataclasses.MISSING and item.default != configured[item.name]:
            differing[item.name] = (item.default, configured[item.name])
        assert item.default_factory is dataclasses.MISSING, f"{cls.__name__}.{item.name} has a default factory"
    assert differing == {}


def test_finetune_module_carries_no_default_that_differs_from_conf_model():
    configured = config_default("model")
    differing = {}
    for name, parameter in inspect.signature(FinetuneModule.__init__).parameters.items():
        if name not in configured or parameter.default is inspect.Parameter.empty:
            continue
        if parameter.default is None and name in DERIVED_WHEN_NONE:
            continue
        if parameter.default != configured[name]:
            differing[name] = (parameter.default, configured[name])
    assert differing == {}
    # the keys conf/model sets are all ones FinetuneModule takes (a renamed argument would drift silently)
    assert set(configured) - {"_target_"} <= set(inspect.signature(FinetuneModule.__init__).parameters)


@pytest.mark.parametrize("group", ["metric", "attribution"])
def test_metric_and_attribution_classes_default_to_what_conf_sets(group):
    """The library classes keep defaults for Python users without Hydra (lightning_modules cannot read conf/);
    each must equal the value its YAML sets, so the two never tell different stories."""
    differing = {}
    for option in sorted(path.stem for path in (config_dir() / group).glob("*.yaml")):
        for key, (default, configured) in class_defaults_against_conf(group, option).items():
            if default != configured:
                differing[(option, *key)] = (default, configured)
    assert differing == {}


def _commands(group, prefix: str = ""):
    """Every command and command group under ``group``, by its command line (``annotators add``)."""
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if hasattr(command, "commands"):
            yield from _commands(command, f"{prefix}{name} ")


def test_every_command_s_db_option_has_one_help_text():
    helps = {}
    for name, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if "--db" in getattr(param, "opts", ()):
                helps[name] = param.help
    assert len(helps) >= 15  # the store commands: annotators, studies, analyze, serve, export, ...
    assert len(set(helps.values())) == 1, helps
    assert "HARMONY_DB_URL" in next(iter(helps.values()))


def test_an_empty_harmony_db_url_is_refused_in_one_line(monkeypatch):
    monkeypatch.setenv("HARMONY_DB_URL", "")
    with pytest.raises(StoreError, match="HARMONY_DB_URL is set but empty"):
        resolve_db_url()
    assert resolve_db_url("given.db") == "sqlite:///given.db"  # --db still wins
