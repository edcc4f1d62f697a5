"""A study pairs each fine-tuned map with the original the run started from, and build-dataset
checks what it can before it works: settings before torch, a study's recorded settings, its
image folder, and leaves no new store file when it fails.

The run here uses ``backbone.weights=auto`` with a models folder holding the session's cached
``tiny`` (so nothing trains); the tests then swap that cache for other weights, or point at an
empty models folder, as another outputs folder or a cleared cache would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, TEST_CACHE
from tests.helpers import CELL, run_main

DATA = ["data.train_size=64", "data.val_size=16", "data.test_size=32"]


def finetune(*args: str) -> subprocess.CompletedProcess:
    """``harmony finetune`` of a tiny rma/gradcam run with ``args``."""
    command = [sys.executable, "-m", "harmony_cli.main", "finetune", "metric=rma",
               f"paths.cache={TEST_CACHE / 'cache'}", *DATA, "finetune.batch_size=8", "finetune.val_size=16",
               "finetune.val_batch_size=16", "finetune.plot_images=2", "trainer.val_check_interval=1",
               "trainer.enable_progress_bar=false", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def cache_name() -> str:
    """The file ``backbone.weights=auto`` looks up for ``tiny`` on this module's data (its recipe from conf/)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from harmony_cli.hydra_app import compose_config
    from lightning_modules.backbones import TinyCNN
    from lightning_modules.backbones.weights import auto_weights_path

    config = compose_config([f"paths.cache={TEST_CACHE / 'cache'}", *DATA])
    recipe = OmegaConf.to_container(config.backbone.auto, resolve=True)
    recipe.pop("shipped")  # whether shipped weights may stand in, not part of the recipe
    return auto_weights_path(TinyCNN(num_classes=8), "tiny", instantiate(config.data), TEST_CACHE, **recipe).name


def models_folder(folder: Path, trained_tiny: torch.nn.Module, perturbed: bool = False) -> Path:
    """A models folder whose ``auto`` cache holds the session's trained ``tiny`` (``perturbed``: other
    weights under its name, as a cache retrained after it was cleared would hold)."""
    folder.mkdir(parents=True)
    state = {k: v.clone() for k, v in trained_tiny.state_dict().items()}
    if perturbed:
        generator = torch.Generator().manual_seed(1)
        state = {k: v + 0.2 * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
                 for k, v in state.items()}
    torch.save({"state_dict": state, "test_accuracy": 1.0, "epochs": 0}, folder / cache_name())
    return folder


@pytest.fixture(scope="module")
def auto_run(trained_tiny, tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-step rma/gradcam run made with ``backbone.weights=auto``: (run dir, its models folder)."""
    root = tmp_path_factory.mktemp("provenance")
    models = models_folder(root / "models", trained_tiny)
    result = finetune(f"paths.outputs={root / 'outputs'}", f"paths.models={models}", "backbone.weights=auto",
                      "trainer.max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in models.iterdir()] == [cache_name()], "the run trained a base model"
    (run,) = (root / "outputs" / "finetune").iterdir()
    return run, models


def build(run: Path, root: Path, models: Path, *extra: str):
    """build-dataset of ``run`` into ``root`` (its own store, image folder and outputs), study 'p'."""
    from harmony_cli.commands.build_dataset import translate_overrides
    from harmony_cli.hydra_app import compose_config
    from harmony_cli.study.build import build_study

    overrides = [f"paths.outputs={root / 'outputs'}", f"paths.cache={TEST_CACHE / 'cache'}", f"paths.models={models}",
                 f"study.db_url=sqlite:///{root / 'h.db'}", "study.examples_per_cell=4", "study.batch_size=4",
                 "study.image_size=32", "study.name=p", f"run={run}", *extra]
    return build_study(compose_config(translate_overrides(overrides), task="build_dataset"))


def pairs(root: Path) -> list[tuple]:
    """Each stored example's test image, map files (content-hash names) and scores, after checking the files."""
    from sqlalchemy import select

    from harmony_cli.store import Example, Store

    with Store.open(f"sqlite:///{root / 'h.db'}") as store:
        study = store.study("p")
        with store.read() as session:
            rows = list(session.scalars(select(Example).filter_by(study_id=study.id).order_by(Example.position)))
    for e in rows:
        assert (Path(study.image_dir) / e.original_map_path).is_file()
    return [(e.source_key, e.original_map_path, e.finetuned_map_path, e.original_score, e.finetuned_score)
            for e in rows]


@pytest.fixture(scope="module")
def reference_study(auto_run, tmp_path_factory) -> list[tuple]:
    """The study built where the run was made (its models folder untouched)."""
    run, models = auto_run
    root = tmp_path_factory.mktemp("reference")
    build(run, root, models)
    return pairs(root)


def same_weights(model: torch.nn.Module, expected: torch.nn.Module) -> bool:
    got, want = model.state_dict(), expected.state_dict()
    return got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_build_dataset_renders_the_original_the_run_started_from_whatever_the_cache_holds(
        auto_run, reference_study, trained_tiny, tmp_path, monkeypatch):
    import lightning_modules.backbones as backbones
    from lightning_modules.finetune import load_finetune_run

    run, _ = auto_run
    assert len(reference_study) == 4
    # a cache retrained after it was cleared: other weights under the same name
    retrained = models_folder(tmp_path / "retrained" / "models", trained_tiny, perturbed=True)
    swapped = backbones.TinyCNN(8)
    swapped.load_state_dict(torch.load(retrained / cache_name(), weights_only=True)["state_dict"])
    assert not same_weights(swapped, trained_tiny)
    assert same_weights(load_finetune_run(run, [f"paths.models={retrained}"]).original, trained_tiny)
    build(run, tmp_path / "retrained", retrained)
    assert pairs(tmp_path / "retrained") == reference_study

    # another outputs folder with an empty models folder: nothing may train a base model
    def no_training(*args, **kwargs):
        raise AssertionError("build-dataset trained (or looked up) a base model")

    monkeypatch.setattr(backbones, "auto_weights", no_training)
    empty = tmp_path / "elsewhere" / "models"
    empty.mkdir(parents=True)
    build(run, tmp_path / "elsewhere", empty)
    assert pairs(tmp_path / "elsewhere") == reference_study
    assert list(empty.iterdir()) == []


def legacy(run: Path) -> None:
    """Make ``run`` what an older harmony wrote: checkpoints of the fine-tuned net only, no original.pt."""
    for ckpt in (run / "checkpoints").glob("*.ckpt"):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        state.pop("original_sha256", None)
        torch.save(state, ckpt)
    (run / "original.pt").unlink(missing_ok=True)


def other_original(run: Path) -> None:
    state = torch.load(run / "original.pt", map_location="cpu", weights_only=True)
    torch.save({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, run / "original.pt")


ALTERED_RUNS = [
    ("made by an older harmony", legacy, "does not record the original model it started from"),
    ("original.pt removed", lambda run: (run / "original.pt").unlink(), "lost original.pt"),
    ("original.pt replaced", other_original, "is not the original best.ckpt was fine-tuned from"),
]


@pytest.mark.parametrize("alter, expected", [c[1:] for c in ALTERED_RUNS], ids=[c[0] for c in ALTERED_RUNS])
def test_a_run_without_its_own_original_is_refused_in_one_line_before_anything_is_written(
        alter, expected, auto_run, tmp_path, monkeypatch, capsys):
    run = shutil.copytree(auto_run[0], tmp_path / "run")
    alter(run)
    db, images = tmp_path / "new" / "h.db", tmp_path / "images"
    code, _, err = run_main(monkeypatch, capsys, "build-dataset", f"run={run}", f"paths.cache={TEST_CACHE / 'cache'}",
                            f"paths.models={auto_run[1]}", f"study.image_dir={images}", "study.examples_per_cell=2",
                            "study.image_size=32", "--db", f"sqlite:///{db}")
    assert code == 2, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not images.exists() and not db.parent.exists()  # no image folder, no new store file


def test_a_resumed_run_continues_against_the_original_it_started_from(auto_run, trained_tiny, tmp_path):
    from lightning_modules.finetune import load_finetune_run

    run = shutil.copytree(auto_run[0], tmp_path / "run")
    retrained = models_folder(tmp_path / "models", trained_tiny, perturbed=True)
    result = finetune(f"paths.outputs={tmp_path / 'outputs'}", f"paths.models={retrained}", "backbone.weights=auto",
                      f"hydra.run.dir={run}", "ckpt_path=last", "trainer.max_steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = load_finetune_run(run)  # refuses if the resumed checkpoints record another original
    assert loaded.metrics["steps"] == 3 and same_weights(loaded.original, trained_tiny)


# ------------------------------------------------------------------ cheap checks, recorded settings, leftovers

def fake_run(path: Path) -> Path:
    """A finished run's files as build-dataset finds them (no weights: these builds must stop before loading)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("data: {name: synthetic}\nmetric: {name: rma}\n"
                                                 "backbone: {name: tiny}\nattribution: {name: gradcam}\n")
    (path / "metrics.json").write_text('{"best_checkpoint": null}')
    (path / "checkpoints").mkdir()
    (path / "checkpoints" / "last.ckpt").write_bytes(b"")
    return path


@pytest.mark.parametrize("setting, expected", [
    ("study.examples_per_cell=0", "study.examples_per_cell=0 must be at least 1"),
    ("study.colormap=jet", "is not a perceptually uniform colormap"),
])
def test_bad_study_settings_are_refused_before_torch_is_imported(setting, expected, tmp_path):
    run = fake_run(tmp_path / "run")
    script = ("import sys\nfrom harmony_cli.main import main\n"
              f"sys.argv = ['harmony', 'build-dataset', 'run={run}', '{setting}', '--db', '{tmp_path / 'h.db'}']\n"
              "try:\n    main()\nexcept SystemExit as exc:\n"
              "    print('torch imported' if 'torch' in sys.modules else 'torch not imported')\n    raise\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert result.stdout.strip() == "torch not imported"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no store, no outputs


@pytest.fixture
def existing_study(tmp_path) -> tuple[Path, Path, list[str]]:
    """A store holding study 'p' (two examples) built with the arguments returned: (db, image root, arguments)."""
    from harmony_cli.store import Store

    run, db, images = fake_run(tmp_path / "run"), tmp_path / "h.db", tmp_path / "images"
    recorded = {"seed": 0, "image_size": 32, "colormap": "inferno", "image_weight": 0.35, "resample": "bilinear",
                "disjoint_images": True, "examples_per_cell": 8, "labels_per_example": 5}
    with Store.open(f"sqlite:///{db}") as store:
        study = store.get_or_create_study("p", config=recorded, image_dir=str((images / "p").resolve()))
        store.add_examples(study.id, [dict(CELL, source_key=str(k), class_name="c", image_path=f"{k}.png",
                                           original_map_path=f"{k}o.png", finetuned_map_path=f"{k}f.png")
                                      for k in range(2)])
    args = [f"run={run}", "study.name=p", "study.image_size=32", "study.examples_per_cell=8",
            f"study.image_dir={images}", f"paths.outputs={tmp_path / 'outputs'}", "--db", f"sqlite:///{db}"]
    return db, images, args


def study_state(db: Path) -> tuple:
    from sqlalchemy import func, select

    from harmony_cli.store import Example, Store

    with Store.open(f"sqlite:///{db}") as store:
        study = store.study("p")
        with store.read() as session:
            return study.config, study.image_dir, session.scalar(select(func.count()).select_from(Example))


@pytest.mark.parametrize("changes, expected", [
    (["study.examples_per_cell=16"], ["study.examples_per_cell=8 (not 16)"]),
    (["study.labels_per_example=3"], ["study.labels_per_example=5 (not 3)"]),
    (["study.image_dir={other}"], ["study.image_dir={images} (not {other})"]),
    (["study.examples_per_cell=4", "study.seed=1"], ["study.seed=0 (not 1)", "study.examples_per_cell=8 (not 4)"]),
], ids=["examples_per_cell", "labels_per_example", "image_dir", "two at once"])
def test_other_settings_for_an_existing_study_are_refused_with_what_differs(changes, expected, existing_study,
                                                                            tmp_path, monkeypatch, capsys):
    db, images, args = existing_study
    paths = {"other": tmp_path / "elsewhere", "images": images}
    before = study_state(db)
    code, _, err = run_main(monkeypatch, capsys, "build-dataset", *args, *[c.format(**paths) for c in changes])
    assert code == 2, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    for part in expected:
        assert part.format(**paths) in err, err
    assert study_state(db) == before
    assert not (tmp_path / "elsewhere").exists() and not (images / "p").exists()


def test_a_study_image_folder_that_is_a_link_elsewhere_is_refused(tmp_path, monkeypatch, capsys):
    run, images, elsewhere = fake_run(tmp_path / "run"), tmp_path / "images", tmp_path / "elsewhere"
    images.mkdir()
    elsewhere.mkdir()
    (images / "p").symlink_to(elsewhere, target_is_directory=True)
    db = tmp_path / "new" / "h.db"
    code, _, err = run_main(monkeypatch, capsys, "build-dataset", f"run={run}", "study.name=p",
                            f"study.image_dir={images}", "--db", f"sqlite:///{db}")
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "is a symbolic link" in err, err
    assert list(elsewhere.iterdir()) == [] and not db.parent.exists()


def test_a_failed_import_leaves_no_new_store_file(tmp_path, monkeypatch, capsys):
    from tests.legacy_fixtures import write_fixtures

    fixtures, images, outside = tmp_path / "fx", tmp_path / "images", tmp_path / "outside"
    write_fixtures(fixtures)
    outside.mkdir()
    (outside / "3_image.png").write_bytes(b"\x89PNG of another study")
    (images / "data").mkdir(parents=True)
    (images / "data" / "e2").symlink_to(outside, target_is_directory=True)  # refused once the import reads it
    db = tmp_path / "new" / "h.db"
    code, _, err = run_main(monkeypatch, capsys, "import-legacy", str(fixtures), "--images", str(images),
                            "--study", "pilot", "--db", str(db))
    assert code == 2 and "outside the folder" in err, err
    assert not db.parent.exists()
