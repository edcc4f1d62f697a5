"""The page tests' study: tests/webui_study.py's tiny study, made once per test module (argon2 hashing is
slow by design; some tests add images to its folder); each test gets its own copy of the database."""
from __future__ import annotations

import pytest

from tests.webui_study import copied_study, make_study


@pytest.fixture(scope="module")
def study_template(tmp_path_factory):
    """(folder holding harmony.db and images/, make_study's info): copy it, never write to it."""
    folder = tmp_path_factory.mktemp("webui-study")
    return folder, make_study(f"sqlite:///{folder / 'harmony.db'}", folder / "images")


@pytest.fixture
def study(study_template, tmp_path, monkeypatch):
    """A copy of the template study that the page (HARMONY_DB_URL) and the test share: copied_study's info."""
    with copied_study(study_template, tmp_path, monkeypatch) as info:
        yield info
