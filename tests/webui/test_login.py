"""Page logins an adversary would try to keep or take: the URL's token after Log out, a replayed
rerun into a logged-out tab, a token past its lifetime or minted by whoever reads the store file, an
account locked by someone else's guesses, and a login-guard table filled with invented names."""
from __future__ import annotations

import base64
import hashlib
import hmac
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from streamlit.testing.v1 import AppTest

from harmony_cli.store import LoginGuard, Meta, PageSession, SCHEMA_VERSION, Store
from harmony_cli.store import accounts
from harmony_cli.store.accounts import LOCK_AFTER, WRONG
from harmony_cli.store.sessions import PAGE_SESSION_TTL_S
from tests.webui.apptest import APP, enter_cell, label_rows, log_in
from tests.webui_study import PASSWORD
from webui import login as page_login

GUESSER, OWNER = "203.0.113.9", "198.51.100.7"  # two client addresses (documentation ranges)
TEN_YEARS_S = 10 * 365 * 24 * 3600


def page(token: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    if token is not None:
        at.query_params[page_login.QUERY_KEY] = token
    return at.run()


def logged_in(at: AppTest) -> bool:
    return any("signed in as" in m.value for m in at.markdown)


def url_token(at: AppTest) -> str:
    token = at.query_params[page_login.QUERY_KEY]
    return token if isinstance(token, str) else token[0]


# item 3: a login ends at logout, at its server-side lifetime, and cannot be minted ------------------------

def test_the_url_token_stops_working_at_log_out_and_a_replayed_rerun_does_not_log_in_again(study):
    at = log_in(page(), "ana")
    token = url_token(at)
    assert logged_in(page(token))  # a reload (or a second tab) with the URL's token is logged in
    at = enter_cell(at, study["store"], study["ana"], "rma")
    at.button(key="log-out").click().run()
    assert not logged_in(at) and page_login.QUERY_KEY not in at.query_params
    assert not logged_in(page(token))  # the URL saved before Log out
    # the captured websocket message of a press: the page's query string with the token, and the press
    at.query_params[page_login.QUERY_KEY] = token
    at.session_state["pair"] = {"presses": [{"seq": 99, "token": "any", "button": "A"}]}
    at.run()
    assert not logged_in(at) and label_rows(study["store"], study["ana"]) == []


def test_a_login_ends_at_its_lifetime_counted_from_the_servers_issue_time(study):
    store = study["store"]
    at = log_in(page(), "ana")
    token = url_token(at)
    with store.read() as session:
        [issued_at] = session.scalars(select(PageSession.issued_at))
    assert abs(issued_at - time.time()) < 60  # the server's clock, at login
    assert store.page_session(token, now=issued_at + PAGE_SESSION_TTL_S - 1).name == "ana"
    assert store.page_session(token, now=issued_at + PAGE_SESSION_TTL_S) is None
    with store.write() as session:  # the same login, issued a lifetime ago
        session.execute(update(PageSession).values(issued_at=time.time() - PAGE_SESSION_TTL_S - 1))
    assert not logged_in(page(token))  # a reload
    at.run()  # the tab that stayed open
    assert not logged_in(at) and any("session has ended" in w.value for w in at.warning)


def store_strings(db_file: Path) -> list[str]:
    """Every text value of every table of an SQLite file: what someone who reads the file knows."""
    conn = sqlite3.connect(db_file)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return sorted({str(v) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"') for v in row
                       if isinstance(v, str)})
    finally:
        conn.close()


def minted(key: str, annotator_id: int, session_version: int, expires: int) -> str:
    """A token signed the way a key-signed login (id.version.expiry.HMAC) would be, with a value as the key."""
    payload = f"{annotator_id}.{session_version}.{expires}"
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(digest).decode().rstrip('=')}"


def test_whoever_reads_the_store_file_cannot_mint_or_reuse_a_login(study, tmp_path):
    store = study["store"]
    store.add_annotator("boss", PASSWORD, admin=True)
    boss = store.annotator("boss")
    assert logged_in(log_in(page(), "boss"))  # a live admin login: its trace is in the store now
    known = store_strings(tmp_path / "harmony.db")
    # each hex value of key length signs a 10-year admin token, as a key kept in the store would
    forged = [minted(v, boss.id, boss.session_version, int(time.time()) + TEN_YEARS_S)
              for v in known if len(v) >= 32 and all(c in "0123456789abcdef" for c in v)]
    assert forged, "the store holds no key-like value to try"
    for token in forged:
        assert not logged_in(page(token)), token
    for value in known:  # nor is any stored value a token itself
        assert store.page_session(value) is None, value


def test_a_version_3_store_is_upgraded_and_its_login_secret_dropped(db_url):
    with Store.open(db_url) as store:
        store.add_annotator("ana", PASSWORD)
        with store.write() as session:  # back to what schema 3 held: a guard per name, a signing secret
            session.execute(text("DROP TABLE harmony_page_session"))
            session.execute(text("DROP TABLE harmony_login_guard"))
            session.execute(text("CREATE TABLE harmony_login_guard (name VARCHAR(150) PRIMARY KEY, attempts "
                                 "INTEGER, last_attempt_at FLOAT, locked BOOLEAN)"))
            session.execute(text("INSERT INTO harmony_login_guard VALUES ('ana', 10, 1.0, TRUE)"))
            session.add(Meta(key="secret.page-login", value="ab" * 32))
            session.execute(update(Meta).where(Meta.key == "schema_version").values(value="3"))
    with Store.open(db_url, create=False) as store:
        assert store.login("ana", PASSWORD, client=OWNER, now=1.0).annotator.name == "ana"
        token = store.start_page_session(store.annotator("ana").id, 0)
        assert store.page_session(token).name == "ana"
        with store.read() as session:
            assert session.get(Meta, "schema_version").value == str(SCHEMA_VERSION)
            assert session.get(Meta, "secret.page-login") is None


# item 6: guesses cannot lock the owner out, and invented names cannot fill the store ----------------------

@pytest.fixture
def accounts_store(db_url):
    with Store.open(db_url) as store:
        store.add_annotator("ana", PASSWORD)
        yield store


def test_page_sessions_in_the_store_end_at_log_out_lifetime_and_account_changes(accounts_store):
    store = accounts_store
    ana = store.annotator("ana")
    first, second = (store.start_page_session(ana.id, ana.session_version, now=1000.0) for _ in range(2))
    assert first != second and store.page_session(first, now=1001.0).name == "ana"
    assert store.end_page_session(first) and not store.end_page_session(first)
    assert store.page_session(first, now=1001.0) is None and store.page_session(second, now=1001.0).name == "ana"
    assert store.page_session(second, now=1000.0 + PAGE_SESSION_TTL_S) is None
    store.start_page_session(ana.id, ana.session_version, now=1000.0 + PAGE_SESSION_TTL_S)  # prunes the expired
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(PageSession)) == 1
    third = store.start_page_session(ana.id, ana.session_version)
    store.set_password("ana", "battery staple")
    assert store.page_session(third) is None  # a new password (or deactivation) ends it


def test_guesses_from_one_address_cannot_lock_the_owner_out_from_another(accounts_store):
    store, t = accounts_store, 1000.0
    for _ in range(LOCK_AFTER + 2):
        t += 100  # past every delay
        result = store.login("ana", "wrong", client=GUESSER, now=t)
    assert "locked" in result.message
    assert "locked" in store.login("ana", PASSWORD, client=GUESSER, now=t + 100).message
    owner = store.login("ana", PASSWORD, client=OWNER, now=t + 1)  # at once: no delay or lock shared
    assert owner.annotator is not None and owner.annotator.name == "ana"
    # the guesser's lock is forgotten a window after its last attempt
    assert store.login("ana", PASSWORD, client=GUESSER, now=t + accounts.GUARD_WINDOW_S + 1).annotator is not None


def test_guesses_from_an_unknown_address_delay_but_never_lock(accounts_store):
    store, t = accounts_store, 1000.0
    for _ in range(2 * LOCK_AFTER):
        t += 100  # past every delay
        assert store.login("ana", "wrong", client=None, now=t).message == WRONG
    assert store.login("ana", PASSWORD, client=None, now=t + 100).annotator.name == "ana"


def test_the_page_throttles_by_the_browsers_address(study, monkeypatch):
    from streamlit.runtime.context import ContextProxy

    with study["store"].write() as session:  # "ana" locked for the guesser's address only
        session.add(LoginGuard(name="ana", client=GUESSER, attempts=LOCK_AFTER, locked=True,
                               last_attempt_at=time.time()))
    monkeypatch.setattr(ContextProxy, "ip_address", property(lambda self: GUESSER))
    at = log_in(page(), "ana")
    assert not logged_in(at) and "locked" in at.error[0].value
    monkeypatch.setattr(ContextProxy, "ip_address", property(lambda self: OWNER))
    assert logged_in(log_in(page(), "ana"))


def guard_rows(store: Store) -> int:
    with store.read() as session:
        return session.scalar(select(func.count()).select_from(LoginGuard))


def test_invented_names_keep_the_guard_table_bounded(accounts_store, monkeypatch):
    store = accounts_store
    monkeypatch.setattr(accounts, "MAX_GUARD_ROWS", 4)
    for t in range(3):  # the owner's count, older than the invented names
        store.login("ana", "wrong", client=GUESSER, now=float(t))
    for i in range(8):
        assert store.login(f"nobody-{i}", PASSWORD, client=GUESSER, now=10.0 + i).message == WRONG
    assert guard_rows(store) == 4
    with store.read() as session:  # the least recent went first, the newest stay
        assert sorted(session.scalars(select(LoginGuard.name))) == [f"nobody-{i}" for i in range(4, 8)]


def test_counts_are_forgotten_a_window_after_their_last_attempt(accounts_store):
    store = accounts_store
    for i in range(5):
        store.login(f"nobody-{i}", PASSWORD, client=GUESSER, now=1.0)
    later = 1.0 + accounts.GUARD_WINDOW_S + 1
    assert store.login("ana", PASSWORD, client=GUESSER, now=later).annotator.name == "ana"
    assert guard_rows(store) == 1
