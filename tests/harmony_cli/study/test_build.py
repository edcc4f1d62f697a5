"""harmony build-dataset: rendering, blinding, the both-correct filter, idempotence, resume, multirun cells."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from harmony_cli.commands.build_dataset import translate_overrides
from harmony_cli.errors import UserError
from harmony_cli.study.build import build_study
from harmony_cli.study.files import write_content_named
from harmony_cli.study.pairs import ReusedMaps
from harmony_cli.study.rendering import RenderSettings, colorize, encode_png, normalize_maps, render_pairs
from harmony_cli.study.runs import check_distinct_cells, find_runs, latest_run
from harmony_cli.study.selection import correctness, seeded_order
from tests.conftest import REPO


# ---------------------------------------------------------------------------- rendering


def test_maps_are_normalized_to_their_own_max_and_keep_only_positive_relevance():
    maps = torch.zeros(3, 1, 4, 4)
    maps[0, 0, 0, 0], maps[0, 0, 1, 1] = 10.0, 5.0
    maps[1, 0, 2, 2], maps[1, 0, 3, 3] = 0.001, -7.0   # tiny scale; negative part dropped
    maps[2] = -1.0                                        # no positive relevance at all
    out = normalize_maps(maps)
    assert out.shape == (3, 4, 4)
    assert out[0, 0, 0] == 1.0 and out[0, 1, 1] == 0.5
    assert out[1, 2, 2] == 1.0 and out[1, 3, 3] == 0.0
    assert torch.count_nonzero(out[2]) == 0


def test_colorize_follows_the_colormap_from_zero_to_one():
    from matplotlib import colormaps

    rgb = colorize(np.array([[[0.0, 1.0]]]), "viridis")
    expected = (np.array([colormaps["viridis"](0.0)[:3], colormaps["viridis"](1.0)[:3]]) * 255).round()
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 1, 2, 3)
    np.testing.assert_array_equal(rgb[0, 0], expected.astype(np.uint8))


@pytest.mark.parametrize("size", [224, None])
def test_render_pairs_upscales_images_and_maps(size):
    torch.manual_seed(0)
    images = torch.randn(2, 3, 64, 64)
    original, finetuned = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    rendered = render_pairs(images, original, finetuned, RenderSettings.defaults(image_size=size))
    side = size or 64
    for array in (rendered.images, rendered.original_overlays, rendered.finetuned_overlays,
                  rendered.original_heatmaps, rendered.finetuned_heatmaps):
        assert array.shape == (2, side, side, 3) and array.dtype == np.uint8
    # a different map gives a different picture; the same map the same one
    assert not np.array_equal(rendered.original_heatmaps, rendered.finetuned_heatmaps)
    again = render_pairs(images, original, original, RenderSettings.defaults(image_size=size))
    np.testing.assert_array_equal(again.original_overlays, again.finetuned_overlays)


def test_render_settings_refuse_non_perceptual_colormaps_and_bad_sizes():
    with pytest.raises(UserError, match="perceptually uniform"):
        RenderSettings.defaults(colormap="jet")
    with pytest.raises(UserError, match="image_size"):
        RenderSettings.defaults(image_size=2)
    with pytest.raises(UserError, match="resample"):
        RenderSettings.defaults(resample="lanczos9")


def sha_name(data: bytes) -> str:
    """The content-hash file name, from its definition: the first 32 hex digits of SHA-256."""
    return hashlib.sha256(data).hexdigest()[:32] + ".png"


def test_png_files_are_named_by_content_written_atomically_and_carry_no_metadata(tmp_path):
    from PIL import Image

    a = encode_png(np.zeros((8, 8, 3), np.uint8))
    b = encode_png(np.full((8, 8, 3), 200, np.uint8))
    name_a = write_content_named(tmp_path, a)
    assert name_a == sha_name(a) and name_a != sha_name(b)
    assert write_content_named(tmp_path, a) == name_a            # idempotent
    write_content_named(tmp_path, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name_a, sha_name(b)])  # no tmp files left
    assert (tmp_path / name_a).read_bytes() == a
    image = Image.open(io.BytesIO(a))
    assert not {k for k in image.info if k not in ("dpi",)}  # no text chunks (software, source, ...)


# ---------------------------------------------------------------------------- selection


class FixedPredictions(nn.Module):
    """A classifier whose prediction for image i is ``predictions[i]`` (the image's first pixel indexes it)."""

    def __init__(self, predictions: list[int], classes: int = 4):
        super().__init__()
        self.register_buffer("logits", torch.nn.functional.one_hot(torch.tensor(predictions), classes).float())

    def forward(self, x):
        return self.logits[x[:, 0, 0, 0].long()]


def test_only_images_both_models_classify_correctly_are_kept():
    images = torch.arange(4).float().view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    labels = torch.tensor([0, 1, 2, 3])
    original = FixedPredictions([0, 1, 0, 0])    # right on 0, 1
    finetuned = FixedPredictions([0, 0, 2, 0])   # right on 0, 2
    keep, reasons = correctness(original, finetuned, images, labels)
    assert keep.tolist() == [True, False, False, False]
    assert reasons == [None, "fine-tuned wrong", "original wrong", "both models wrong"]


def test_seeded_order_is_a_permutation_fixed_by_the_seed():
    assert sorted(seeded_order(50, 3)) == list(range(50))
    assert seeded_order(50, 3) == seeded_order(50, 3)
    assert seeded_order(50, 3) != seeded_order(50, 4)


def test_metric_reuses_the_rendered_maps_for_the_same_images_and_explains_anything_else():
    calls = []

    def explainer(x, target=None, create_graph=False):
        calls.append(x.shape[0])
        return torch.full((x.shape[0], 1, 2, 2), 7.0)

    x, y, maps = torch.randn(3, 3, 2, 2), torch.tensor([0, 1, 2]), torch.ones(3, 1, 2, 2)
    reuse = ReusedMaps(explainer, x, y, maps)
    assert reuse(x.clone(), y.clone()) is maps and calls == []
    assert reuse(x + 1, y)[0, 0, 0, 0] == 7.0 and calls == [3]           # perturbed input
    assert reuse(x, torch.tensor([2, 1, 0]))[0, 0, 0, 0] == 7.0            # another target
    assert reuse(x, y, create_graph=True)[0, 0, 0, 0] == 7.0               # a graph is asked for


# ---------------------------------------------------------------------------- runs on disk


def _fake_run(path: Path, mtime: float | None = None, metric: str = "rma", checkpoint: bool = True) -> Path:
    """A run dir as finetune leaves it (config, metrics.json, an empty last checkpoint unless not ``checkpoint``)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text(
        f"data: {{name: synthetic}}\nmetric: {{name: {metric}}}\nbackbone: {{name: tiny}}\n"
        f"attribution: {{name: gradcam}}\n")
    (path / "metrics.json").write_text('{"best_checkpoint": null}')
    if checkpoint:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "last.ckpt").write_bytes(b"")
    if mtime is not None:
        os.utime(path / "metrics.json", (mtime, mtime))
    return path


def test_runs_are_found_in_run_and_multirun_dirs_and_the_latest_finished_one_is_the_default(tmp_path):
    outputs = tmp_path / "outputs"
    now = time.time()
    single = _fake_run(outputs / "finetune" / "2025-01-01_10-00-00", now - 100)
    (outputs / "finetune" / "2025-01-02_10-00-00").mkdir(parents=True)  # unfinished: no metrics.json
    sweep = outputs / "finetune-multirun" / "2025-01-01_09-00-00"
    members = [_fake_run(sweep / name, now - 50) for name in ("10_rma_gradcam_tiny", "2_focus_gradcam_tiny")]
    (sweep / "3_road_gradcam_tiny").mkdir()                              # a failed member
    assert find_runs(single) == [single]
    assert find_runs(sweep) == [members[1], members[0]]               # job order, not string order
    assert latest_run(outputs) == sweep
    os.utime(single / "metrics.json", (now, now))
    assert latest_run(outputs) == single
    with pytest.raises(UserError, match="no finished finetune run"):
        latest_run(tmp_path / "empty")
    with pytest.raises(UserError, match="does not exist"):
        find_runs(tmp_path / "nope")
    with pytest.raises(UserError, match="holds no finished finetune run"):
        find_runs(outputs / "finetune" / "2025-01-02_10-00-00")
    # a run that trained no step (metrics.json, no checkpoint) is never the latest and cannot be built
    empty = _fake_run(outputs / "finetune" / "2025-01-03_10-00-00", now + 100, checkpoint=False)
    assert latest_run(outputs) == single
    with pytest.raises(UserError, match="has no checkpoint"):
        find_runs(empty)


def test_two_runs_of_the_same_cell_are_refused_before_anything_is_built(tmp_path):
    runs = [_fake_run(tmp_path / "0_a", metric="rma"), _fake_run(tmp_path / "1_b", metric="focus")]
    check_distinct_cells(runs)
    runs.append(_fake_run(tmp_path / "2_c", metric="rma"))
    with pytest.raises(UserError, match="same cell .synthetic / rma / tiny / gradcam"):
        check_distinct_cells(runs)


def test_run_override_composes_as_study_run():
    from harmony_cli.hydra_app import compose_config

    cfg = compose_config(translate_overrides(["run=/some/run", "study.examples_per_cell=5"]), task="build_dataset")
    assert cfg.study.run == "/some/run" and cfg.study.examples_per_cell == 5


def test_a_study_built_with_other_render_settings_is_not_mixed(tmp_path):
    from harmony_cli.hydra_app import compose_config

    run = _fake_run(tmp_path / "outputs" / "finetune" / "2025-01-01_10-00-00")
    base = [f"paths.outputs={tmp_path / 'outputs'}", f"study.db_url=sqlite:///{tmp_path / 'h.db'}", f"run={run}",
            "study.name=pilot"]
    from harmony_cli.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'h.db'}")
    store.get_or_create_study("pilot", config={"seed": 0, "image_size": 224, "colormap": "viridis",
                                               "image_weight": 0.35, "resample": "bilinear"},
                              image_dir=str(tmp_path / "images"))
    store.close()
    with pytest.raises(UserError, match="colormap=viridis"):
        build_study(compose_config(translate_overrides(base), task="build_dataset"))


# ---------------------------------------------------------------------------- from real finetune runs

HASH_NAME = re.compile(r"^[0-9a-f]{32}\.png$")
PATH_FIELDS = ("image_path", "original_map_path", "finetuned_map_path", "original_heatmap_path",
               "finetuned_heatmap_path")


@pytest.fixture(scope="module")
def sweep(trained_tiny, tmp_path_factory) -> Path:
    """A finished 2-job finetune multirun (rma, focus x gradcam) with a tiny budget; its dir."""
    root = tmp_path_factory.mktemp("build_dataset")
    weights = root / "tiny.pt"
    torch.save(trained_tiny.state_dict(), weights)
    outputs = root / "outputs"
    command = [sys.executable, "-m", "harmony_cli.main", "finetune", "-m", "metric=rma,focus",
               "attribution=gradcam", *_outputs(outputs), f"backbone.weights={weights}",
               "data.train_size=128", "data.val_size=32", "data.test_size=64", "finetune.batch_size=16",
               "finetune.val_size=16", "finetune.val_batch_size=16", "finetune.plot_images=2",
               "trainer.val_check_interval=2", "trainer.max_steps=2", "trainer.enable_progress_bar=false"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = list((outputs / "finetune-multirun").iterdir())
    return sweep_dir


def _outputs(outputs: Path) -> list[str]:
    from tests.conftest import CACHE_OVERRIDES

    return [f"paths.outputs={outputs}", *CACHE_OVERRIDES]


def _build(run: Path | None, db: Path, *extra: str, outputs: Path | None = None):
    from harmony_cli.hydra_app import compose_config

    outputs = outputs or db.parent / "outputs"
    overrides = [*_outputs(outputs), f"study.db_url=sqlite:///{db}", "study.examples_per_cell=8",
                 "study.batch_size=4", "study.image_size=96", "study.name=test", *extra]
    if run is not None:
        overrides.append(f"run={run}")
    return build_study(compose_config(translate_overrides(overrides), task="build_dataset"))


def _examples(db: Path, study: str = "test") -> tuple[Path, list]:
    from sqlalchemy import select

    from harmony_cli.store import Example, Store

    store = Store.open(f"sqlite:///{db}")
    try:
        found = store.study(study)
        with store.read() as session:
            rows = list(session.scalars(select(Example).filter_by(study_id=found.id).order_by(Example.position)))
        return Path(found.image_dir), rows
    finally:
        store.close()


@pytest.fixture(scope="module")
def gradcam_study(sweep, tmp_path_factory):
    """The rma/gradcam run of the sweep built into a study of 8 examples: (run dir, db, results)."""
    (run,) = [p for p in sweep.iterdir() if p.name.endswith("_rma_gradcam_tiny")]
    db = tmp_path_factory.mktemp("gradcam_study") / "harmony.db"
    return run, db, _build(run, db).results


def test_a_run_becomes_one_cell_of_both_correct_test_images_in_seeded_order(gradcam_study):
    from harmony_cli.store import Store
    from lightning_modules.finetune import load_finetune_run

    run_dir, db, (result,) = gradcam_study
    image_dir, rows = _examples(db)
    assert (result.examples, result.added) == (8, 8) and len(rows) == 8
    assert result.cell == {"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam"}
    run = load_finetune_run(run_dir)
    test = run.datamodule.split("test")
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(0)).tolist()  # study.seed=0
    items = [test[i] for i in order]
    x = torch.stack([item["image"] for item in items])
    y = torch.tensor([item["label"] for item in items])
    with torch.no_grad():
        both = (run.original(x).argmax(1) == y) & (run.finetuned(x).argmax(1) == y)
    # exactly the first 8 both-correct images of the seeded order, at their rank
    expected = [(str(order[r]), r) for r in both.nonzero().flatten()[:8].tolist()]
    assert [(e.source_key, e.position) for e in rows] == expected
    considered = expected[-1][1] + 1
    assert sum(result.skipped.values()) == int((~both[:considered]).sum())
    # what is stored per example: class, run, and each model's RMA on its own map, recomputed from
    # the definition (positive relevance inside the object mask over all positive relevance)
    keys = [int(e.source_key) for e in rows]
    xs, ys = torch.stack([test[k]["image"] for k in keys]), torch.tensor([test[k]["label"] for k in keys])
    inside = (torch.stack([test[k]["mask"] for k in keys]).flatten(1) != 0).double()
    for side, model in (("original", run.original), ("finetuned", run.finetuned)):
        positive = run.explainer(model)(xs, ys).detach().double().flatten(1).clamp_min(0)
        total = positive.sum(1)
        expected_scores = torch.where(total > 0, (positive * inside).sum(1) / total.clamp_min(1e-300), 0.0)
        assert [getattr(e, f"{side}_score") for e in rows] == pytest.approx(expected_scores.tolist(), abs=1e-5)
    # the two models' scores differ, so stored scores (or maps) swapped between them would be caught
    assert max(abs(e.original_score - e.finetuned_score) for e in rows) > 1e-4
    store = Store.open(f"sqlite:///{db}")
    assert store.study("test").config["higher_is_better"] == {"rma": True}  # RMA: more mass on the object
    store.close()
    assert [e.class_name for e in rows] == [test[k]["class_name"] for k in keys]
    assert {e.run for e in rows} == {str(run_dir)}
    # the files exist, decode at the display size, and the two maps differ
    from PIL import Image

    for e in rows:
        for f in PATH_FIELDS:
            with Image.open(image_dir / getattr(e, f)) as png:
                assert png.size == (96, 96)
    assert any(e.original_map_path != e.finetuned_map_path for e in rows)


def test_no_path_tells_which_map_is_which(gradcam_study):
    run_dir, db, _ = gradcam_study
    image_dir, rows = _examples(db)
    for e in rows:
        for f in PATH_FIELDS:
            assert HASH_NAME.match(getattr(e, f)), getattr(e, f)
    words = ("orig", "fine", "learn", "tuned", "before", "after", "base", "left", "right")
    for path in [image_dir, *image_dir.rglob("*")]:
        assert not any(w in part.lower() for part in path.relative_to(image_dir.parent.parent).parts for w in words), path
    # the folder holds only finished images: every file is some example's
    referenced = {getattr(e, f) for e in rows for f in PATH_FIELDS}
    assert {p.name for p in image_dir.iterdir()} == referenced


def test_building_a_complete_study_again_adds_nothing(gradcam_study):
    run_dir, db, _ = gradcam_study
    image_dir, before = _examples(db)
    files_before = sorted(p.name for p in image_dir.iterdir())
    (again,) = _build(run_dir, db).results
    _, after = _examples(db)
    assert again.added == 0 and again.examples == 8 and not again.skipped
    assert [(e.id, e.source_key, e.image_path) for e in after] == [(e.id, e.source_key, e.image_path) for e in before]
    assert sorted(p.name for p in image_dir.iterdir()) == files_before


def test_an_interrupted_build_completes_without_duplicates(gradcam_study, tmp_path, monkeypatch):
    from harmony_cli.store import Store

    run_dir, reference_db, _ = gradcam_study
    db = tmp_path / "harmony.db"
    real_add, calls = Store.add_examples, []

    def killed_on_second_batch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second batch's files are on disk, its rows never commit
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(Store, "add_examples", killed_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        _build(run_dir, db)
    _, partial = _examples(db)
    assert len(partial) == 4
    monkeypatch.setattr(Store, "add_examples", real_add)
    (resumed,) = _build(run_dir, db).results
    assert (resumed.added, resumed.examples) == (4, 8)
    _, rows = _examples(db)
    _, reference = _examples(reference_db)
    # the same study as an uninterrupted build: same images, order and files, each once
    fields = ("source_key", "position", "class_name", *PATH_FIELDS)
    assert [tuple(getattr(e, f) for f in fields) for e in rows] == [tuple(getattr(e, f) for f in fields)
                                                                   for e in reference]


def _cell_keys(db: Path, study: str) -> dict[str, set[str]]:
    """metric -> the test-split indices of its cell's examples."""
    _, rows = _examples(db, study)
    keys: dict[str, set[str]] = {}
    for e in rows:
        keys.setdefault(e.metric, set()).add(e.source_key)
    return keys


def test_a_multirun_dir_becomes_one_cell_per_run_with_disjoint_images_and_is_the_default(sweep, tmp_path):
    """`harmony build-dataset` with no run= takes the latest run under outputs: here the sweep."""
    from typer.testing import CliRunner

    from harmony_cli.main import app
    from harmony_cli.store import Store

    db = tmp_path / "harmony.db"
    outputs = sweep.parent.parent
    args = ["build-dataset", *_outputs(outputs), f"study.db_url=sqlite:///{db}", "study.examples_per_cell=3",
            "study.batch_size=8", "study.image_size=64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = Store.open(f"sqlite:///{db}")
    try:
        (study,) = store.studies()
        cells = store.cells(study.name)
    finally:
        store.close()
    assert study.name == f"finetune-multirun-{sweep.name}"
    assert [(c["metric"], c["attribution"], c["examples"]) for c in cells] == [("focus", "gradcam", 3),
                                                                             ("rma", "gradcam", 3)]
    assert study.config["higher_is_better"] == {"rma": True, "focus": True}
    assert "focus / gradcam" in result.output and "6 examples in 2 cell(s)" in result.output
    out = " ".join(result.output.split())
    assert "images: disjoint across cells of the same backbone and attribution" in out
    # the two cells share backbone and attribution: no test image in both
    keys = _cell_keys(db, study.name)
    assert len(keys["rma"]) == len(keys["focus"]) == 3 and not keys["rma"] & keys["focus"]

    # study.disjoint_images=false: each cell takes the first both-correct images, shared across cells
    shared_db = tmp_path / "shared.db"
    result = CliRunner().invoke(app, [*args, f"study.db_url=sqlite:///{shared_db}", "study.disjoint_images=false",
                                      "study.name=shared"])
    assert result.exit_code == 0, result.output
    assert "images: shared across cells" in " ".join(result.output.split())
    keys = _cell_keys(shared_db, "shared")
    assert keys["rma"] & keys["focus"]
