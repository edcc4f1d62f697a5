"""Accounts as the page uses them: throttled logins kept in the store, sessions that end at once,
simulated accounts that never log in, normalized names, and a login that survives a reload."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text, update
from streamlit.testing.v1 import AppTest

from harmony_cli.store import SCHEMA_VERSION, Annotator, Label, Meta, SessionEnded, Store, StoreError
from harmony_cli.store.accounts import FREE_ATTEMPTS, LOCK_AFTER, WRONG
from webui import login as page_login
from tests.webui_study import PASSWORD, make_study
from tests.conftest import REPO

APP = REPO / "webui" / "app.py"
CELL = dict(dataset="synthetic", metric="rma", backbone="tiny", attribution="gradcam")


@pytest.fixture
def store(db_url):
    with Store.open(db_url) as store:
        store.add_annotator("ana", PASSWORD)
        yield store


GUESSER = "203.0.113.9"  # a client address (documentation range)


def test_failed_logins_wait_longer_each_time_then_lock_until_an_admin_unlocks(store):
    answers = []
    for attempt in range(LOCK_AFTER + 1):
        # one second after the previous attempt: free at first, then refused until the doubling delay has passed
        answers.append(store.login("ana", "wrong", client=GUESSER, now=1000.0 + attempt).message)
    assert answers[:FREE_ATTEMPTS + 1] == [WRONG] * (FREE_ATTEMPTS + 1)  # the 4th waited its 1 s
    assert answers[FREE_ATTEMPTS + 1].startswith("Too many failed logins for this name: wait 1 s")
    t = 2000.0
    for _ in range(LOCK_AFTER):  # far enough apart to pass every delay, until the lock
        t += 100
        result = store.login("ana", "wrong", client=GUESSER, now=t)
    assert "locked" in result.message and "harmony annotators unlock" in result.message
    assert "locked" in store.login("ana", PASSWORD, client=GUESSER, now=t + 1000).message  # even the right password
    assert store.unlock(" ana ") is True
    assert store.login("ana", PASSWORD, client=GUESSER, now=t + 1001).annotator.name == "ana"
    assert store.unlock("ana") is False


def test_parallel_guesses_cannot_share_a_delay_and_every_page_server_sees_them(store):
    other_server = Store.open(store.url)  # a second page server on the same store
    results = []

    def guess(server):
        results.append(server.login("ana", "wrong", now=5000.0).message)

    threads = [threading.Thread(target=guess, args=(server,)) for server in [store, other_server] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other_server.close()
    assert results.count(WRONG) == FREE_ATTEMPTS  # only the free attempts had their password checked
    assert sum(m.startswith("Too many failed logins") for m in results) == 8 - FREE_ATTEMPTS


def test_deactivation_and_a_new_password_end_sessions_in_the_answers_transaction(store):
    study = store.get_or_create_study("s")
    [example] = store.add_examples(study.id, [dict(CELL, source_key="0", class_name="c")])
    store.assign("ana", "s")
    ana = store.annotator("ana")
    store.answer(ana.id, example, "original", session_version=ana.session_version)
    store.set_active("ana", False)
    with pytest.raises(SessionEnded, match="log in again"):
        store.answer(ana.id, example, "finetuned", session_version=ana.session_version)
    store.set_active("ana", True)
    with pytest.raises(SessionEnded):  # reactivation does not revive the old session
        store.answer(ana.id, example, "finetuned", session_version=ana.session_version)
    version = store.annotator("ana").session_version
    store.set_password("ana", "battery staple")
    with pytest.raises(SessionEnded):
        store.answer(ana.id, example, "finetuned", session_version=version)
    with store.read() as session:
        assert session.scalar(select(Label.choice)) == "original"
        assert session.scalar(select(func.count(Label.id))) == 1


def test_simulated_accounts_never_log_in(store):
    store.add_annotator("sim-1", None, active=False, simulated=True)
    with pytest.raises(StoreError, match="simulated"):
        store.set_password("sim-1", "long-enough")
    from harmony_cli.store.passwords import hash_password

    with store.write() as session:  # even given a password and activated behind the commands' back
        session.execute(update(Annotator).where(Annotator.name == "sim-1")
                        .values(password_hash=hash_password("long-enough"), active=True))
    assert store.login("sim-1", "long-enough", now=1.0).annotator is None


def test_names_are_stripped_and_nfc_at_creation_and_login(store):
    store.add_annotator("  Zoe\u0308 ", "long-enough")  # decomposed ë, with spaces
    assert [a.name for a in store.annotators()] == ["Zoë", "ana"]
    assert store.login("Zoë", "long-enough", now=1.0).annotator.name == "Zoë"
    assert store.login(" Zoe\u0308", "long-enough", now=2.0).annotator.name == "Zoë"
    for bad in ("a\x00b", "n" * 200, "tab\there", ""):
        assert store.login(bad, "long-enough", now=3.0).message == WRONG  # no error, no row
        with pytest.raises(StoreError):
            store.add_annotator(bad, "long-enough")
    with store.read() as session:
        assert session.scalar(select(func.count(Annotator.id))) == 2


def test_a_version_1_store_is_upgraded_in_place(sqlite_url):
    with Store.open(sqlite_url) as store:
        store.add_annotator("ana", PASSWORD)
        with store.write() as session:  # back to what harmony's schema 1 held
            session.execute(text("ALTER TABLE harmony_annotator DROP COLUMN session_version"))
            session.execute(text("DROP TABLE harmony_login_guard"))
            session.execute(text("DROP TABLE harmony_assignment"))
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value="1"))
    with Store.open(sqlite_url, create=False) as store:
        assert store.login("ana", PASSWORD, now=1.0).annotator.session_version == 0
        with store.read() as session:
            assert session.get(Meta, "schema_version").value == str(SCHEMA_VERSION)


# the page ---------------------------------------------------------------------------------------

@pytest.fixture
def page_study(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'harmony.db'}"
    info = make_study(url, tmp_path / "images")
    monkeypatch.setenv("HARMONY_DB_URL", url)
    with Store.open(url) as store:
        yield {**info, "store": store}


def logged_in(at: AppTest) -> bool:
    return [t.value for t in at.title] == ["Your study cells"]


def test_a_login_survives_a_reload_until_the_password_changes(page_study):
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.text_input(key="login-name").input(" ana ")  # typed with spaces: the same account
    at.text_input(key="login-password").input(PASSWORD)
    at.button[0].click().run()
    assert logged_in(at)
    token = at.query_params[page_login.QUERY_KEY]
    token = token if isinstance(token, str) else token[0]
    assert PASSWORD not in token and "original" not in token
    reload = AppTest.from_file(str(APP), default_timeout=30)
    reload.query_params[page_login.QUERY_KEY] = token
    assert logged_in(reload.run())
    forged = AppTest.from_file(str(APP), default_timeout=30)
    forged.query_params[page_login.QUERY_KEY] = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert not logged_in(forged.run())
    page_study["store"].set_password("ana", "battery staple")
    again = AppTest.from_file(str(APP), default_timeout=30)
    again.query_params[page_login.QUERY_KEY] = token
    assert not logged_in(again.run())


def test_a_press_after_deactivation_stores_nothing_and_says_the_session_ended(page_study):
    from tests.webui.apptest import enter_cell, label_rows, log_in

    store = page_study["store"]
    at = enter_cell(log_in(AppTest.from_file(str(APP), default_timeout=30).run(), "ana"), store,
                    page_study["ana"], "rma")
    store.set_active("ana", False)  # by an admin, while the example is on screen
    at.session_state["pair"] = {"presses": [{"seq": 1, "token": "any", "button": "A"}]}
    at.run()
    assert label_rows(store, page_study["ana"]) == []
    assert [t.value for t in at.title] == ["harmony"]
    assert any("session has ended" in w.value for w in at.warning)
