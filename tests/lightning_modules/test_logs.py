"""lightning_modules/logs.py: progress lines at most every few seconds, and Lightning without its noise."""
from __future__ import annotations

import io
import logging
import warnings

import pytest

from lightning_modules.logs import LIGHTNING_LOGGERS, ProgressLines, minutes, quiet_lightning


@pytest.fixture
def root_prints():
    """A handler on the root logger, as Hydra's job logging installs: what a log file receives."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def _build_trainer():
    import lightning.pytorch as pl

    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False)


@pytest.fixture
def lightning_prints():
    """What Lightning's own console handlers (on its package loggers, added at import) print."""
    import lightning  # noqa: F401 (its import adds the handlers)

    stream = io.StringIO()
    handlers = [h for name in LIGHTNING_LOGGERS for h in logging.getLogger(name).handlers
                if type(h) is logging.StreamHandler]
    assert handlers, "lightning no longer adds its own console handler: quiet_lightning need not detach it"
    saved = [h.setStream(stream) for h in handlers]
    yield stream
    for handler, original in zip(handlers, saved):
        handler.setStream(original)


def test_inside_quiet_lightning_each_record_appears_once_and_the_tip_not_at_all(root_prints, lightning_prints):
    with quiet_lightning():
        _build_trainer()
    printed = root_prints.getvalue() + lightning_prints.getvalue()
    assert printed.count("GPU available") == 1, printed
    assert "Tip" not in printed and "litlogger" not in printed
    # and what the context changed comes back: outside it, Lightning's own handler prints again (a second
    # copy where its logger also propagates to root)
    _build_trainer()
    again = lightning_prints.getvalue()
    assert again.count("GPU available") == 1 and "Tip" in again, again


def test_quiet_lightning_ignores_the_leafspec_deprecation_only():
    from lightning.pytorch.utilities.combined_loader import CombinedLoader

    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        CombinedLoader([[1, 2]])
    assert any("LeafSpec" in str(w.message) for w in outside), "torch no longer warns: drop the filter"
    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        with quiet_lightning():
            CombinedLoader([[1, 2]])
            warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in inside] == ["something else is deprecated"]


def test_progress_lines_come_at_most_every_few_seconds(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("lightning_modules.logs.time.monotonic", lambda: now[0])
    lines = ProgressLines(logging.getLogger("test"), every_seconds=5)
    assert not lines.due()
    now[0] += 4.9
    assert not lines.due()
    now[0] += 0.2
    assert lines.due()
    lines.log("step %d", 1)
    assert not lines.due() and lines.elapsed() == pytest.approx(5.1)


def test_minutes_reads_as_a_person_would():
    assert minutes(40) == "40 s" and minutes(89) == "89 s" and minutes(200) == "about 3 min"
