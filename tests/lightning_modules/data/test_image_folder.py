"""data=folder on small hand-made photo folders in tmp_path: layouts, labels, masks and boxes, splits,
the backbone's transform, and one line for each kind of bad input (through the CLI as well)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_modules.data import DataLayoutError, ImageFolderDataModule, InputTransform
from lightning_modules.data.image_folder import boxes_mask, read_boxes
from tests.helpers import run_main

COLOURS = {"cat": (200, 40, 40), "dog": (40, 180, 60), "owl": (30, 60, 220)}
MINUS_ONE_TO_ONE = InputTransform(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=16, crop_pct=1.0)


def photo(path: Path, colour, size=(40, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).convert(mode).save(path)
    return path


def photo_folder(root: Path, per_class: int = 4, size=(40, 30)) -> Path:
    for name, colour in COLOURS.items():
        for k in range(per_class):
            photo(root / name / f"{name}{k}.png", colour, size)
    return root


def everything(dm) -> list[dict]:
    return [dm.split(s)[i] for s in ("train", "val", "test") for i in range(len(dm.split(s)))]


def test_an_image_folder_gives_sorted_classes_labels_and_the_transforms_scale(tmp_path):
    dm = ImageFolderDataModule(photo_folder(tmp_path / "photos"), transform=MINUS_ONE_TO_ONE)
    assert dm.class_names == ["cat", "dog", "owl"] and dm.num_classes == 3 and not dm.has_masks
    items = everything(dm)
    assert len(items) == 12 and {len(dm.split(s)) for s in ("val", "test")} == {round(12 * 0.2)}
    for item in items:
        colour = torch.tensor(COLOURS[item["class_name"]], dtype=torch.float32) / 255
        assert item["image"].shape == (3, 16, 16) and dm.class_names[item["label"]] == item["class_name"]
        # [-1, 1]: (c - 0.5) / 0.5 on every pixel of the uniform photo (not ImageNet's statistics)
        torch.testing.assert_close(item["image"], (colour * 2 - 1).view(3, 1, 1).expand(3, 16, 16), atol=0.01,
                                   rtol=0)
        torch.testing.assert_close(dm.denormalize(item["image"]), colour.view(3, 1, 1).expand(3, 16, 16),
                                   atol=0.01, rtol=0)


def test_the_split_is_seeded_disjoint_and_covers_every_photo(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=6)
    paths = [[p for p, _ in ImageFolderDataModule(root, seed=seed).split(s).samples] for seed in (0, 0, 1)
             for s in ("train", "val", "test")]
    first, again, other = paths[:3], paths[3:6], paths[6:]
    assert first == again and first != other
    assert sorted(sum(first, [])) == sorted(root.glob("*/*.png")) and len(set(sum(first, []))) == 18


def test_given_split_lists_and_a_csv_with_index_labels_and_a_class_list(tmp_path):
    root = tmp_path / "photos"
    for k in range(3):
        photo(root / "a" / f"x{k}.jpg", (10, 10, 10), mode="L")  # grey and palette photos become RGB
        photo(root / "b" / f"y{k}.png", (250, 0, 0), mode="P")
    (root / "labels.csv").write_text("path,label\n" + "".join(f"a/x{k}.jpg,7\nb/y{k}.png,2\n" for k in range(3)))
    dm = ImageFolderDataModule(root, labels=root / "labels.csv", num_classes=10, image_size=8,
                               splits={"train": ["a/x0.jpg", "b/y0.png"], "val": ["a/x1.jpg"], "test": ["b/y2.png"]})
    assert dm.num_classes == 10 and dm.class_names[7] == "7"
    assert [dm.split("train")[i]["label"] for i in range(2)] == [7, 2]
    assert [p.name for p, _ in dm.split("test").samples] == ["y2.png"] and dm.split("val")[0]["image"].shape == (3, 8, 8)
    names = tmp_path / "classes.txt"
    names.write_text("owl\ncat\ndog\n")
    dm = ImageFolderDataModule(photo_folder(tmp_path / "named"), classes=names)
    assert dm.class_names == ["owl", "cat", "dog"]
    assert {dm.class_names[label] for p, label in dm.samples if p.parent.name == "cat"} == {"cat"}


def test_masks_follow_their_image_through_resize_and_crop(tmp_path):
    root = tmp_path / "photos"
    for k, name in enumerate(COLOURS):
        photo(root / name / f"p{k}.jpg", COLOURS[name], size=(64, 32))
        mask = np.zeros((32, 64), np.uint8)
        mask[:, 32:] = 1 + k  # any non-zero value is the object: the right half
        Image.fromarray(mask).save(photo(root / "masks" / "x.png", (0, 0, 0)).parent / f"p{k}.png")
    dm = ImageFolderDataModule(root, masks=root / "masks", image_size=16,
                               transform=InputTransform(input_size=16, crop_pct=0.5))
    assert dm.class_names == ["cat", "dog", "owl"]  # the masks folder is not a class
    for item in everything(dm):
        # short side 32 -> 32 (16 / 0.5), a center 16 crop of the 64x32 image: columns 24..39, right half from 32
        expected = torch.zeros(1, 16, 16)
        expected[..., 8:] = 1
        assert torch.equal(item["mask"], expected)


def test_boxes_are_rasterized_in_the_images_pixels_from_csv_or_json(tmp_path):
    mask = np.array(boxes_mask([(1, 2, 4, 3), (5, 0, 6, 1)], width=8, height=4))
    expected = np.zeros((4, 8), np.uint8)
    expected[2:3, 1:4] = 255
    expected[0:1, 5:6] = 255
    assert np.array_equal(mask, expected)
    (tmp_path / "b.csv").write_text("# drawn by hand\nimage,x0,y0,x1,y1\np0,1,2,4,3\np0,5,0,6,1\nq,0,0,2,2\n")
    (tmp_path / "b.json").write_text(json.dumps({"p0.jpg": [[1, 2, 4, 3], [5, 0, 6, 1]], "q": [0, 0, 2, 2]}))
    assert read_boxes(tmp_path / "b.csv") == read_boxes(tmp_path / "b.json") == {
        "p0": [(1, 2, 4, 3), (5, 0, 6, 1)], "q": [(0, 0, 2, 2)]}
    root = tmp_path / "photos"
    photo(root / "cat" / "p0.jpg", COLOURS["cat"], size=(8, 4))
    photo(root / "cat" / "q.jpg", COLOURS["cat"], size=(8, 4))
    dm = ImageFolderDataModule(root, boxes=tmp_path / "b.csv", image_size=4, splits={"train": ["cat/p0.jpg"]},
                               transform=InputTransform(input_size=4, crop_pct=1.0))
    # 8x4 keeps its size (short side 4 / 1.0); the center 4x4 crop is columns 2..5
    expected = torch.zeros(1, 4, 4)
    expected[0, 2, 0:2] = 1  # box columns 1..3, row 2
    expected[0, 0, 3] = 1  # box column 5, row 0
    assert dm.has_masks and torch.equal(dm.split("train")[0]["mask"], expected)


def test_a_box_inside_the_crop_marks_its_pixels(tmp_path):
    root = tmp_path / "photos"
    photo(root / "cat" / "p.png", COLOURS["cat"], size=(8, 4))
    (tmp_path / "b.json").write_text(json.dumps({"p": [3, 1, 5, 3]}))
    dm = ImageFolderDataModule(root, boxes=tmp_path / "b.json", image_size=4, splits={"train": ["cat/p.png"]},
                               transform=InputTransform(input_size=4, crop_pct=1.0))
    expected = torch.zeros(1, 4, 4)
    expected[0, 1:3, 1:3] = 1  # the crop starts at column 2
    assert torch.equal(dm.split("train")[0]["mask"], expected)


def _truncated(root: Path) -> None:
    path = photo(root / "cat" / "cat0.png", COLOURS["cat"], size=(64, 64))
    Image.effect_noise((64, 64), 60).convert("RGB").save(path.with_suffix(".jpg"))
    path.unlink()
    data = path.with_suffix(".jpg").read_bytes()
    path.with_suffix(".jpg").write_bytes(data[: len(data) // 2])


BAD = [
    ("an empty class folder", lambda root, tmp: (root / "eel").mkdir(), {}, ["eel", "has no images"]),
    ("a file that is not an image", lambda root, tmp: (root / "cat" / "cat0.png").write_text("text"),
     {"boxes": "b.json"}, ["cat0.png", "not a readable image"]),
    ("a mask of another size", lambda root, tmp: [photo(root / "masks" / f"{p.stem}.png", (255, 255, 255),
                                                        size=(40, 30) if p.stem != "dog1" else (30, 40))
                                                  for p in list(root.glob("*/*.png"))],
     {"masks": "photos/masks"}, ["dog1.png", "30x40", "40x30"]),
    ("a box outside its image", None, {"boxes": "outside.csv"}, ["owl2", "not inside", "40x30"]),
    ("a label not in the class list", lambda root, tmp: (tmp / "classes.txt").write_text("cat\ndog\n"),
     {"classes": "classes.txt"}, ["owl", "not in the class list", "data.classes"]),
    ("index labels without a class count", lambda root, tmp: (root / "l.csv").write_text("cat/cat0.png,3\n"),
     {"labels": "photos/l.csv"}, ["class indices", "data.num_classes"]),
]


def _boxes(tmp: Path, outside: bool) -> None:
    rows = [f"{name}{k},0,0,10,10" for name in COLOURS for k in range(4)]
    if outside:
        rows[-2] = "owl2,30,20,41,30"
    (tmp / ("outside.csv" if outside else "boxes.csv")).write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("setup, options, expected", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_naming_the_file(tmp_path, setup, options, expected):
    root = photo_folder(tmp_path / "photos")
    _boxes(tmp_path, outside=True)
    if "b.json" in options.values():
        (tmp_path / "b.json").write_text(json.dumps({f"{n}{k}": [0, 0, 10, 10] for n in COLOURS for k in range(4)}))
    if setup:
        setup(root, tmp_path)
    with pytest.raises(DataLayoutError) as info:
        ImageFolderDataModule(root, **{k: tmp_path / v for k, v in options.items()})
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in expected), message


def test_a_truncated_photo_is_one_line_when_it_is_read(tmp_path):
    root = photo_folder(tmp_path / "photos")
    _truncated(root)
    dm = ImageFolderDataModule(root, splits={"train": ["cat/cat0.jpg"]})
    with pytest.raises(DataLayoutError, match=r"cat0.jpg is unreadable or truncated"):
        dm.split("train")[0]


def test_data_preview_draws_the_folder_and_names_a_bad_one(tmp_path, monkeypatch, capsys):
    root = photo_folder(tmp_path / "photos")
    _boxes(tmp_path, outside=False)
    out = tmp_path / "grid.png"
    code, stdout, stderr = run_main(monkeypatch, capsys, "data", "preview", "--out", str(out), "--n", "4",
                                    "data=folder", f"data.root={root}", f"data.boxes={tmp_path / 'boxes.csv'}")
    assert code == 0 and out.is_file(), stderr
    (root / "eel").mkdir()
    code, stdout, stderr = run_main(monkeypatch, capsys, "data", "preview", "--out", str(tmp_path / "g2.png"),
                                    "data=folder", f"data.root={root}")
    lines = [line for line in (stdout + stderr).splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "eel" in lines[0] and "has no images" in lines[0]
    assert not (tmp_path / "g2.png").exists()


def test_rma_on_a_folder_needs_its_masks_or_boxes_before_anything_loads(tmp_path):
    from harmony_cli.hydra_app import compose_config
    from lightning_modules.errors import UserError
    from lightning_modules.finetune.checks import check_combination

    base = ["data=folder", f"data.root={tmp_path / 'nowhere'}", "metric=rma"]
    with pytest.raises(UserError, match=r"needs object masks.*data.boxes"):
        check_combination(compose_config(base, task="finetune"), environment=False)
    for given in ("data.boxes=b.csv", "data.masks=masks"):
        check_combination(compose_config([*base, given], task="finetune"), environment=False)
    check_combination(compose_config([*base[:2], "metric=road"], task="finetune"), environment=False)


def test_the_imagenet_modules_take_the_backbones_transform_too(tmp_path):
    from lightning_modules.data import ImageNetDataModule
    from tests.lightning_modules.data.test_real_data import make_imagenet

    root = make_imagenet(tmp_path)
    plain = ImageNetDataModule(root, num_classes=None, image_size=16)
    scaled = ImageNetDataModule(root, num_classes=None, image_size=16, transform=MINUS_ONE_TO_ONE)
    a, b = plain.split("train")[0]["image"], scaled.split("train")[0]["image"]
    assert b.min() >= -1 and b.max() <= 1 and (a - b).abs().max() > 0.3
    torch.testing.assert_close(plain.denormalize(a), scaled.denormalize(b), atol=0.02, rtol=0)  # the same photo
    assert plain.fingerprint() != scaled.fingerprint() and "InputTransform" not in plain.fingerprint()
