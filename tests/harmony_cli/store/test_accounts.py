"""Login through the store's throttle (Store.login / authenticate) at its edges: the failure that
locks, a success resetting the count, accounts that may not log in, names that cannot exist."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from harmony_cli.store import Store
from harmony_cli.store.accounts import FREE_ATTEMPTS, LOCK_AFTER, WRONG
from harmony_cli.store.models import LoginGuard

PASSWORD = "correct horse"
GUESSER = "203.0.113.9"


@pytest.fixture
def store(sqlite_url):
    with Store.open(sqlite_url) as store:
        store.add_annotator("ana", PASSWORD)
        yield store


def guard(store: Store, name: str, client: str = "") -> tuple[int, bool]:
    with store.read() as session:
        row = session.get(LoginGuard, (name, client))
        return row.attempts, row.locked


def test_login_locks_with_the_failure_that_reaches_lock_after(store):
    t = 0.0
    for _ in range(LOCK_AFTER - 1):
        t += 100  # past every delay
        assert store.login("ana", "wrong", client=GUESSER, now=t).message == WRONG
    assert guard(store, "ana", GUESSER) == (LOCK_AFTER - 1, False)
    assert store.login("ana", "wrong", client=GUESSER, now=t + 100).message == WRONG  # this failure locks
    assert guard(store, "ana", GUESSER) == (LOCK_AFTER, True)
    assert "locked" in store.login("ana", PASSWORD, client=GUESSER, now=t + 1000).message


def test_login_success_resets_the_failed_count(store):
    for _ in range(FREE_ATTEMPTS - 1):
        store.login("ana", "wrong", now=10.0)
    result = store.login("ana", PASSWORD, now=10.0)
    assert result.annotator.name == "ana" and result.message is None
    assert guard(store, "ana") == (0, False)
    answers = [store.login("ana", "wrong", now=20.0).message for _ in range(FREE_ATTEMPTS + 1)]
    assert answers[:FREE_ATTEMPTS] == [WRONG] * FREE_ATTEMPTS  # free again after the success
    assert answers[FREE_ATTEMPTS].startswith("Too many failed logins")


def test_login_refuses_inactive_accounts_and_unknown_names_alike_and_counts_them(store):
    store.set_active("ana", False)
    assert store.login("ana", PASSWORD).message == WRONG  # now=None: the clock, as authenticate's
    assert store.authenticate("ana", PASSWORD) is None
    assert guard(store, "ana")[0] == 2
    assert store.login("nobody", PASSWORD, now=1.0).message == WRONG and guard(store, "nobody") == (1, False)
    store.set_active("ana", True)
    assert store.authenticate("ana", PASSWORD).name == "ana"  # now=None: the clock, long after


def test_login_with_a_name_that_cannot_exist_is_wrong_and_leaves_no_trace(store):
    for name in ("", "   ", "a\x00b", "x" * 151):
        assert store.login(name, PASSWORD, now=1.0).message == WRONG
        assert store.authenticate(name, PASSWORD) is None
    with store.read() as session:
        assert session.scalar(select(func.count()).select_from(LoginGuard)) == 0
