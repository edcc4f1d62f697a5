"""Fixtures of the browser tests."""
from __future__ import annotations

import pytest

from tests.end_to_end.browser.page_server import served_load_study


@pytest.fixture
def load_study_server(request, tmp_path):
    """make_load_study's store behind a page server, with the test module's SESSIONS annotators and EXAMPLES
    examples: its info with ``url`` and ``address``."""
    with served_load_study(tmp_path, request.module.SESSIONS, request.module.EXAMPLES) as info:
        yield info
