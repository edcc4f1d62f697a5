"""The real study rehearsed: README's miniature block (make-miniature, `experiment=paper` sweep through the
ImageNet and ImageNet-S loaders and torchvision backbones with hub-cache weights, build-dataset,
simulate-annotators, analyze) run exactly as written, through the command line, once per session."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from omegaconf import OmegaConf
from tests.conftest import REPO

README = REPO / "README.md"
MARKER = "<!-- miniature-study"
STUDY = "paper-mini"
# The cells the block asks for, written out here: one per metric on resnet18, and a vgg16 cell.
EXPECTED_CELLS = {("rma", "gradcam", "resnet18"), ("focus", "gradcam", "resnet18"), ("road", "gradcam", "resnet18"),
                  ("irof", "gradcam", "resnet18"), ("ris", "gradcam", "resnet18"), ("rma", "guided_backprop", "vgg16")}
EXAMPLES = 4  # study.examples_per_cell in the block
DATA_OF_METRIC = {"rma": "imagenet_s", "focus": "imagenet", "road": "imagenet", "irof": "imagenet", "ris": "imagenet"}


def section(text: str) -> str:
    start = text.index("## Running the real study")
    return text[start:text.index("\n## ", start + 1)]


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[list[str]]:
    """Shell lines of a block, continuation lines joined, comments dropped, split as the shell would."""
    return [words for line in block.replace("\\\n", " ").splitlines() if (words := shlex.split(line, comments=True))]


def miniature_block() -> list[list[str]]:
    text = section(README.read_text())
    return commands(bash_blocks(text[text.index(MARKER):])[0])


def harmony(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "harmony_cli.main", *args]


def clean_env(cwd: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HARMONY_DB_URL", "HARMONY_OUTPUTS", "TORCH_HOME")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**env, "COLUMNS": "200"}


@pytest.fixture(scope="session")
def paper_study(tmp_path_factory) -> Iterator[Path]:
    """Run README's miniature block in a fresh folder; the folder it ran in (removed afterwards: the
    stand-in weights and the vgg16 cell's checkpoints take ~5 GB)."""
    cwd = tmp_path_factory.mktemp("paper-study")
    env = clean_env(cwd)
    for words in miniature_block():
        if words[0] == "export":
            key, _, value = words[1].partition("=")
            env[key] = value
            continue
        assert words[0] == "harmony", f"the miniature block runs only harmony commands and exports: {words}"
        result = subprocess.run(harmony(words[1:]), cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
        assert result.returncode == 0, f"{shlex.join(words)} failed:\n{(result.stdout + result.stderr)[-3000:]}"
    yield cwd
    shutil.rmtree(cwd, ignore_errors=True)


def run_dirs(cwd: Path) -> list[Path]:
    return sorted(p for p in (cwd / "outputs" / STUDY).iterdir() if p.is_dir())


def test_the_block_is_the_paper_grid_in_miniature():
    block = miniature_block()
    finetunes = [w for w in block if w[:2] == ["harmony", "finetune"]]
    assert block[0] == ["harmony", "data", "make-miniature", "mini/"] and len(finetunes) == 2
    for words in finetunes:
        assert "-m" in words and "experiment=paper" in words and "trainer=cpu" in words
        assert "trainer.max_steps=2" in words
    swept = {(m, a, b) for w in finetunes
             for m in dict(o.split("=", 1) for o in w if "=" in o)["metric"].split(",")
             for a in [dict(o.split("=", 1) for o in w if "=" in o)["attribution"]]
             for b in [dict(o.split("=", 1) for o in w if "=" in o)["backbone"]]}
    assert swept == EXPECTED_CELLS
    assert f"study.examples_per_cell={EXAMPLES}" in block[-3] and block[-3][:2] == ["harmony", "build-dataset"]


def test_each_cell_ran_the_real_loaders_and_hub_weights(paper_study):
    cells = set()
    for run in run_dirs(paper_study):
        metrics = json.loads((run / "metrics.json").read_text())
        cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
        cell = (metrics["metric"], metrics["attribution"], metrics["backbone"])
        cells.add(cell)
        assert run.name.endswith("_".join(cell))
        assert metrics["data"] == DATA_OF_METRIC[cell[0]] == cfg.data.name
        assert cfg.data._target_.endswith("ImageNetSDataModule" if cell[0] == "rma" else ".ImageNetDataModule")
        assert cfg.backbone.weights == "IMAGENET1K_V1" and cfg.data.num_classes == 1000
        assert cfg.data.image_size == 64 and cfg.trainer.max_steps == 2 and metrics["steps"] == 2
        assert metrics["validation_images"] == 2 and metrics["higher_is_better"] == (cell[0] != "ris")
        for key in ("original_score", "finetuned_score", "agreement", "original_accuracy", "finetuned_accuracy"):
            assert math.isfinite(metrics[key]), (cell, key)
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "finetune.png").is_file()
    assert cells == EXPECTED_CELLS


def study_examples(store) -> list[dict]:
    """Every example of the study: its cell, class and both scores."""
    from sqlalchemy import select

    from harmony_cli.store.models import Example, Study

    with store.read() as session:
        rows = session.execute(select(Example.metric, Example.attribution, Example.backbone, Example.dataset,
                                      Example.class_name, Example.original_score, Example.finetuned_score)
                               .join(Study, Study.id == Example.study_id).where(Study.name == STUDY))
        return [dict(row._mapping) for row in rows]


def test_study_and_report_agree_with_the_runs(paper_study):
    from harmony_cli.store import Store

    store = Store.open(f"sqlite:///{paper_study / 'outputs' / 'harmony.db'}", create=False)
    try:
        cells = store.cells(STUDY)
        examples = study_examples(store)
        labels = store.labels_frame(STUDY)
        config = store.study(STUDY).config
    finally:
        store.close()
    assert {(c["metric"], c["attribution"], c["backbone"]) for c in cells} == EXPECTED_CELLS
    for cell in cells:
        assert cell["dataset"] == DATA_OF_METRIC[cell["metric"]]
        assert cell["examples"] == EXAMPLES and cell["annotators"] == 3 and cell["labels"] == 3 * EXAMPLES
    assert config["higher_is_better"]["ris"] is False and config["higher_is_better"]["rma"] is True
    assert len(labels) == 3 * EXAMPLES * len(EXPECTED_CELLS) and labels["example_id"].nunique() == len(examples)
    for cell in EXPECTED_CELLS:
        mine = [(e["original_score"], e["finetuned_score"]) for e in examples
                if (e["metric"], e["attribution"], e["backbone"]) == cell]
        # A metric may leave an image unscored (None): Focus on a one-class batch (no mosaic), RIS when
        # every perturbation changes the class. Never infinite, and most examples carry both scores.
        scored = [pair for pair in mine if all(v is not None and not math.isnan(v) for v in pair)]
        assert len(scored) * 2 >= len(mine) and all(math.isfinite(v) for pair in scored for v in pair), cell
        if cell[0] in ("rma", "focus"):
            assert all(0 <= v <= 1 for pair in scored for v in pair), cell
        if cell[0] == "ris":
            assert all(v >= 0 for pair in scored for v in pair), cell

    report_dir = paper_study / "outputs" / "reports" / STUDY
    report = json.loads((report_dir / "report.json").read_text())
    reported = {(c["metric"], c["attribution"], c["backbone"]): c for c in report["cells"]}
    assert set(reported) == EXPECTED_CELLS
    assert all(c["n_examples"] == EXAMPLES and c["n_labels"] == 3 * EXAMPLES for c in reported.values())
    assert (report_dir / "report.md").is_file() and (report_dir / "cells.csv").is_file()


def section_finetune_overrides() -> list[list[str]]:
    """The overrides of every other `harmony finetune` the section shows (code blocks and inline code)."""
    text = section(README.read_text())
    block_start = text.index("```bash", text.index(MARKER))
    text = text[:block_start] + text[text.index("```", block_start + 7) + 3:]  # without the miniature block
    lines = [shlex.join(w) for block in bash_blocks(text) for w in commands(block)]
    lines += re.findall(r"`(harmony finetune [^`]*)`", text)
    return [[w for w in shlex.split(line)[2:] if w not in ("...", "-m")] for line in lines
            if line.startswith("harmony finetune")]


def on_miniature(override: str) -> str:
    key, _, value = override.partition("=")
    mini = {"paper.imagenet_root": "mini/ILSVRC/Data/CLS-LOC", "paper.imagenet_s_root": "mini/ImageNetS"}
    return f"{key}={mini[key]}" if key in mini else override


def test_every_override_the_section_shows_composes(paper_study):
    """The real-run and scale-out commands compose (`--cfg all`, one cell) on the miniature's paths."""
    shown = section_finetune_overrides()
    flat = [o for overrides in shown for o in overrides]
    for expected in ("hydra/launcher=joblib", "hydra/launcher=submitit_slurm", "trainer=ddp", "hydra.sweep.dir=outputs/paper"):
        assert expected in flat, f"the section no longer shows {expected}"
    env = {**clean_env(paper_study), "TORCH_HOME": str(paper_study / "mini" / "torch_home")}
    submitit = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
    composed = 0
    for overrides in shown:
        if "hydra/launcher=submitit_slurm" in overrides and not submitit:
            continue  # an optional plugin (pip install hydra-submitit-launcher): composing it needs it
        overrides = [on_miniature(o) for o in overrides]
        if not any(o.startswith("paper.imagenet_root=") for o in overrides):
            overrides += [on_miniature("paper.imagenet_root="), on_miniature("paper.imagenet_s_root=")]
        result = subprocess.run(harmony(["finetune", *overrides, "--cfg", "all"]), cwd=paper_study, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{overrides}: {result.stderr[-2000:]}"
        composed += 1
    assert composed >= 3
