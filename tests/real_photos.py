"""The real-photo rehearsal's set-up, shared by tests/end_to_end/test_real_photos.py and
docs/images/make_screenshots.py: foolbox's 20 ImageNet photos laid out as a ``data=folder`` tree, the
packaged EfficientNet-Lite0 (``backbone=efficientnet_lite0``) fine-tuned on 16 of them, a study built from
those runs, and the annotation page photographed in a real browser showing one of its pairs.

The photos are read from the installed ``foolbox`` package's data folder (never imported, never copied
into the repository); the class names are ImageNet's, as timm lists them.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import shutil
import sys
from pathlib import Path

from tests.conftest import REPO, restored_root_log_handlers

BOXES = REPO / "tests" / "data" / "foolbox_imagenet_boxes.csv"
# Held out of fine-tuning: four photos with one clear object, each classified with confidence at 128 px.
HELD_OUT = ("imagenet_04_949", "imagenet_09_455", "imagenet_16_251", "imagenet_18_317")
STUDY = "photos"

# The fine-tuning runs a study is built from: one run dir each, side by side as a sweep lays them out. Each
# run's setting was chosen in five orders of the photos (tests/end_to_end/test_real_photos.py has the figures).
FINETUNE_RUNS = {
    "0_rma": ["metric=rma"],
    # ROAD on all 16 photos a step: its score counts predictions kept, which moves only in whole photos and levels
    "1_road": ["metric=road", "finetune.batch_size=16", "trainer.max_steps=4"],
    # Focus with LayerCAM on full-size mosaics, every mosaic of the batch in the loss, validated over 12 mosaic
    # plans: one plan of 4 held-out mosaics moves with the photos' order more than fine-tuning moves it
    # (GradCAM's Focus gain on the 16 photos does not reach the 4 held out; half-size mosaics shrink each
    # photo to 64 px)
    "2_focus": ["metric=focus", "attribution=layercam", "metric.metric.mosaic=full", "metric.metric.loss_fraction=1.0",
                "metric.metric.arrangements=12", "finetune.batch_size=16", "finetune.lr=1e-4", "trainer.max_steps=3"],
    # RIS with LayerCAM (with GradCAM it improved in one order and worsened in another), validated after steps 2
    # and 4 on 50 perturbations (the scoring's cost; the estimate is low by the same share before and after)
    "3_ris": ["metric=ris", "attribution=layercam", "metric.metric.n_samples=50", "finetune.batch_size=16",
              "finetune.lr=1e-4", "trainer.max_steps=4", "trainer.val_check_interval=2"],
}
# The photos' orders the lists are written in: the split lists of each order are <split><suffix>.txt.
ORDERS = {"listed": "", "by_file": "_by_file"}


def foolbox_photos() -> list[Path]:
    """The 20 ImageNet photos of the installed foolbox package (located without importing foolbox)."""
    spec = importlib.util.find_spec("foolbox")
    assert spec is not None and spec.origin, "the dev extra installs foolbox (its data folder holds the photos)"
    photos = sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    assert len(photos) == 20
    return photos


def imagenet_class_names() -> list[str]:
    """ImageNet's 1000 class names in index order: each class's first name in timm's list, with the index
    added where two classes share it (crane the bird and crane the machine)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = [info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes())]
    return [f"{name} {i}" if names.count(name) > 1 else name for i, name in enumerate(names)]


def lay_out_photos(root: Path) -> Path:
    """``<root>/<class name>/imagenet_XX_<index>.jpg``, the class list ``<root>-lists/classes.txt`` and
    split lists there: all, train (16) and held_out (4), in each of the :data:`ORDERS`. Returns ``root``."""
    names = imagenet_class_names()
    lists = root.parent / f"{root.name}-lists"
    lists.mkdir(parents=True)
    (lists / "classes.txt").write_text("\n".join(names) + "\n")
    for photo in foolbox_photos():
        folder = root / names[int(photo.stem.split("_")[2])]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, folder / photo.name)
    # two orders of the photos (their batches and the held-out mosaics follow it): the class index as text
    # (the order of earlier index-named class folders), and the photos' file names
    listed = sorted((p.relative_to(root).as_posix() for p in root.glob("*/*.jpg")),
                    key=lambda name: (Path(name).stem.split("_")[2], Path(name).stem))
    by_file = sorted(listed, key=lambda name: Path(name).name)
    for order, suffix in zip((listed, by_file), ORDERS.values()):
        held = [n for n in order if Path(n).stem in HELD_OUT]
        for split, names_in in (("all", order), ("train", [n for n in order if n not in held]), ("held_out", held)):
            (lists / f"{split}{suffix}.txt").write_text("\n".join(names_in) + "\n")
    return root


def lists(root: Path, split: str) -> str:
    """The path of ``split``'s list (or ``classes``) that :func:`lay_out_photos` wrote."""
    return str(root.parent / f"{root.name}-lists" / f"{split}.txt")


def photo_overrides(root: Path, size: int, splits: dict[str, str] | None = None,
                    backbone: str = "efficientnet_lite0") -> list[str]:
    """The overrides of ``backbone=<backbone> data=folder`` on the laid-out photos at ``size`` px; ``splits``
    maps train/val/test to list names (default: train on 16, validate and test on the held-out 4)."""
    splits = splits or {"train": "train", "val": "held_out", "test": "held_out"}
    given = ",".join(f"{k}:'{lists(root, v)}'" for k, v in splits.items())
    return [f"backbone={backbone}", "data=folder", "data.num_classes=1000", f"data.root={root}",
            f"data.classes={lists(root, 'classes')}", f"data.image_size={size}", "data.splits={" + given + "}"]


def harmony(*args: str) -> tuple[int, str]:
    """``harmony ARGS`` through the console entry in this process (the model's imports are paid once):
    (exit status, stdout and stderr together)."""
    from harmony_cli.main import main

    output, argv = io.StringIO(), sys.argv
    sys.argv = ["harmony", *args]
    try:
        with restored_root_log_handlers(), contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, output.getvalue()


def finetune_photo_runs(root: Path, sweep: Path, outputs: Path, order: str = "listed", size: int = 128) -> Path:
    """:data:`FINETUNE_RUNS` on the photos of ``root`` at ``size`` px in the :data:`ORDERS` ``order`` (16 to
    train, the 4 held out to validate and test), each into ``sweep/<run>``. Returns ``sweep``."""
    suffix = ORDERS[order]
    splits = {"train": f"train{suffix}", "val": f"held_out{suffix}", "test": f"held_out{suffix}"}
    common = [*photo_overrides(root, size, splits), f"data.boxes={BOXES}", f"paths.outputs={outputs}",
              "finetune.batch_size=8", "finetune.lr=3e-4", "trainer.max_steps=2", "trainer.val_check_interval=1",
              "finetune.fold_batchnorm=false", "finetune.plot_images=2", "trainer.enable_progress_bar=false"]
    for run, overrides in FINETUNE_RUNS.items():
        code, output = harmony("finetune", *common, *overrides, f"hydra.run.dir={sweep / run}")
        assert code == 0, output[-3000:]
    return sweep


def build_photo_study(root: Path, folder: Path, size: int = 128) -> dict:
    """:func:`finetune_photo_runs` in the listed order, then ``build-dataset`` of the study :data:`STUDY` from
    them into ``folder``.

    Returns {"outputs", "sweep" (the runs' parent), "url" (the store), "image_dir" (the study's images)}.
    """
    outputs = folder / "outputs"
    sweep = finetune_photo_runs(root, outputs / "sweep", outputs, size=size)
    url = f"sqlite:///{folder / 'study.db'}"
    code, output = harmony("build-dataset", f"run={sweep}", f"study.name={STUDY}", "study.examples_per_cell=1",
                           "study.image_size=null", f"paths.outputs={outputs}", "--db", url)
    assert code == 0, output[-3000:]
    return {"outputs": outputs, "sweep": sweep, "url": url, "image_dir": outputs / "study_images" / STUDY}


# What the page shows of its pair: each image's alt text, natural size and RGB pixels (row-major), and the
# prediction's text.
SHOWN_PAIR = """() => {
  const imgs = [...document.querySelectorAll('.hm-pair img')];
  const pixels = (img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(img, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
    return Array.from(rgba.filter((_, i) => i % 4 !== 3));
  };
  return {images: imgs.map((img) => ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight,
                                      rgb: pixels(img)})),
          prediction: document.querySelector('.hm-prediction').innerText};
}"""


def photograph_pair(url: str, png: Path, metric: str = "focus", viewport: dict | None = None) -> dict:
    """The annotation page of the study in the store ``url`` (built by :func:`build_photo_study`) in
    Debian's chromium, logged in as an annotator assigned its ``metric`` cell, photographed into ``png``
    once the cell's first pair is on screen. Returns what the page showed (:data:`SHOWN_PAIR`) with the
    shown example's store row (``example``)."""
    from sqlalchemy import select

    from harmony_cli.store import Example, Store
    from tests.end_to_end.browser.page_server import logged_in_page, running_page
    from tests.webui_study import PASSWORD

    with Store.open(url) as store:
        store.update_study_config(STUDY, instructions_first=False)  # straight to the examples
        with store.read() as session:
            examples = list(session.scalars(select(Example).where(Example.metric == metric)))
        assert examples, f"the study has no {metric} cell"
        store.add_annotator("ana", PASSWORD)
        store.assign("ana", STUDY, cells=[{"metric": metric, "backbone": examples[0].backbone,
                                           "attribution": examples[0].attribution}])
    with running_page(png.parent, url) as address, \
            logged_in_page(address, "ana", viewport or {"width": 800, "height": 960}, 60_000) as page:
        page.get_by_text("Your study cells").wait_for()
        page.locator(".st-key-cell-0 button").click()
        page.locator(".hm-pair img[alt='map B']").wait_for()
        page.wait_for_function("[...document.querySelectorAll('.hm-pair img')]"
                               ".every((img) => img.complete && img.naturalWidth > 0)")
        shown = page.evaluate(SHOWN_PAIR)
        page.screenshot(path=str(png))
    shown["example"] = next(row for row in examples
                            if shown["prediction"] == f"Model prediction: {row.class_name}")
    return shown
