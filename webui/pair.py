"""The example on screen as one browser-side component (webui/pair.js): display and answers bound together.

The server sends one *display*: an opaque token, the texts, and the image, map A and map B as
uncompressed PNG bytes (webui/images.py), packed in one binary payload::

    [4-byte big-endian header length][JSON header][image][map A][map B]

The browser draws it only once all three images decoded, answers with the token of what it
drew, and sends its whole queue of unreported presses as the component's state ``presses``.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import streamlit as st

from webui.images import PairImages

KEY = "pair"
HERE = Path(__file__).resolve().parent
UNAVAILABLE = ("This example cannot be shown (an image is missing, unreadable or too large), so it cannot be "
               "answered: use Next to move on, and tell your study's admin.")


def pack(header: dict, images: PairImages | None) -> bytes:
    """The component's payload: the header (with the images' lengths) and the PNG bytes."""
    parts = [] if images is None else [images.image, images.map_a, images.map_b]
    encoded = json.dumps({**header, "images": [len(p) for p in parts],
                          "unavailable": UNAVAILABLE}).encode()
    return b"".join([struct.pack(">I", len(encoded)), encoded, *parts])


def unpack(payload: bytes) -> tuple[dict, list[bytes]]:
    """The inverse of :func:`pack` (for tests): header and the PNG bytes."""
    (length,) = struct.unpack(">I", payload[:4])
    header = json.loads(payload[4:4 + length])
    parts, at = [], 4 + length
    for size in header["images"]:
        parts.append(payload[at:at + size])
        at += size
    return header, parts


def component():
    """The registered component's mount function (registered once per process)."""
    return st.components.v2.component("harmony_pair", js=(HERE / "pair.js").read_text(),
                                      css=(HERE / "pair.css").read_text(), isolate_styles=False)


def presses(state) -> list:
    """The browser's queue of presses from the component's session state (a list, maybe empty)."""
    try:
        value = state.get("presses") if state is not None else None
    except AttributeError:
        return []
    return value if isinstance(value, list) else []
