"""The annotation page (webui/app.py) under Streamlit's AppTest, and the logic behind it
(webui/session.py, the store's per-annotator queries)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import webui.session as page_logic
from harmony_cli.store import Label, LabelAudit, Store
from webui.session import (SECRET_NAME, LoginThrottle, button_for, choice_for, example_screen, left_map, open_cell,
                           resolve_image, submit_answer)
from tests.webui_study import BLUE, PASSWORD, RED, make_study

APP = Path(__file__).resolve().parent.parent / "webui" / "app.py"
LEAK = re.compile(r"original|finetuned|learn", re.IGNORECASE)


@pytest.fixture(scope="module")
def study_template(tmp_path_factory):
    """The tiny study, made once (argon2 hashing is slow by design); each test gets a copy."""
    folder = tmp_path_factory.mktemp("webui-study")
    info = make_study(f"sqlite:///{folder / 'harmony.db'}", folder / "images")
    return folder, info


@pytest.fixture
def study(study_template, tmp_path, monkeypatch):
    folder, info = study_template
    shutil.copy(folder / "harmony.db", tmp_path / "harmony.db")
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    monkeypatch.setenv("HARMONY_DB_URL", url)
    # The page drops answers that come within MIN_ANSWER_MS of a new example (double clicks);
    # AppTest clicks faster than a person, so the guard is tested on its own below.
    monkeypatch.setattr(page_logic, "MIN_ANSWER_MS", 0)
    store = Store.open(url)
    yield {**info, "url": url, "store": store, "image_dir": folder / "images"}
    store.close()


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


def shown_prediction(at: AppTest) -> str:
    return re.search(r"Model prediction: \*\*(.+?)\*\*", markdown(at)).group(1)


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


# login -------------------------------------------------------------------------------------

def test_login_refuses_wrong_password_unknown_name_and_inactive_account_alike(study):
    at = new_page()
    assert not at.exception
    messages = []
    for name, password in (("ana", "wrong"), ("nobody", PASSWORD), ("cy", PASSWORD)):
        log_in(at, name, password)
        assert not at.exception
        assert [t.value for t in at.title] == ["harmony"], f"{name} got past the login"
        messages.append([e.value for e in at.error])
    assert messages == [["Wrong name or password."]] * 3  # no hint which part was wrong

    log_in(at, "ana")
    assert not at.error
    assert [t.value for t in at.title] == ["Your study cells"]
    assert "signed in as **ana**" in markdown(at)
    at.button(key="log-out").click().run()
    assert [t.value for t in at.title] == ["harmony"]

    log_in(at, "ben")
    assert [t.value for t in at.title] == ["Your study cells"]
    study["store"].set_active("ben", False)  # an admin deactivates the account meanwhile
    at.run()
    assert [t.value for t in at.title] == ["harmony"]


def test_repeated_failures_are_slowed_down_per_name_and_cleared_by_success():
    now = [0.0]
    throttle = LoginThrottle(free=3, base_s=1.0, max_s=10.0, window_s=900.0, clock=lambda: now[0])
    delays = []
    for _ in range(8):
        delays.append(throttle.delay("ana"))
        throttle.failed("ana")
    assert delays == [0, 0, 0, 1, 2, 4, 8, 10]
    assert throttle.delay("ben") == 0  # another name is not slowed
    now[0] += 901  # failures older than the window are forgotten
    assert throttle.delay("ana") == 0
    for _ in range(5):
        throttle.failed("ana")
    assert throttle.delay("ana") > 0
    throttle.succeeded("ana")
    assert throttle.delay("ana") == 0


# start page ---------------------------------------------------------------------------------

def test_start_page_shows_each_cell_with_the_annotators_own_progress(study):
    store, (rma, focus) = study["store"], study["cells"]
    store.answer(study["ana"], rma[0], "original", left_map="original")
    store.answer(study["ana"], rma[1], "neither", left_map="finetuned")
    store.answer(study["ben"], focus[0], "finetuned", left_map="original")  # not ana's
    at = log_in(new_page(), "ana")
    progress = {}
    for block in at.main.children.values():
        text = "\n".join(str(getattr(n, "proto", "")) for n in walk(block))
        for metric in ("rma", "focus"):
            if f"**{metric} · tiny · gradcam**" in text:
                progress[metric] = re.search(r"(\d+) / (\d+) done", text).groups()
    assert progress == {"rma": ("2", "3"), "focus": ("0", "2")}


def test_annotator_cells_and_next_unlabeled_follow_one_annotator(db_url, tmp_path):
    info = make_study(db_url, tmp_path / "images")
    store = Store.open(db_url)
    rma, focus = info["cells"]
    cell = {"dataset": "synthetic", "metric": "rma", "backbone": "tiny", "attribution": "gradcam"}
    assert store.cell_example_ids(info["study_id"], cell) == rma
    assert store.next_unlabeled(info["ana"], info["study_id"], cell) == rma[0]
    store.answer(info["ana"], rma[1], "neither")
    store.answer(info["ben"], rma[2], "neither")
    assert store.next_unlabeled(info["ana"], info["study_id"], cell, after=rma[0]) == rma[2]  # skips the answered
    assert store.next_unlabeled(info["ana"], info["study_id"], cell, after=rma[2]) == rma[0]  # wraps around
    assert store.count_answered(info["ana"], info["study_id"], cell) == 1
    store.answer(info["ana"], rma[0], "original")
    store.answer(info["ana"], rma[2], "finetuned")
    assert store.next_unlabeled(info["ana"], info["study_id"], cell, after=rma[0]) is None
    done = {row["metric"]: (row["done"], row["examples"]) for row in store.annotator_cells(info["ana"])}
    assert done == {"rma": (3, 3), "focus": (0, 2)}
    assert {row["image_dir"] for row in store.annotator_cells(info["ana"])} == {str(tmp_path / "images")}
    secret = store.secret(SECRET_NAME)
    assert len(secret) >= 32 and store.secret(SECRET_NAME) == secret and store.secret("other") != secret
    store.close()


# answering ------------------------------------------------------------------------------------

def test_answers_store_the_choice_of_the_side_shown_and_advance_to_the_done_screen(study):
    store, rma = study["store"], study["cells"][0]
    secret = store.secret(SECRET_NAME)
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert not at.exception
    shortcuts = {b.key: b.proto.shortcut for b in at.button if b.key.startswith(("choice-", "arrow-"))}
    assert shortcuts == {"choice-A": "1", "choice-neither": "2", "choice-B": "3",
                         "arrow-A": "left", "arrow-neither": "down", "arrow-B": "right"}  # normalized by Streamlit
    expected = {}
    for i, button in enumerate(("A", "B", "neither")):
        assert shown_prediction(at) == f"shape-0-{i}"
        assert f"Example {i + 1} of 3" in at.get("progress")[0].proto.text
        at.button(key=f"choice-{button}").click().run()
        assert not at.exception
        left = left_map(secret, study["ana"], rma[i])
        expected[rma[i]] = (choice_for(button, left), left)
    assert {row.example_id: (row.choice, row.left_map) for row in label_rows(store, study["ana"])} == expected
    assert all(row.response_ms is not None and row.response_ms >= 0 for row in label_rows(store, study["ana"]))
    assert [s.value for s in at.success] == ["Done: you answered all 3 examples of this cell. Thank you!"]
    at.button(key="nav-cells").click().run()
    assert "3 / 3 done" in sent_text(at)


def test_an_answered_example_shows_its_answer_and_a_change_updates_the_one_label(study):
    store, rma = study["store"], study["cells"][0]
    secret = store.secret(SECRET_NAME)
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    at.button(key="choice-A").click().run()
    assert shown_prediction(at) == "shape-0-1"
    at.button(key="nav-back").click().run()
    assert shown_prediction(at) == "shape-0-0"
    assert at.button(key="choice-A").proto.type == "primary" and at.button(key="choice-B").proto.type != "primary"
    assert "Your answer: **Map A**" in at.caption[0].value

    at.button(key="choice-B").click().run()  # change it
    left = left_map(secret, study["ana"], rma[0])
    rows = label_rows(store, study["ana"])
    assert [(r.example_id, r.choice) for r in rows] == [(rma[0], choice_for("B", left))]
    with store.read() as session:
        audit = list(session.scalars(select(LabelAudit).where(LabelAudit.example_id == rma[0])
                                     .order_by(LabelAudit.id)))
    assert [(a.choice, a.previous_choice) for a in audit] == [(choice_for("A", left), None),
                                                              (choice_for("B", left), choice_for("A", left))]
    assert shown_prediction(at) == "shape-0-1"  # advanced to the next unanswered


def test_back_and_next_move_without_answering(study):
    store = study["store"]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert at.button(key="nav-back").disabled  # nothing before the first example
    at.button(key="nav-next").click().run()
    at.button(key="nav-next").click().run()
    assert shown_prediction(at) == "shape-0-2"
    at.button(key="nav-back").click().run()
    assert shown_prediction(at) == "shape-0-1"
    at.button(key="nav-next").click().run()
    at.button(key="nav-next").click().run()  # past the last: the end screen, not done yet
    assert [w.value for w in at.warning] == ["3 of 3 examples of this cell are still unanswered."]
    assert not at.success
    at.button(key="nav-unanswered").click().run()
    assert shown_prediction(at) == "shape-0-0"
    assert label_rows(store, study["ana"]) == []


def test_a_finished_cell_opens_on_the_done_screen_and_two_tabs_share_one_label(study):
    store, focus = study["store"], study["cells"][1]
    tab1 = enter_cell(log_in(new_page(), "ben"), store, study["ben"], "focus")
    tab2 = enter_cell(log_in(new_page(), "ben"), store, study["ben"], "focus")
    tab1.button(key="choice-A").click().run()
    tab2.button(key="choice-neither").click().run()  # the same example, from the other tab
    rows = label_rows(store, study["ben"])
    assert [(r.example_id, r.choice) for r in rows] == [(focus[0], "neither")]
    tab1.button(key="choice-neither").click().run()
    assert len(label_rows(store, study["ben"])) == 2
    again = enter_cell(log_in(new_page(), "ben"), store, study["ben"], "focus")
    assert [s.value for s in again.success] == ["Done: you answered all 2 examples of this cell. Thank you!"]
    again.button(key="nav-back").click().run()  # review the last answer
    assert shown_prediction(again) == "shape-1-1"


def test_nothing_sent_to_the_page_names_the_maps(study):
    store = study["store"]
    at = new_page()
    screens = [sent_text(at)]
    log_in(at, "ana")
    screens.append(sent_text(at))
    enter_cell(at, store, study["ana"], "rma")
    screens.append(sent_text(at))
    at.button(key="choice-A").click().run()
    at.button(key="nav-back").click().run()  # an answered example
    screens.append(sent_text(at))
    for text in screens:
        assert "Model prediction" in text or "Log in" in text or "study cells" in text
        assert not LEAK.search(text), LEAK.search(text).group(0)
    images = [n for n in walk(at.main) if type(n).__name__ == "Image"]
    assert [img.proto.imgs[0].alt for img in images] == ["the image", "map A", "map B"]
    assert all(re.fullmatch(r"/mock/media/[0-9a-f]+\.png", img.value[0]) for img in images)


# images ---------------------------------------------------------------------------------------

def test_images_outside_the_study_folder_or_missing_show_a_placeholder(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    study = {**make_study(url, tmp_path / "images"), "image_dir": tmp_path / "images", "store": Store.open(url)}
    monkeypatch.setenv("HARMONY_DB_URL", url)
    store, rma = study["store"], study["cells"][0]
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    with store.write() as session:
        from harmony_cli.store import Example

        example = session.get(Example, rma[0])
        example.image_path = "../secret.png"
        example.original_map_path = "gone.png"
        example.finetuned_map_path = str(outside)  # absolute paths are held to the folder too
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert not at.exception
    assert [i.value for i in at.info] == ["Image not available."] * 3
    assert resolve_image(str(study["image_dir"]), "rma_1_image.png") == study["image_dir"] / "rma_1_image.png"
    link = study["image_dir"] / "link.png"
    link.symlink_to(outside)
    assert resolve_image(str(study["image_dir"]), "link.png") is None
    assert resolve_image(None, "rma_1_image.png") is None
    store.close()


def test_the_screen_puts_each_map_on_the_side_its_answer_records(study):
    store, rma = study["store"], study["cells"][0]
    secret = store.secret(SECRET_NAME)
    cursor = open_cell(store, study["ana"], study["study_id"], store.annotator_cells(study["ana"])[1])
    assert cursor.example_ids == rma
    for example_id in rma:
        cursor.show(rma.index(example_id))
        screen = example_screen(store, secret, study["ana"], cursor, str(study["image_dir"]))
        colour = {side: Image.open(path).getpixel((0, 0)) for side, path in (("A", screen.left), ("B", screen.right))}
        left = left_map(secret, study["ana"], example_id)
        assert colour["A"] == (RED if left == "original" else BLUE)
        assert {colour["A"], colour["B"]} == {RED, BLUE}
        assert choice_for("A", left) == ("original" if colour["A"] == RED else "finetuned")


# side order and the double-click guard ----------------------------------------------------------------

def test_left_right_order_is_random_per_pair_yet_stable():
    sides = [left_map("s3cret", 1, example) for example in range(400)]
    assert sides == [left_map("s3cret", 1, example) for example in range(400)]
    assert 150 < sides.count("original") < 250
    assert sides != [left_map("s3cret", 2, example) for example in range(400)]  # per annotator
    assert sides != [left_map("other", 1, example) for example in range(400)]   # per secret
    for left in ("original", "finetuned"):
        for button in ("A", "neither", "B"):
            assert button_for(choice_for(button, left), left) == button


def test_a_double_click_never_answers_the_next_example_unseen(study):
    store, rma = study["store"], study["cells"][0]
    secret = store.secret(SECRET_NAME)
    cursor = open_cell(store, study["ana"], study["study_id"], store.annotator_cells(study["ana"])[1], now=100.0)
    assert submit_answer(store, secret, study["ana"], cursor, "A", example_id=rma[0], now=101.0, min_answer_ms=250)
    assert cursor.example_id == rma[1]
    # the second click of the double click: drawn for the first example, or too soon for the second
    assert not submit_answer(store, secret, study["ana"], cursor, "A", example_id=rma[0], now=101.05,
                             min_answer_ms=250)
    assert not submit_answer(store, secret, study["ana"], cursor, "A", example_id=rma[1], now=101.1,
                             min_answer_ms=250)
    assert [r.example_id for r in label_rows(store, study["ana"])] == [rma[0]]
    assert label_rows(store, study["ana"])[0].response_ms == 1000
    assert submit_answer(store, secret, study["ana"], cursor, "B", example_id=rma[1], now=102.5, min_answer_ms=250)
    with store.read() as session:
        assert session.scalar(select(func.count(Label.id))) == 2


def test_the_page_says_plainly_when_the_database_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_DB_URL", f"sqlite:///{tmp_path / 'none' / 'missing.db'}")
    at = new_page()
    assert not at.exception
    assert [e.value for e in at.error] == ["The study database is not ready. Please tell your study's admin."]
    assert "missing.db" not in sent_text(at)
    assert not (tmp_path / "none" / "missing.db").exists()  # the page creates no database
