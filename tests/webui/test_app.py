"""The annotation page (webui/app.py) under Streamlit's AppTest, and the logic behind it
(webui/session.py, the store's per-annotator queries)."""
from __future__ import annotations

import io
import json
import re

from PIL import Image
from sqlalchemy import func, select

from harmony_cli.store import Label, LabelAudit, Store
from webui.session import SECRET_NAME, button_for, choice_for, left_map, resolve_image
from tests.webui.apptest import (LEAK, displayed, enter_cell, label_rows, log_in, map_colours, markdown,
                                 new_page, press, refused, sent_text, shown_prediction, walk)
from tests.webui_study import BLUE, PASSWORD, RED, make_study


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
    assert [w.value for w in at.warning] == ["Your session has ended (it expired, you logged out in another tab, "
                                             "or an admin changed your account): log in again."]


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
                progress[metric] = re.search(r"(\d+) / (\d+) labels \(5 per example\) · you answered (\d+) of "
                                             r"(\d+)", text).groups()
    # everyone's labels toward 5 per example, and ana's own answers
    assert progress == {"rma": ("2", "15", "2", "3"), "focus": ("1", "10", "0", "2")}


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
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    assert not at.exception
    expected = {}
    for i, button in enumerate(("A", "B", "neither")):
        header, _ = displayed(at)
        assert header["prediction"] == f"shape-0-{i}" and header["progress"].startswith(f"Example {i + 1} of 3")
        sides = map_colours(at)  # the pixels the annotator saw, not the page's own bookkeeping
        expected[rma[i]] = (sides.get(button, "neither"), sides["A"])
        press(at, button)
        assert not at.exception and refused(at) == []
    assert {row.example_id: (row.choice, row.left_map) for row in label_rows(store, study["ana"])} == expected
    assert all(row.response_ms is not None and row.response_ms >= 0 for row in label_rows(store, study["ana"]))
    assert [s.value for s in at.success] == ["Done: you answered all 3 examples of this cell. Thank you!"]
    at.button(key="nav-cells").click().run()
    assert "3 / 15 labels (5 per example) · you answered 3 of 3" in sent_text(at)


def test_an_answered_example_shows_its_answer_and_a_change_updates_the_one_label(study):
    store, rma = study["store"], study["cells"][0]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    sides = map_colours(at)
    press(at, "A")
    assert shown_prediction(at) == "shape-0-1"
    at.button(key="nav-back").click().run()
    assert shown_prediction(at) == "shape-0-0"
    assert displayed(at)[0]["answered"] == "A" and map_colours(at) == sides  # the same sides on every visit

    press(at, "B")  # change it
    rows = label_rows(store, study["ana"])
    assert [(r.example_id, r.choice) for r in rows] == [(rma[0], sides["B"])]
    with store.read() as session:
        audit = list(session.scalars(select(LabelAudit).where(LabelAudit.example_id == rma[0])
                                     .order_by(LabelAudit.id)))
    assert [(a.choice, a.previous_choice) for a in audit] == [(sides["A"], None), (sides["B"], sides["A"])]
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
    press(tab1, "A")
    press(tab2, "neither")  # the same example, from the other tab
    rows = label_rows(store, study["ben"])
    assert [(r.example_id, r.choice) for r in rows] == [(focus[0], "neither")]
    press(tab1, "neither")
    assert len(label_rows(store, study["ben"])) == 2
    again = enter_cell(log_in(new_page(), "ben"), store, study["ben"], "focus")
    assert [s.value for s in again.success] == ["Done: you answered all 2 examples of this cell. Thank you!"]
    again.button(key="nav-back").click().run()  # review the last answer
    assert shown_prediction(again) == "shape-1-1"


def test_a_press_on_a_display_no_longer_shown_is_refused_visibly_never_moved_to_another(study):
    store, rma = study["store"], study["cells"][0]
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    first = displayed(at)[0]["token"]
    sides = map_colours(at)
    press(at, "A", token=first)
    press(at, "B", token=first)  # the second press of a double press, made before the page redrew
    press(at, "neither", token="made-up")
    assert [(r.example_id, r.choice) for r in label_rows(store, study["ana"])] == [(rma[0], sides["A"])]
    assert len(refused(at)) == 2 and all("was not stored" in m for m in refused(at))
    assert "“Map B”" in refused(at)[0] and "moved on" in refused(at)[0]
    assert shown_prediction(at) == "shape-0-1"  # the page stays where the stored answer took it
    with store.read() as session:
        assert session.scalar(select(func.count(Label.id))) == 1


def test_nothing_sent_to_the_page_names_the_maps(study):
    store = study["store"]
    at = new_page()
    screens = [sent_text(at)]
    log_in(at, "ana")
    screens.append(sent_text(at))
    enter_cell(at, store, study["ana"], "rma")
    screens.append(sent_text(at) + json.dumps(displayed(at)[0]))
    press(at, "A")
    at.button(key="nav-back").click().run()  # an answered example
    screens.append(sent_text(at) + json.dumps(displayed(at)[0]))
    for text in screens:
        assert not LEAK.search(text), LEAK.search(text).group(0)
    assert not [n for n in walk(at.main) if type(n).__name__ == "Image"]  # no media URL: bytes in the component
    header, (image, map_a, map_b) = displayed(at)
    assert header["images"] == [len(image), len(map_a), len(map_b)] and len(map_a) == len(map_b)
    assert not re.search(LEAK.pattern.encode(), image + map_a + map_b, re.IGNORECASE)  # no name or metadata


def test_both_maps_are_served_with_one_length_and_never_the_same_bytes_twice(tmp_path):
    """A busy original map and a flat fine-tuned one, the sizes that gave the original away."""
    import numpy as np

    from webui.images import pair_images

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(tmp_path / "busy.png")
    Image.new("RGB", (224, 224), BLUE).save(tmp_path / "flat.png")
    Image.new("RGB", (64, 64), RED).save(tmp_path / "image.png")
    assert (tmp_path / "busy.png").stat().st_size > 10 * (tmp_path / "flat.png").stat().st_size
    first = pair_images(tmp_path / "image.png", tmp_path / "busy.png", tmp_path / "flat.png")
    again = pair_images(tmp_path / "image.png", tmp_path / "busy.png", tmp_path / "flat.png")
    assert len(first.map_a) == len(first.map_b) == len(again.map_a)
    assert first.map_a != again.map_a and first.image != again.image  # a fresh nonce each time
    decoded = np.asarray(Image.open(io.BytesIO(first.map_a)))
    assert (decoded == np.asarray(Image.open(tmp_path / "busy.png"))).all()  # the pixels are untouched


# images ---------------------------------------------------------------------------------------

def test_a_missing_outside_or_oversized_image_shows_one_notice_and_takes_no_answer(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    study = {**make_study(url, tmp_path / "images"), "image_dir": tmp_path / "images", "store": Store.open(url)}
    monkeypatch.setenv("HARMONY_DB_URL", url)
    store, rma = study["store"], study["cells"][0]
    outside = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(outside)
    bomb = study["image_dir"] / "bomb.png"  # 20000 x 10000 pixels in a few KB
    Image.new("1", (20000, 10000)).save(bomb)
    from harmony_cli.store import Example

    with store.write() as session:
        session.get(Example, rma[0]).image_path = "../secret.png"
        session.get(Example, rma[1]).original_map_path = str(outside)  # absolute paths are held to the folder too
        session.get(Example, rma[2]).finetuned_map_path = "bomb.png"
    at = enter_cell(log_in(new_page(), "ana"), store, study["ana"], "rma")
    for i in range(3):
        assert not at.exception
        header, parts = displayed(at)
        assert header["prediction"] == f"shape-0-{i}"
        assert parts == [] and "cannot be shown" in header["unavailable"]  # no images, so no buttons nor keys
        press(at, "A")  # even a forged press for this display is not stored
        assert "was not stored" in refused(at)[-1]
        at.button(key="nav-next").click().run()  # the way to move on
    assert label_rows(store, study["ana"]) == []
    assert resolve_image(str(study["image_dir"]), "rma_1_image.png") == study["image_dir"] / "rma_1_image.png"
    link = study["image_dir"] / "link.png"
    link.symlink_to(outside)
    assert resolve_image(str(study["image_dir"]), "link.png") is None
    assert resolve_image(None, "rma_1_image.png") is None
    store.close()


# side order ------------------------------------------------------------------------------------

def test_left_right_order_is_random_per_pair_yet_stable():
    sides = [left_map("s3cret", 1, example) for example in range(400)]
    assert sides == [left_map("s3cret", 1, example) for example in range(400)]
    assert 150 < sides.count("original") < 250
    assert sides != [left_map("s3cret", 2, example) for example in range(400)]  # per annotator
    assert sides != [left_map("other", 1, example) for example in range(400)]   # per secret
    for left in ("original", "finetuned"):
        for button in ("A", "neither", "B"):
            assert button_for(choice_for(button, left), left) == button
    assert [choice_for(b, "original") for b in ("A", "neither", "B")] == ["original", "neither", "finetuned"]
    assert [choice_for(b, "finetuned") for b in ("A", "neither", "B")] == ["finetuned", "neither", "original"]


def test_the_page_says_plainly_when_the_database_is_not_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMONY_DB_URL", f"sqlite:///{tmp_path / 'none' / 'missing.db'}")
    at = new_page()
    assert not at.exception
    assert [e.value for e in at.error] == ["The study database is not ready. Please tell your study's admin."]
    assert "missing.db" not in sent_text(at)
    assert not (tmp_path / "none" / "missing.db").exists()  # the page creates no database
