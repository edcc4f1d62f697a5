"""ImageNet and ImageNet-S data modules on tiny fake folder trees in tmp_path."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules.data import (DataLayoutError, ImageNetDataModule, ImageNetSDataModule, collate_skip_none,
                                    denormalize)
from lightning_modules.data.imagenet_s import decode_segmentation_ids, target_mask
from lightning_modules.errors import UserError
from tests.conftest import REPO

WNIDS = ["n01440764", "n01443537", "n01484850"]  # tench, goldfish, great white shark
COLOURS = {"n01440764": (220, 30, 30), "n01443537": (30, 200, 40), "n01484850": (40, 60, 230)}
# The synset mapping lists more wnids than the tree holds (as ImageNet's 1000 would).
MAPPING = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
           "n01484850": "great white shark, white shark", "n01491361": "tiger shark",
           "n01494475": "hammerhead, hammerhead shark"}


def write_jpeg(path: Path, colour, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def write_mapping(folder: Path) -> None:
    lines = [f"{wnid} {names}" for wnid, names in MAPPING.items()]
    (folder / "LOC_synset_mapping.txt").write_text("\n".join(lines) + "\n")


def make_imagenet(base: Path, val: str = "csv", per_class: int = 3, val_per_class: int = 4) -> Path:
    """Kaggle layout: <base>/ILSVRC/Data/CLS-LOC/{train,val}, labels and mapping in <base>."""
    root = base / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid in WNIDS:
        for k in range(per_class):
            write_jpeg(root / "train" / wnid / f"{wnid}_{k}.JPEG", COLOURS[wnid])
    (root / "val").mkdir(parents=True)
    rows, n = [], 0
    for wnid in WNIDS:
        for _ in range(val_per_class):
            n += 1
            image_id = f"ILSVRC2012_val_{n:08d}"
            if val == "folders":
                write_jpeg(root / "val" / wnid / f"{image_id}.JPEG", COLOURS[wnid])
                continue
            write_jpeg(root / "val" / f"{image_id}.JPEG", COLOURS[wnid])
            rows.append(f"{image_id},{wnid} 10 20 30 40 {wnid} 1 2 3 4")
            if val == "xml":
                xml = base / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / f"{image_id}.xml"
                xml.parent.mkdir(parents=True, exist_ok=True)
                xml.write_text(f"<annotation><filename>{image_id}</filename><object><name>{wnid}</name>"
                               f"<bndbox><xmin>1</xmin></bndbox></object></annotation>")
    if val == "csv":
        (base / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    write_mapping(base)
    return root


def colour_label(image: torch.Tensor) -> str:
    """The wnid whose colour a (3,H,W) normalized image shows."""
    mean = denormalize(image).mean(dim=(1, 2)) * 255
    return min(COLOURS, key=lambda w: float(((mean - torch.tensor(COLOURS[w], dtype=torch.float)) ** 2).sum()))


def encode_ids(ids: np.ndarray) -> Image.Image:
    """ImageNet-S mask PNG: id = R + 256 * G."""
    rgb = np.stack([ids % 256, ids // 256, np.zeros_like(ids)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def make_imagenet_s(base: Path, per_class: int = 4, semi: bool = False, categories: list[str] | None = None) -> Path:
    """ImageNetS-like tree: the own object is a red box (its mask), a bigger box of another category
    (id of the next class) is larger than the own object, and a strip is 'ignore'."""
    root = base / "ImageNetS919"
    ordered = sorted(categories or WNIDS)
    ids = {wnid: ordered.index(wnid) + 1 for wnid in WNIDS}
    rng = np.random.default_rng(0)

    def write_item(images: str, wnid: str, name: str) -> None:
        h, w = 48, 64
        seg = np.zeros((h, w), np.int64)
        image = np.full((h, w, 3), 128, np.uint8)
        y0, x0 = int(rng.integers(4, 20)), int(rng.integers(4, 30))
        other = WNIDS[(WNIDS.index(wnid) + 1) % len(WNIDS)]
        seg[:, 44:] = ids[other]  # a larger region of another category
        seg[0:3, :] = 1000  # ignore
        seg[y0:y0 + 20, x0:x0 + 12] = ids[wnid]
        image[seg == ids[wnid]] = (250, 10, 10)
        write_path = root / images / wnid / f"{name}.JPEG"
        write_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(write_path, quality=98)
        mask_path = root / f"{images}-segmentation" / wnid / f"{name}.png"
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        encode_ids(seg).save(mask_path)

    n = 0
    for wnid in WNIDS:
        for _ in range(per_class):
            n += 1
            write_item("validation", wnid, f"ILSVRC2012_val_{n:08d}")
        if semi:
            for k in range(2):
                write_item("train-semi", wnid, f"{wnid}_{k}")
    # one image without a mask: left out
    write_jpeg(root / "validation" / WNIDS[0] / "ILSVRC2012_val_99999999.JPEG", (0, 0, 0))
    if categories:
        (root / "categories.txt").write_text("\n".join(categories) + "\n")
    return root


# -- ImageNet ----------------------------------------------------------------------------------


@pytest.mark.parametrize("val", ["csv", "xml", "folders"])
def test_imagenet_labels_names_and_splits(tmp_path, val):
    root = make_imagenet(tmp_path, val=val)
    dm = ImageNetDataModule(root, num_classes=len(MAPPING), image_size=32, batch_size=4, val_fraction=0.25, seed=3)
    # The mapping's wnids, sorted, are the class index (as torchvision's 1000 classes).
    assert dm.class_names == ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    assert dm.num_classes == 5 and not dm.has_masks and dm.trainable_auto is False
    train, val_set, test = dm.split("train"), dm.split("val"), dm.split("test")
    assert (len(train), len(val_set), len(test)) == (9, 3, 9)
    val_paths = {p for p, _ in val_set.samples}
    test_paths = {p for p, _ in test.samples}
    assert not val_paths & test_paths and len(val_paths | test_paths) == 12
    for dataset in (train, val_set, test):
        for i in range(len(dataset)):
            item = dataset[i]
            # Each image shows its class's colour: labels are paired with the right files.
            assert item["class_name"] == dm.class_names[item["label"]]
            assert colour_label(item["image"]) == WNIDS[item["label"]]
            assert item["index"] == i
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (3,) and batch["index"].tolist() == [0, 1, 2]
    assert isinstance(batch["class_name"], list) and "mask" not in batch


def test_imagenet_split_is_seeded(tmp_path):
    root = make_imagenet(tmp_path)
    first = ImageNetDataModule(root, num_classes=5, seed=1).split("test").samples
    again = ImageNetDataModule(root, num_classes=5, seed=1).split("test").samples
    other = ImageNetDataModule(root, num_classes=5, seed=2).split("test").samples
    assert first == again and first != other
    fp = ImageNetDataModule(root, num_classes=5, seed=1).fingerprint()
    assert fp != ImageNetDataModule(root, num_classes=5, seed=2).fingerprint()
    subset = ImageNetDataModule(root, num_classes=5, seed=1, train_size=4).split("train")
    assert len(subset) == 4 and len({label for _, label in subset.samples}) > 1  # random, not the first class


def test_imagenet_lists_only_the_splits_a_stage_needs(tmp_path, monkeypatch):
    root = make_imagenet(tmp_path)
    dm = ImageNetDataModule(root, num_classes=5)

    def no_train_listing():
        raise AssertionError("listed the train folder for the test stage")

    monkeypatch.setattr(dm, "train_samples", no_train_listing)
    dm.setup("test")
    assert dm.train_set is None and dm.val_set is None and len(dm.test_set) == 6
    with pytest.raises(UserError, match=r"unknown split 'tset': use one of train, val, test"):
        dm.split("tset")


def test_imagenet_without_mapping_uses_wnids(tmp_path):
    root = make_imagenet(tmp_path)
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    dm = ImageNetDataModule(root, num_classes=3)
    assert dm.class_names == WNIDS
    with pytest.raises(DataLayoutError, match=r"has 3 classes but data.num_classes=1000: set data.num_classes=3"):
        ImageNetDataModule(root)


def test_imagenet_corrupt_image_is_skipped_with_count(tmp_path, caplog):
    root = make_imagenet(tmp_path)
    bad = root / "train" / WNIDS[1] / "corrupt.JPEG"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    truncated = root / "train" / WNIDS[2] / "truncated.JPEG"
    good = (root / "train" / WNIDS[2] / f"{WNIDS[2]}_0.JPEG").read_bytes()
    truncated.write_bytes(good[: len(good) // 2])
    dm = ImageNetDataModule(root, num_classes=5, image_size=16, batch_size=64)
    train = dm.split("train")
    assert len(train) == 11
    with caplog.at_level(logging.WARNING):
        batch = next(iter(dm._loader(train, shuffle=False)))
    assert batch["image"].shape[0] == 9  # both bad files dropped by collate_skip_none
    assert train.skipped == 2
    assert f"skipped corrupt image {bad} (1 skipped so far)" in caplog.text
    assert "(2 skipped so far)" in caplog.text
    assert collate_skip_none([None, None]) is None


@pytest.mark.parametrize("setup, message", [
    (lambda base: base / "missing", r"^ImageNet root .*missing does not exist: expected .*/train/<wnid>/\*\.JPEG"),
    (lambda base: base, r"^ImageNet root .* has no train/ folder: expected .*LOC_val_solution\.csv.*set data\.root="),
])
def test_imagenet_missing_paths_are_one_line(tmp_path, setup, message):
    with pytest.raises(DataLayoutError, match=message) as info:
        ImageNetDataModule(setup(tmp_path))
    assert "\n" not in str(info.value) and isinstance(info.value, UserError)


def test_imagenet_unlabelled_val_is_one_line(tmp_path):
    root = make_imagenet(tmp_path)
    (tmp_path / "LOC_val_solution.csv").unlink()
    dm = ImageNetDataModule(root, num_classes=5)
    with pytest.raises(DataLayoutError, match=r"have no labels: place LOC_val_solution\.csv") as info:
        dm.split("val")
    assert "\n" not in str(info.value)
    with pytest.raises(DataLayoutError, match=r"data\.val_labels .*nope\.csv does not exist"):
        ImageNetDataModule(root, num_classes=5, val_labels=tmp_path / "nope.csv").split("val")


def test_harmony_cli_missing_root_is_one_line_exit_2():
    harmony = Path(sys.executable).parent / "harmony"
    command = [str(harmony)] if harmony.is_file() else [sys.executable, "-m", "harmony_cli.main"]
    result = subprocess.run([*command, "data", "preview", "data=imagenet", "data.root=/nonexistent"],
                            capture_output=True, text=True, cwd=REPO, timeout=120,
                            env={**os.environ, "COLUMNS": "400"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "ImageNet root /nonexistent does not exist" in lines[0] and "data.root=" in lines[0]


def run_main(monkeypatch, capsys, args: list[str]) -> tuple[int, str]:
    from harmony_cli.main import main

    monkeypatch.setattr(sys, "argv", ["harmony", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return info.value.code, capsys.readouterr().err


def test_harmony_cli_unset_root_says_to_set_it(monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, ["data", "preview", "data=imagenet"])
    assert code == 2
    assert err.strip() == "error: config value data.root must be set: add data.root=... to the command"


# -- ImageNet-S --------------------------------------------------------------------------------


def test_segmentation_ids_decode_r_plus_256g():
    ids = np.array([[0, 1, 255], [256, 919, 1000]])
    assert (decode_segmentation_ids(encode_ids(ids)) == ids).all()
    mask, fell_back = target_mask(ids, 919)
    assert not fell_back and mask.sum() == 1 and mask[1, 1]
    # own id absent: the most frequent id other than background (0) and ignore (1000)
    mask, fell_back = target_mask(np.array([[5, 5, 7], [1000, 1000, 1000]]), own_id=9)
    assert fell_back and mask.tolist() == [[True, True, False], [False, False, False]]


def test_imagenet_s_labels_masks_and_splits(tmp_path):
    # 300 categories, so that one of ours has an id >= 256 (stored in G) in the masks.
    filler = [f"n00{k:06d}" for k in range(260)] + [f"n09{k:06d}" for k in range(37)]
    categories = [*filler, *WNIDS]
    categories = sorted(categories)[::-1]  # the file's own order does not matter: ids follow sorted wnids
    assert sorted(categories).index(WNIDS[2]) + 1 > 256
    root = make_imagenet_s(tmp_path, categories=categories)
    # LOC_synset_mapping.txt, found in root: every category and two wnids that are not ImageNet-S categories
    mapping = {**MAPPING, **{wnid: f"thing {wnid}" for wnid in filler}}
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {n}\n" for w, n in mapping.items()))
    dm = ImageNetSDataModule(root, num_classes=302, image_size=32, categories=root / "categories.txt",
                             batch_size=16, seed=0)
    assert dm.has_masks and dm.num_classes == 302 and dm.class_names[261] == "goldfish"
    splits = {name: dm.split(name) for name in ("train", "val", "test")}
    assert [len(s) for s in splits.values()] == [6, 3, 3]  # 12 masked images: half train, then val/test halves
    paths = [{s[0] for s in dataset.samples} for dataset in splits.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert len(set().union(*paths)) == 12
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (6, 3, 32, 32) and batch["mask"].shape == (6, 1, 32, 32)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    for dataset in splits.values():
        for i in range(len(dataset)):
            item = dataset[i]
            # Labels: the ImageNet index of the folder's wnid, among the mapping's sorted wnids.
            assert item["label"] == sorted(mapping).index(dataset.samples[i][0].parent.name)
            # The mask is the own (red) object, not the larger other-category region, and follows the crop.
            red = denormalize(item["image"])
            red = (red[0] > 0.75) & (red[1] < 0.35)
            mask = item["mask"][0].bool()
            assert mask.sum() > 20 and (mask == red).float().mean() > 0.93
    assert all(d.fallback_masks == 0 for d in splits.values())


def test_imagenet_s_train_semi_and_folder_ids(tmp_path):
    root = make_imagenet_s(tmp_path, semi=True)
    dm = ImageNetSDataModule(root, num_classes=3, image_size=24, val_fraction=0.5)
    assert dm.class_names == WNIDS  # no synset mapping: the categories themselves
    assert len(dm.split("train")) == 6 and all("train-semi" in str(s[0]) for s in dm.split("train").samples)
    assert len(dm.split("val")) + len(dm.split("test")) == 12
    item = dm.split("val")[0]
    assert item["mask"].sum() > 10 and dm.split("val").fallback_masks == 0
    with pytest.raises(DataLayoutError, match=r"has 3 classes but data.num_classes=1000: set data.num_classes=3, or give data.synset_mapping="):
        ImageNetSDataModule(root)


def test_imagenet_s_missing_paths_are_one_line(tmp_path):
    with pytest.raises(DataLayoutError, match=r"^ImageNet-S root .* has no validation/ folder: expected .*"
                                              r"validation-segmentation/<wnid>/\*\.png.*set data\.root="):
        ImageNetSDataModule(tmp_path)
    root = make_imagenet_s(tmp_path)
    with pytest.raises(DataLayoutError, match=r"data\.synset_mapping .*none\.txt does not exist"):
        ImageNetSDataModule(root, synset_mapping=tmp_path / "none.txt")


def test_harmony_data_preview_imagenet_s(tmp_path, monkeypatch, capsys):
    root = make_imagenet_s(tmp_path)
    out = tmp_path / "preview.png"
    code, _ = run_main(monkeypatch, capsys, ["data", "preview", "data=imagenet_s", f"data.root={root}",
                                             "data.num_classes=3", "data.image_size=32", "--out", str(out),
                                             "--n", "4"])
    assert code in (0, None) and out.is_file()
    with Image.open(out) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 50 and (pixels == 255).all(axis=-1).mean() < 0.99  # a drawn figure, not blank
