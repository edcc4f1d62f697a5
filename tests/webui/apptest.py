"""Driving the annotation page under Streamlit's AppTest: log in, enter a cell, press, and read back
what the page sent its browser component."""
from __future__ import annotations

import io
import re

from PIL import Image
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from harmony_cli.store import Label, Store
from tests.conftest import REPO
from tests.webui_study import BLUE, PASSWORD, RED
from webui import pair

APP = REPO / "webui" / "app.py"
LEAK = re.compile(r"original|finetuned|learn", re.IGNORECASE)


def new_page() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30).run()


def log_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login-name").input(name)
    at.text_input(key="login-password").input(password)
    return at.button[0].click().run()  # the form's only button: "Log in"


def enter_cell(at: AppTest, store: Store, annotator_id: int, metric: str) -> AppTest:
    rows = store.annotator_cells(annotator_id)
    number = next(i for i, row in enumerate(rows) if row["metric"] == metric)
    return at.button(key=f"cell-{number}").click().run()


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def displayed(at: AppTest) -> tuple[dict, list[bytes]]:
    """What the page sent its browser component: the display's header and PNG bytes (image, map A, map B)."""
    [component] = at.get("bidi_component")
    return pair.unpack(component.proto.bytes)


def shown_prediction(at: AppTest) -> str:
    return displayed(at)[0]["prediction"]


def map_colours(at: AppTest) -> dict[str, str]:
    """Which map each side shows, read from the served pixels (the study's originals are red,
    fine-tuned maps blue): {"A": "original" | "finetuned", "B": ...}."""
    _, (_, map_a, map_b) = displayed(at)
    names = {RED: "original", BLUE: "finetuned"}
    return {side: names[Image.open(io.BytesIO(png)).convert("RGB").getpixel((0, 0))]
            for side, png in (("A", map_a), ("B", map_b))}


def press(at: AppTest, button: str, token: str | None = None) -> AppTest:
    """What the browser component sends for a press: its queue, each press with the display's token."""
    token = displayed(at)[0]["token"] if token is None else token
    seq = displayed(at)[0]["processed"] + 1  # the page's next press: the browser numbers them in sequence
    at.session_state[pair.KEY] = {"presses": [{"seq": seq, "token": token, "button": button}]}
    return at.run()


def refused(at: AppTest) -> list[str]:
    return [message for _, _, message in displayed(at)[0]["refused"]]


def label_rows(store: Store, annotator_id: int) -> list[Label]:
    with store.read() as session:
        return list(session.scalars(select(Label).where(Label.annotator_id == annotator_id)))


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def sent_text(at: AppTest) -> str:
    """Everything of the page the browser would receive: element protos, widget keys, ids."""
    parts = []
    for root in (at.main, at.sidebar):
        for node in walk(root):
            parts.append(str(getattr(node, "proto", "")))
            parts.append(str(getattr(node, "key", "")))
    return "\n".join(parts)
