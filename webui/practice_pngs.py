"""Draw the practice pair's bundled PNGs (webui/practice_pair/): ``python -m webui.practice_pngs``.

The image is one item of the embedded synthetic data (a seed no study uses by default), and its two
maps are drawn with the study's own rendering (colormap over a faint copy of the image): one a
blob on the predicted object, one a blob as far from it as the image allows. So the practice looks
like a real pair but owes nothing to any study's maps. Deterministic: a rerun writes the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt

from harmony_cli.study.rendering import RenderSettings, render_pairs
from lightning_modules.data import normalize
from lightning_modules.data.synthetic import CLASS_NAMES, render
from webui.practice import CLASS_NAME, FILES, FOLDER

SEED, SPLIT, IMAGE_SIZE = 2024, "test", 64


def _pick_item():
    """The first item whose target object is large and leaves room for a blob away from it."""
    label = CLASS_NAMES.index(CLASS_NAME)
    for index in range(200):
        image, mask, _ = render(SEED, SPLIT, index, IMAGE_SIZE, label=label)
        away = distance_transform_edt(~mask)
        away[:10], away[-10:], away[:, :10], away[:, -10:] = 0, 0, 0, 0  # keep the blob inside the image
        if mask.mean() > 0.08 and away.max() > 22:
            return image, mask, np.unravel_index(np.argmax(away), away.shape)
    raise RuntimeError("no synthetic item fits the practice pair")


def _blob(centre, radius: float):
    """(1,1,S,S) Gaussian relevance around ``centre`` (row, column)."""
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * radius ** 2))
    return torch.from_numpy(blob.astype(np.float32))[None, None]


def main(folder: Path = FOLDER) -> None:
    image, mask, away = _pick_item()
    radius = 0.8 * np.sqrt(mask.sum() / np.pi)
    on_object = _blob(np.argwhere(mask).mean(0), radius)
    off_object = _blob(away, radius)
    x = normalize(torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255)
    rendered = render_pairs(x, on_object, off_object, RenderSettings.defaults())
    folder.mkdir(exist_ok=True)
    arrays = {"image": rendered.images[0], "on_object": rendered.original_overlays[0],
              "off_object": rendered.finetuned_overlays[0]}
    for role, name in FILES.items():
        Image.fromarray(arrays[role]).save(folder / name, optimize=True)
        print(f"wrote {folder / name} ({(folder / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
