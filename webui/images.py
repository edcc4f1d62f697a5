"""The images of one example as the browser receives them: blinded by construction.

Both maps of a pair leave the server as *uncompressed* PNGs of the same dimensions, so their
byte lengths are equal whatever their content (a compressed PNG's size follows its content, and
the original map compressed worse than the fine-tuned one in 200 of 200 demo pairs). Each PNG
also carries a fresh random chunk, so no two served files are byte-identical, even the same
original map shown in two cells. Decoding is bounded: a file over MAX_FILE_BYTES or
MAX_PIXELS (or one Pillow calls a decompression bomb) is "not available", never a crash.
"""
from __future__ import annotations

import io
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

MAX_FILE_BYTES = 32 * 2**20
MAX_PIXELS = 4096 * 4096
MAX_SIDE = 512  # served images are at most this wide/high (the page shows them at ~270 px)
NONCE_CHUNK = b"hmNc"  # private ancillary PNG chunk: ignored by every decoder
NONCE_BYTES = 16


def load_rgb(path: Path | None):
    """The file as an RGB PIL image, or None when absent, too large, unreadable or a bomb."""
    if path is None:
        return None
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:  # checked before any pixel is decoded
                return None
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def fit(size: tuple[int, int], max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``size`` scaled down (keeping its aspect) so that no side exceeds ``max_side``."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def uncompressed_png(image, size: tuple[int, int]) -> bytes:
    """``image`` at ``size`` as a PNG whose length depends on ``size`` only (no compression, no
    metadata), with a random chunk so the bytes never repeat."""
    if image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST if image.width < size[0] else Image.Resampling.BILINEAR)
    info = PngImagePlugin.PngInfo()
    info.add(NONCE_CHUNK, secrets.token_bytes(NONCE_BYTES))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=0, pnginfo=info)
    return buffer.getvalue()


@dataclass
class PairImages:
    """What the browser receives for one example: the image and maps A/B as PNG bytes."""

    image: bytes
    map_a: bytes
    map_b: bytes


def pair_images(image: Path | None, map_a: Path | None, map_b: Path | None) -> PairImages | None:
    """The three images ready to serve, or None unless all three can be shown.

    Both maps get one size (the larger of the two, bounded by MAX_SIDE), hence one byte length.
    """
    loaded = [load_rgb(p) for p in (image, map_a, map_b)]
    if any(x is None for x in loaded):
        return None
    shown, left, right = loaded
    map_size = fit((max(left.width, right.width), max(left.height, right.height)))
    return PairImages(image=uncompressed_png(shown, fit(shown.size)), map_a=uncompressed_png(left, map_size),
                      map_b=uncompressed_png(right, map_size))
