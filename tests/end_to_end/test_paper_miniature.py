"""The miniature ILSVRC + ImageNet-S tree, the stand-in hub weights and the `harmony data` bad inputs."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from lightning_modules.data import ImageNetDataModule, ImageNetSDataModule, denormalize
from lightning_modules.data.miniature import make_miniature
from lightning_modules.errors import UserError
from tests.conftest import REPO

# Written out here, not taken from the code: ImageNet's first four wnids (labels 0-3 of its 1000
# sorted wnids), the colours the synthetic shapes of classes 0-3 are drawn in, and the file name
# torchvision's resnet18 IMAGENET1K_V1 weights have in the hub cache.
FIRST_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
CLASS_RGB = [(230, 38, 38), (38, 204, 51), (38, 77, 242), (242, 230, 26),
             (230, 51, 217), (26, 217, 230), (255, 140, 13), (247, 247, 247)]  # all 8 shapes' colours
RESNET18_HUB_FILE = "resnet18-f37072fd.pth"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_miniature(tmp_path_factory.mktemp("mini") / "mini")


def colour_share(pixels: np.ndarray, rgb) -> float:
    """Share of (N,3) pixels whose nearest shape colour (by direction in RGB: objects are drawn at
    85-100% brightness and JPEG blurs chroma) is ``rgb``."""
    colours = np.asarray(CLASS_RGB, float)
    colours /= np.linalg.norm(colours, axis=1, keepdims=True)
    nearest = (pixels.astype(float) @ colours.T).argmax(axis=1)
    return float((nearest == CLASS_RGB.index(tuple(rgb))).mean())


def cli(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "harmony_cli.main", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "COLUMNS": "400", **(env or {})})


def test_layout_mapping_and_val_solution(mini):
    root = mini.root
    mapping = (root / "LOC_synset_mapping.txt").read_text().splitlines()
    assert len(mapping) == 1000 and len({line.split()[0] for line in mapping}) == 1000
    assert [line.split()[0] for line in mapping[:4]] == FIRST_WNIDS
    assert sorted(line.split()[0] for line in mapping)[:4] == FIRST_WNIDS  # labels 0-3 of a 1000-class head
    train = root / "ILSVRC/Data/CLS-LOC/train"
    assert sorted(p.name for p in train.iterdir()) == FIRST_WNIDS
    assert all(len(list((train / w).glob("*.JPEG"))) == 16 for w in FIRST_WNIDS)
    with open(root / "LOC_val_solution.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 64 and {r["PredictionString"].split()[0] for r in rows} == set(FIRST_WNIDS)
    for row in rows:  # the box of each row holds mostly its class's colour: labels belong to their files
        wnid, *box = row["PredictionString"].split()
        x0, y0, x1, y1 = map(int, box)
        with Image.open(root / "ILSVRC/Data/CLS-LOC/val" / f"{row['ImageId']}.JPEG") as image:
            assert image.format == "JPEG" and image.size == (80, 80)
            crop = np.asarray(image.convert("RGB"))[y0:y1 + 1, x0:x1 + 1].reshape(-1, 3)
        assert colour_share(crop, CLASS_RGB[FIRST_WNIDS.index(wnid)]) > 0.3, row


def test_imagenet_s_masks_use_r_plus_256g(mini):
    seg = mini.root / "ImageNetS/validation-segmentation"
    for label, wnid in enumerate(FIRST_WNIDS):
        pngs = sorted((seg / wnid).glob("*.png"))
        assert len(pngs) == 8
        for png in pngs:
            rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
            ids = rgb[..., 0] + 256 * rgb[..., 1]
            assert set(np.unique(ids)) == {0, label + 1, 1000}  # own id: 1 + rank among sorted categories
            assert (rgb[ids == 1000] == (232, 3, 0)).all()  # ignore = 1000 needs the G channel
            image = np.asarray(Image.open(mini.root / "ImageNetS/validation" / wnid / f"{png.stem}.JPEG")
                               .convert("RGB"))
            assert colour_share(image[ids == label + 1], CLASS_RGB[label]) > 0.9


def test_real_loaders_read_the_miniature(mini):
    imagenet = ImageNetDataModule(mini.imagenet_root, image_size=64)  # num_classes=1000 as in the study
    assert imagenet.num_classes == 1000 and imagenet.class_names[:2] == ["red circle", "green square"]
    assert [len(imagenet.split(s)) for s in ("train", "val", "test")] == [64, 32, 32]
    segmented = ImageNetSDataModule(mini.imagenet_s_root, image_size=64)
    assert [len(segmented.split(s)) for s in ("train", "val", "test")] == [16, 16, 16]
    assert all("train-semi" in str(s[0]) for s in segmented.split("train").samples)
    for dataset in (imagenet.split("test"), segmented.split("test")):
        labels = [dataset[i]["label"] for i in range(len(dataset))]
        assert set(labels) <= {0, 1, 2, 3} and len(set(labels)) > 1
    test = segmented.split("test")
    for i in range(len(test)):
        item = test[i]
        pixels = (denormalize(item["image"]) * 255).permute(1, 2, 0).reshape(-1, 3).numpy()
        inside = item["mask"][0].reshape(-1).bool().numpy()
        assert inside.sum() > 50 and colour_share(pixels[inside], CLASS_RGB[item["label"]]) > 0.85
    assert test.fallback_masks == 0


def test_make_miniature_refuses_a_used_folder_and_leaves_it(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match=r"already exists and is not an empty folder"):
        make_miniature(used)
    assert [p.name for p in used.iterdir()] == ["keep.txt"]
    with pytest.raises(UserError, match=r"--classes 9 must lie between 1 and 8"):
        make_miniature(tmp_path / "new", classes=9)
    assert not (tmp_path / "new").exists() and [p.name for p in tmp_path.iterdir()] == ["used"]


def write_random_resnet18(torch_home: Path) -> dict:
    from torchvision.models import resnet18

    torch.manual_seed(7)
    state = resnet18(num_classes=1000).state_dict()
    folder = torch_home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(state, folder / RESNET18_HUB_FILE)
    return state


def test_imagenet1k_v1_loads_from_the_hub_cache(tmp_path, monkeypatch, mini):
    from hydra.utils import instantiate

    state = write_random_resnet18(tmp_path / "torch_home")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    cfg = OmegaConf.load(REPO / "conf/backbone/resnet18.yaml")
    cfg.model.num_classes = 1000
    cfg.weights, cfg.cache_dir = "IMAGENET1K_V1", str(tmp_path / "models")
    cfg.auto.seed = 0
    model = instantiate(cfg, datamodule=ImageNetDataModule(mini.imagenet_root, image_size=64))
    loaded = model.state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.fc.out_features == 1000 and not model.training
    with torch.no_grad():
        logits = model(torch.zeros(2, 3, 64, 64))
    assert logits.shape == (2, 1000)
    assert not any(m.inplace for m in model.modules() if isinstance(m, torch.nn.ReLU))  # hooks need them


def test_missing_hub_file_is_one_line_naming_file_and_folder(tmp_path, mini):
    # in tmp_path: the preview's default (the outputs folder, relative to where it runs) stays out of the checkout
    result = cli("data", "preview", "data=imagenet", f"data.root={mini.imagenet_root}", "backbone=resnet18",
                 cwd=tmp_path, env={"TORCH_HOME": str(tmp_path / "empty")})
    assert result.returncode == 0, result.stderr  # preview needs no weights
    result = cli("finetune", "experiment=paper", f"paper.imagenet_root={mini.imagenet_root}",
                 f"paper.imagenet_s_root={mini.imagenet_s_root}", "metric=focus", "trainer=cpu",
                 f"paths.outputs={tmp_path / 'outputs'}", env={"TORCH_HOME": str(tmp_path / "empty")})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and RESNET18_HUB_FILE in lines[-1]
    assert str(tmp_path / "empty" / "hub" / "checkpoints") in lines[-1]


def test_standin_weights_classify_held_out_images(tmp_path, mini):
    from lightning_modules.backbones import build_backbone, torchvision_classifier
    from lightning_modules.backbones.standin import write_miniature_standins

    [path] = write_miniature_standins(mini.imagenet_root, ["resnet18"], tmp_path, image_size=64)
    assert path == tmp_path / "hub" / "checkpoints" / RESNET18_HUB_FILE
    model = build_backbone(torchvision_classifier("resnet18", 1000), "resnet18", weights=str(path))
    test = ImageNetDataModule(mini.imagenet_root, image_size=64).split("test")
    images = torch.stack([test[i]["image"] for i in range(len(test))])
    labels = torch.tensor([test[i]["label"] for i in range(len(test))])
    with torch.no_grad():
        predicted = model(images).argmax(1)
    # held-out images: the classes are learnable from the drawings (chance: 1/4 of the 4 classes)
    assert (predicted == labels).float().mean() >= 0.75
    assert predicted.max() < 4  # the 996 classes without images never win


def test_make_miniature_cli(tmp_path):
    result = cli("data", "make-miniature", str(tmp_path / "m"), "--classes", "2", "--weights", "none")
    assert result.returncode == 0, result.stderr
    assert f"paper.imagenet_root={tmp_path / 'm' / 'ILSVRC/Data/CLS-LOC'}" in result.stdout
    assert sorted(p.name for p in (tmp_path / "m/ImageNetS/validation").iterdir()) == FIRST_WNIDS[:2]
    again = cli("data", "make-miniature", str(tmp_path / "m"))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert again.stderr.startswith("error: ") and "is not an empty folder" in again.stderr
    bad = cli("data", "make-miniature", str(tmp_path / "n"), "--weights", "alexnet")
    assert bad.returncode == 2 and "--weights alexnet has no stand-in" in bad.stderr


def read_only_folder(tmp_path: Path) -> Path:
    """A folder where creating a file fails: mode 0555, or (root ignores modes) sysfs, which refuses even root."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    if Path("/sys/kernel").is_dir():
        return Path("/sys")
    pytest.skip("running as root without sysfs: no folder refuses writes to test against")


def test_preview_to_read_only_folder_is_one_line_exit_2(tmp_path):
    folder = read_only_folder(tmp_path)
    result = cli("data", "preview", "--out", str(folder / "grid.png"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot write ")
    assert "Permission denied" in result.stderr and "--out" in result.stderr
    assert not (folder / "grid.png").exists()
