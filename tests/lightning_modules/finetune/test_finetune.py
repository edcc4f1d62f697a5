"""`harmony finetune`: the objective, the best-checkpoint rule, run dirs, resume, DDP, bad overrides.

Runs use tiny budgets (a few steps on a 256-image train split, 32 validation images) and the
cached base model of the test session (``trained_tiny``), passed as a weights file so that the
smaller data split does not retrain it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_modules.finetune import (BEST_CKPT, CHECKPOINT_DIR, LAST_CKPT, METRICS_KEYS, BestAgreeingCheckpoint,
                                        FinetuneModule, check_combination)
from tests.helpers import harmony
from tests.metric_cases import finetuning_moves

PAPER_METRICS = ("rma", "focus", "road", "irof", "ris")
PAPER_ATTRIBUTIONS = ("gradcam", "guided_backprop", "excitation_backprop")


def _module(original, metric_name: str = "rma", attribution: str = "gradcam", lr: float = 1e-3,
            extra: list[str] = ()) -> FinetuneModule:
    from harmony_cli.hydra_app import compose_config
    from lightning_modules.finetune import build_module

    cfg = compose_config([f"metric={metric_name}", f"attribution={attribution}", f"finetune.lr={lr}", *extra])
    return build_module(cfg, original=original)


def _batch(datamodule, n: int = 16, split: str = "train") -> dict:
    from lightning_modules.data import collate_skip_none

    dataset = datamodule.split(split)
    return collate_skip_none([dataset[i] for i in range(n)])


# ----------------------------------------------------------------------------- the objective


def test_objective_decreases_and_only_the_copy_learns(trained_tiny, synthetic_dm):
    module = _module(trained_tiny)
    module.train()  # what Lightning calls at fit start
    assert not module.original.training and not module.finetuned.training, "both nets must stay in eval mode"
    bn = next(m for m in module.finetuned.modules() if isinstance(m, torch.nn.BatchNorm2d))
    running_mean = bn.running_mean.clone()
    original_state = {k: v.clone() for k, v in module.original.state_dict().items()}
    optimizer = module.configure_optimizers()
    batch = _batch(synthetic_dm)
    losses, metric_losses = [], []
    for _ in range(5):
        terms = module.objective(batch)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        losses.append(float(terms["loss"].detach()))
        metric_losses.append(float(terms["metric_loss"].detach()))
    forwards = []
    trained_net, _ = module.trainable(batch["image"], batch["label"])  # the copy or its BatchNorm-folded twin
    hook = trained_net.register_forward_hook(lambda *args: forwards.append(1))
    module.objective(batch)
    hook.remove()
    assert len(forwards) == 1, "the agreement term must reuse the logits of the map's forward pass"
    assert losses[-1] < losses[0], losses
    assert metric_losses[-1] < metric_losses[0], metric_losses
    assert torch.equal(bn.running_mean, running_mean), "BatchNorm statistics drifted"
    for key, value in module.original.state_dict().items():
        assert torch.equal(value, original_state[key]), f"the frozen original changed: {key}"
    assert any(not torch.equal(p, original_state[k]) for k, p in module.finetuned.state_dict().items())


def test_agreement_term_is_zero_for_identical_logits_and_grows_with_disagreement():
    from lightning_modules.finetune import agreement_loss

    logits = torch.randn(4, 8)
    assert float(agreement_loss(logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(agreement_loss(logits, -logits)) == pytest.approx(1.0, abs=1e-6)


def _row_cosine_loss(a: list[list[float]], b: list[list[float]]) -> float:
    """(1 - cos)/2 per row (image), over the class axis, averaged: written out by hand."""
    losses = []
    for row_a, row_b in zip(a, b):
        dot = sum(p * q for p, q in zip(row_a, row_b))
        norms = sum(p * p for p in row_a) ** 0.5 * sum(q * q for q in row_b) ** 0.5
        losses.append((1 - dot / norms) / 2)
    return sum(losses) / len(losses)


def test_agreement_loss_is_a_row_wise_cosine():
    from lightning_modules.finetune import agreement_loss

    original = torch.tensor([[4.0, 1.0, 0.5], [0.2, 3.0, 1.0], [1.0, 0.5, 5.0], [2.0, 0.1, 0.3]])
    # a positive rescaling of each row keeps every image's prediction: no disagreement at all
    rescaled = original * torch.tensor([[0.1], [7.0], [2.5], [40.0]])
    assert float(agreement_loss(original, rescaled)) == pytest.approx(0.0, abs=1e-6)
    # swapping the top two classes of every row flips every prediction
    flipped = original.clone()
    for row in flipped:
        top2 = row.topk(2).indices
        row[top2] = row[top2.flip(0)].clone()
    assert (flipped.argmax(1) != original.argmax(1)).all()
    expected = _row_cosine_loss(original.tolist(), flipped.tolist())
    assert expected > 0.05
    assert float(agreement_loss(original, flipped)) == pytest.approx(expected, rel=1e-5)
    # symmetric in its arguments, and the original's side carries no gradient
    assert float(agreement_loss(flipped, original)) == pytest.approx(expected, rel=1e-5)
    finetuned = flipped.clone().requires_grad_(True)
    source = original.clone().requires_grad_(True)
    agreement_loss(source, finetuned).backward()
    assert source.grad is None and finetuned.grad.abs().sum() > 0


# (metric, cheaper settings, lr, steps, images, the score must go: +1 up / -1 down, the held-out agreement
# floor): expectations of the study, not of the code: RMA is higher-is-better, RIS lower-is-better. RIS on
# 8 images at lr 3e-4 rose on one of two trained base models (6.2 -> 8.5); on 16 images at lr 1e-3 it
# fell on every one tried. Its steps are large: one base model kept 100% agreement, another 87.5% (the
# 95% floor is the best checkpoint's choice among validations, not a property of every step); with the
# agreement term's sign flipped, agreement fell to 9% (RIS) and 91% (RMA) on the same base model.
IMPROVES = [("rma", [], 1e-4, 8, 8, +1, 0.95), ("ris", ["++metric.metric.n_samples=16"], 1e-3, 8, 16, -1, 0.75)]


@pytest.mark.parametrize("metric_name, extra, lr, steps, images, direction, floor", IMPROVES,
                         ids=[c[0] for c in IMPROVES])
def test_a_few_finetuning_steps_improve_the_metric_while_agreement_holds(trained_tiny, synthetic_dm, metric_name,
                                                                        extra, lr, steps, images, direction,
                                                                        floor):
    """Through the real FinetuneModule and its optimizer, on one fixed batch (tests/metric_cases.py's
    finetuning_moves): a wrong-signed metric term (or agreement term) makes this fail, whichever base model the
    machine trained."""
    finetuning_moves(trained_tiny, synthetic_dm, metric_name, direction, lr=lr, steps=steps, images=images,
                     floor=floor, extra=extra)


# ----------------------------------------------------------------------------- best checkpoint


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_best_checkpoint_respects_the_agreement_floor(tmp_path, higher_is_better):
    sign = 1 if higher_is_better else -1
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m", min_agreement=0.95, higher_is_better=higher_is_better)
    assert callback.consider(sign * 0.50, 0.99, step=10)        # first validation above the floor
    assert not callback.consider(sign * 0.90, 0.90, step=20)    # better metric, but agreement below the floor
    assert callback.consider(sign * 0.60, 0.95, step=30)        # at the floor counts
    assert not callback.consider(sign * 0.55, 1.00, step=40)    # worse metric
    assert not callback.consider(float("nan"), 1.00, step=50)
    assert (callback.best_step, callback.best_score) == (30, sign * 0.60)
    restored = BestAgreeingCheckpoint(tmp_path, monitor="val/m", higher_is_better=higher_is_better)
    restored.load_state_dict(callback.state_dict())
    assert not restored.consider(sign * 0.59, 1.0, step=60) and restored.consider(sign * 0.61, 1.0, step=70)


def test_no_checkpoint_qualifies_when_agreement_never_reaches_the_floor(tmp_path):
    callback = BestAgreeingCheckpoint(tmp_path, monitor="val/m", min_agreement=0.95)
    assert not any(callback.consider(score, 0.9, step) for step, score in enumerate([0.1, 0.5, 0.9]))
    assert callback.best_step is None


# ----------------------------------------------------------------------------- the study's grid


def test_every_paper_cell_composes_with_the_right_data():
    from harmony_cli.hydra_app import compose_config

    for metric in PAPER_METRICS:
        for backbone in ("resnet18", "vgg16"):
            for attribution in PAPER_ATTRIBUTIONS:
                cfg = compose_config(["experiment=paper", f"metric={metric}", f"backbone={backbone}",
                                      f"attribution={attribution}"])
                check_combination(cfg, environment=False)  # a GPU config checked on any machine
                assert cfg.data.name == ("imagenet_s" if metric == "rma" else "imagenet")
                assert cfg.backbone.weights == "IMAGENET1K_V1" and cfg.trainer.accelerator == "gpu"


# Cheaper settings of the costly scores (fewer removal steps, superpixels, perturbations).
CHEAP_SCORES = {"road": ["++metric.metric.percentages=[20,60]"], "irof": ["++metric.metric.n_segments=16"],
                "ris": ["++metric.metric.n_samples=2"]}


@pytest.mark.parametrize("metric_name", PAPER_METRICS)
def test_every_metric_and_attribution_trains_and_scores(trained_tiny, synthetic_dm, metric_name):
    """One training step and one validation of each metric x attribution of the study (tiny backbone)."""
    batch = _batch(synthetic_dm, n=8, split="val")
    # 32x32 (the tiny net's last map is then 4x4): a quarter of the compute, same code paths
    batch["image"] = torch.nn.functional.interpolate(batch["image"], size=32, mode="bilinear", antialias=True)
    batch["mask"] = torch.nn.functional.interpolate(batch["mask"], size=32, mode="nearest")
    for attribution in PAPER_ATTRIBUTIONS:
        module = _module(trained_tiny, metric_name, attribution, extra=CHEAP_SCORES.get(metric_name, []))
        terms = module.objective(batch)
        terms["loss"].backward()
        grads = [p.grad for p in module.finetuned.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), (metric_name, attribution)
        from lightning_modules.finetune import batch_sums, summarize

        summary = summarize(batch_sums(module, batch))
        assert summary["images"] == 8 and summary["agreement"] == 1.0  # no optimizer step yet
        assert all(map(torch.isfinite, torch.tensor([summary["finetuned_score"], summary["original_score"]])))


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_torchvision_backbones_take_a_training_step(backbone):
    """The study's backbones (random weights, small images): the GradCAM layer hooks and the loss trains."""
    from harmony_cli.hydra_app import compose_config
    from hydra.utils import instantiate

    cfg = compose_config([f"backbone={backbone}", "backbone.weights=none"])
    original = instantiate(cfg.backbone)
    module = _module(original, "focus", "gradcam", extra=[f"backbone={backbone}"])
    x = torch.randn(4, 3, 32, 32)
    batch = {"image": x, "label": torch.arange(4), "mask": torch.zeros(4, 1, 32, 32)}
    terms = module.objective(batch)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"])


# ----------------------------------------------------------------------------- CLI runs


def _csv_history(run: Path) -> list[dict[str, float]]:
    """Validation rows of the run's CSV logs (every version: a resume adds one), by step; later rows win."""
    import csv

    rows: dict[int, dict[str, float]] = {}
    for path in sorted((run / "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("val/agreement"):
                    step = int(float(row["val/step"]))
                    rows[step] = {**{k: float(v) for k, v in row.items() if v}, "step": step}
    return [rows[s] for s in sorted(rows)]


def test_run_dir_layout_resume_and_load(small_run, tmp_path):
    first = harmony("finetune", "metric=rma", *small_run)
    assert first.returncode == 0, first.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "finetune").iterdir())
    assert len(runs) == 1
    run = runs[0]
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "logs/version_0/metrics.csv", "original.pt",
                 f"{CHECKPOINT_DIR}/{LAST_CKPT}", "metrics.json", "finetune.png"):
        assert (run / name).is_file(), name
    assert (run / "finetune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(METRICS_KEYS) <= set(metrics)
    assert (metrics["metric"], metrics["attribution"], metrics["backbone"]) == ("rma", "gradcam", "tiny")
    assert metrics["steps"] == 4
    history = _csv_history(run)
    assert [row["step"] for row in history] == [2, 4]
    assert [row["step"] for row in metrics["history"]] == [2, 4]
    # the best checkpoint is the best validation among those that kept agreement >= the floor; with
    # lr 1e-4 and 4 steps every validation keeps it (the no-eligible case: the callback tests above)
    eligible = [row for row in history if row["val/agreement"] >= metrics["min_agreement"]]
    assert eligible, history
    best = max(eligible, key=lambda row: row["val/rma"])
    assert metrics["best_step"] == best["step"] and metrics["best_checkpoint"] == f"{CHECKPOINT_DIR}/{BEST_CKPT}"
    assert metrics["agreement"] >= metrics["min_agreement"]
    assert metrics["finetuned_score"] == pytest.approx(best["val/rma"], abs=1e-6)

    # --resume finds this run by its overrides (a longer budget may differ) and continues from step 4
    resumed = harmony("finetune", "metric=rma", *[o for o in small_run if o != "trainer.max_steps=4"],
                      "trainer.max_steps=6", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list((tmp_path / "outputs" / "finetune").iterdir()) == [run], "resume must not start a new run dir"
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6
    second_log = (run / "logs" / "version_1" / "metrics.csv").read_text().splitlines()
    header = second_log[0].split(",")
    steps = [int(float(line.split(",")[header.index("step")])) for line in second_log[1:]]
    assert steps and min(steps) >= 4, f"the resumed run restarted from scratch: logged steps {steps}"
    assert [row["step"] for row in _csv_history(run)] == [2, 4, 6]
    assert [row["step"] for row in json.loads((run / "metrics.json").read_text())["history"]] == [2, 4, 6]

    from lightning_modules.finetune import load_finetune_run

    loaded = load_finetune_run(run)
    assert loaded.cfg.metric.name == "rma" and loaded.metrics["steps"] == 6
    assert not loaded.finetuned.training and not loaded.original.training
    state = torch.load(loaded.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    for key, value in loaded.finetuned.state_dict().items():
        assert torch.equal(value, state[f"finetuned.{key}"]), key
    x = torch.stack([loaded.datamodule.split("val")[i]["image"] for i in range(2)])
    maps = loaded.explainer(loaded.finetuned)(x, torch.tensor([0, 1]))
    assert maps.shape == (2, 1, 64, 64)


def test_a_piped_run_logs_each_validation_and_a_summary_and_tensorboard_writes_events(small_run, tmp_path):
    """stdout is a pipe here (as with `> log.txt`): progress and validations become log lines."""
    args = [o for o in small_run if o != "trainer.enable_progress_bar=false"]
    # every_seconds=0: a progress line after every step (by default at most one every 5 s)
    result = harmony("finetune", "metric=rma", "logger=tensorboard", "trainer.log_every_n_steps=2",
                     "callbacks.progress.every_seconds=0", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "finetune").iterdir()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert not (run / "logs").exists(), "logger=tensorboard replaces the CSV logger"
    metrics = json.loads((run / "metrics.json").read_text())
    log_file = (run / "finetune.log").read_text()
    for text in (result.stdout, log_file):
        validations = [line for line in text.splitlines() if "validation at step" in line]
        assert len(validations) == 2, text
        for line, step in zip(validations, (2, 4)):
            assert f"step {step}/4" in line and "rma" in line and "original" in line and "agreement" in line, line
        assert f"original {metrics['original_score']:.4f}" in validations[-1]
        assert all(f"training at step {step}/4" in text for step in (1, 2, 3, 4)), text
        summary = text[text.index("finetune rma / gradcam / tiny"):]
        score_line = next(line for line in summary.splitlines() if "(higher is better)" in line)
        assert score_line.split()[-2:] == [f"{metrics['original_score']:.4f}", f"{metrics['finetuned_score']:.4f}"]
        assert f"run folder: {run}" in summary and f"best checkpoint: step {metrics['best_step']}" in summary
        assert "agreement" in summary and "accuracy" in summary
    assert "/-2" not in result.stdout + result.stderr


def test_resume_without_a_matching_run_is_one_line(small_run):
    result = harmony("finetune", "metric=focus", *small_run, "--resume")
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ckpt_path=last" in lines[0], result.stderr


def test_ddp_sim_trains_in_two_processes_and_writes_once(small_run, tmp_path):
    result = harmony("finetune", "metric=rma", "trainer=ddp_sim", *[o for o in small_run if "max_steps" not in o],
                     "trainer.max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "finetune").iterdir())
    assert len(runs) == 1, runs
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 2
    assert len(list(tmp_path.rglob("metrics.json"))) == 1
    from lightning_modules.finetune import load_finetune_run

    load_finetune_run(runs[0])  # the checkpoint the workers wrote records the original.pt the run kept


@pytest.mark.parametrize("args, expected", [
    (["metric=nope"], "unknown metric 'nope'"),
    (["metric=rma", "data=imagenet"], "needs object masks"),
])
def test_bad_overrides_fail_before_training_with_one_line(outputs_overrides, args, expected):
    result = harmony("finetune", *args, *outputs_overrides)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_load_finetune_run_explains_what_is_missing(tmp_path):
    from lightning_modules.finetune import RunError, load_finetune_run

    with pytest.raises(RunError, match="not a finetune run"):
        load_finetune_run(tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("task: finetune\n")
    with pytest.raises(RunError, match="did not finish.*ckpt_path=last"):
        load_finetune_run(tmp_path)
