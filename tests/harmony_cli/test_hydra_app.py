"""`harmony finetune` as a Hydra app: flags, one-line errors, config folder, plugins, parallel sweeps."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harmony_cli.errors import UserError
from harmony_cli.finetune_app import overrides_first
from harmony_cli.hydra_app import ConfigError, compose_config
from tests.conftest import CACHE_OVERRIDES, REPO


PYTHONPATH = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


def cli(*args: str, cwd: Path = REPO, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``harmony ARGS`` from the checkout."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": PYTHONPATH, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harmony_cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


SMALL_JOB = ["trainer.max_steps=2", "trainer.val_check_interval=2", "data.train_size=64", "data.val_size=16",
             "data.test_size=16", "finetune.val_size=8", "finetune.batch_size=8", "finetune.plot_images=2",
             "trainer.enable_progress_bar=false", *CACHE_OVERRIDES]


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["metric=nope"], "unknown metric 'nope': choose one of "  # every YAML file of conf/metric, sorted
                      + ", ".join(sorted(p.stem for p in (REPO / "conf" / "metric").glob("*.yaml")))),
    (["trainer.nosuch=1"], "unknown config option 'trainer.nosuch'"),
    (["+trainer.max_steps=3"], "already at 'trainer.max_steps'. Either remove + prefix: 'trainer.max_steps=3'"),
    (["metric=rma,,x="], "cannot read the override 'metric=rma,,x='"),
    (["-m", "metric=rma,focus", "--cfg", "job"], "--cfg prints the config of one job: drop -m"),
])
def test_finetune_config_errors_are_one_line(args, expected):
    assert expected in one_error_line(cli("finetune", *args, "--cfg", "job") if "-m" not in args
                                      else cli("finetune", *args))


@pytest.mark.parametrize("override, module, extra", [
    ("hydra/launcher=submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "slurm"),
    ("hydra/sweeper=optuna", "hydra_plugins.hydra_optuna_sweeper", "optuna"),
    ("hparams_search=optuna", "hydra_plugins.hydra_optuna_sweeper", "optuna"),
])
def test_a_missing_plugin_names_the_extra_to_install(override, module, extra):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here: nothing is missing")
    line = one_error_line(cli("finetune", override, "--cfg", "job"))
    assert f"pip install 'harmony[{extra}]'" in line


def test_hydra_flags_work_in_any_order():
    assert overrides_first(["metric=rma", "--cfg", "job", "-p", "trainer", "trainer.max_steps=7", "--resolve"]) == \
        ["metric=rma", "trainer.max_steps=7", "--cfg", "job", "-p", "trainer", "--resolve"]
    shown = cli("finetune", "metric=focus", "--cfg", "job", "trainer.precision=bf16-mixed")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert re.search(r"^  precision: bf16-mixed$", shown.stdout, re.M) and re.search(r"^  name: focus$", shown.stdout,
                                                                                      re.M)
    helped = cli("finetune", "--hydra-help")
    assert helped.returncode == 0 and "--multirun" in helped.stdout and "hydra/launcher" in helped.stdout


def test_version_is_the_package_version():
    from harmony_cli import __version__

    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"harmony {__version__}"


def test_harmony_conf_moves_the_configs_and_a_missing_folder_is_named(tmp_path):
    conf = tmp_path / "myconf"
    shutil.copytree(REPO / "conf", conf)
    (conf / "trainer" / "cpu.yaml").write_text((conf / "trainer" / "cpu.yaml").read_text()
                                               .replace("val_check_interval: 50", "val_check_interval: 17"))
    shown = cli("finetune", "--cfg", "job", env={"HARMONY_CONF": str(conf)})
    assert shown.returncode == 0 and "val_check_interval: 17" in shown.stdout, shown.stderr[-2000:]
    missing = tmp_path / "nowhere"
    for args in (["finetune", "--cfg", "job"], ["analyze", "--db", str(tmp_path / "x.db")]):
        line = one_error_line(cli(*args, env={"HARMONY_CONF": str(missing)}))
        assert str(missing) in line and "HARMONY_CONF" in line


def test_the_store_lives_under_the_outputs_root_unless_a_url_is_given(monkeypatch):
    monkeypatch.delenv("HARMONY_DB_URL", raising=False)
    monkeypatch.delenv("HARMONY_OUTPUTS", raising=False)
    assert compose_config([]).db_url == "sqlite:///outputs/harmony.db"
    assert compose_config(["paths.outputs=/data/h"]).db_url == "sqlite:////data/h/harmony.db"
    monkeypatch.setenv("HARMONY_OUTPUTS", "/srv/harmony")
    cfg = compose_config([])
    assert cfg.db_url == "sqlite:////srv/harmony/harmony.db" and cfg.study.db_url == cfg.db_url
    assert cfg.study.image_dir == "/srv/harmony/study_images"
    monkeypatch.setenv("HARMONY_DB_URL", "postgresql+psycopg://u@h/db")
    assert compose_config([]).db_url == "postgresql+psycopg://u@h/db"


def test_no_private_hydra_api_anywhere():
    offenders = [str(p.relative_to(REPO)) for folder in ("harmony_cli", "lightning_modules", "webui")
                 for p in (REPO / folder).rglob("*.py") if "hydra._internal" in p.read_text()]
    assert offenders == []


def test_compose_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown hydra/launcher 'nope': choose one of .*basic"):
        compose_config(["hydra/launcher=nope"])


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None,
                    reason="hydra-joblib-launcher is not installed (pip install 'harmony[joblib]'; the dev extra has it)")
def test_joblib_launcher_runs_sweep_jobs_in_separate_processes(tmp_path):
    outputs = tmp_path / "outputs"
    args = ["finetune", "-m", "hydra/launcher=joblib", "metric=rma,focus", *SMALL_JOB, f"paths.outputs={outputs}",
            # each job's log lines start with the id of the process that wrote them
            "hydra.job_logging.formatters.simple.format='%(process)d %(message)s'"]
    process = subprocess.Popen([sys.executable, "-m", "harmony_cli.main", *args], cwd=tmp_path,
                               env={**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": PYTHONPATH},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    jobs = sorted((outputs / "finetune-multirun").glob("*/*_gradcam_tiny"))
    assert [job.name for job in jobs] == ["0_rma_gradcam_tiny", "1_focus_gradcam_tiny"]
    pids = []
    for job in jobs:
        assert (job / "metrics.json").is_file()
        job_pids = set(re.findall(r"^(\d+) ", (job / "finetune.log").read_text(), re.M))
        assert len(job_pids) == 1, job_pids
        pids.append(int(job_pids.pop()))
    assert len(set(pids)) == 2 and process.pid not in pids, (pids, process.pid)


def test_resume_finds_the_latest_sweep_with_the_same_overrides(tmp_path):
    from omegaconf import OmegaConf

    from harmony_cli.finetune_app import resume_args

    outputs = tmp_path / "outputs"
    swept = ["metric=rma,focus", f"paths.outputs={outputs}", "trainer.max_steps=4"]
    for name, task in (("2026-01-01_00-00-00", swept), ("2026-01-02_00-00-00", swept),
                       ("2026-01-03_00-00-00", ["metric=rma,road", f"paths.outputs={outputs}"])):
        (outputs / "finetune-multirun" / name).mkdir(parents=True)
        OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": task}}}),
                       outputs / "finetune-multirun" / name / "multirun.yaml")
    # a longer budget may differ; the newest sweep with the same overrides is continued
    args = ["-m", "metric=rma,focus", f"paths.outputs={outputs}", "trainer.max_steps=8", "ckpt_path=last"]
    assert resume_args(args) == [*args, f"hydra.sweep.dir={outputs / 'finetune-multirun' / '2026-01-02_00-00-00'}"]
    assert resume_args(["metric=rma", "trainer.max_steps=8"]) == ["metric=rma", "trainer.max_steps=8"]
    with pytest.raises(Exception, match="no earlier finetune sweep") as info:
        resume_args(["-m", "metric=rma,irof", f"paths.outputs={outputs}", "ckpt_path=last"])
    assert isinstance(info.value, UserError)


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
                    reason="hydra-optuna-sweeper is not installed (pip install 'harmony[optuna]')")
def test_optuna_search_optimizes_the_runs_metric(tmp_path):
    import yaml

    outputs = tmp_path / "outputs"
    result = cli("finetune", "hparams_search=optuna", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.sampler.n_startup_trials=1", *SMALL_JOB, f"paths.outputs={outputs}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (found,) = outputs.glob("finetune-multirun/*/optimization_results.yaml")
    best = yaml.safe_load(found.read_text())
    scores = [json.loads(p.read_text())["finetuned_score"] for p in found.parent.glob("*/metrics.json")]
    assert len(scores) == 2 and best["best_value"] == pytest.approx(max(scores))
    assert set(best["best_params"]) == {"finetune.lr", "metric.loss_weight"}
