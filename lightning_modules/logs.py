"""What harmony's long stages print: progress as log lines, and Lightning without its noise.

A log piped to a file reads as a record of the run: each record once, a progress line at most every
:data:`PROGRESS_SECONDS` (so at least one every ~15 s of a stage whose steps take under ~10 s), and
none of Lightning's advertisement or of the deprecation warnings raised inside Lightning.
"""
from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager
from typing import Iterator

PROGRESS_SECONDS = 5.0  # the least time between two progress lines of one stage


class ProgressLines:
    """Progress of a long loop as log lines: :meth:`due` says whether the next line may be written,
    :meth:`log` writes it; lines come at most every ``every_seconds``."""

    def __init__(self, logger: logging.Logger, every_seconds: float = PROGRESS_SECONDS):
        self.logger = logger
        self.every_seconds = float(every_seconds)
        self.started = self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def log(self, message: str, *args) -> None:
        self.logger.info(message, *args)
        self._last = time.monotonic()


def minutes(seconds: float) -> str:
    """``"40 s"``, ``"about 3 min"``: a duration as a person reads it in a log."""
    return f"{seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


class _DropLightningTip(logging.Filter):
    """Lightning logs an advertisement for its cloud logger (a line starting "💡 Tip") on every fit
    without a LitLogger, and no Trainer setting turns it off: drop exactly that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


# The loggers Lightning gives console handlers at import: ``lightning`` always, and ``lightning.pytorch`` and
# ``lightning.fabric`` (then without propagation) when the root logger had no handler yet.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's output, each record once and without its noise, while a Trainer runs inside.

    - Lightning puts its own console handlers on its package loggers at import; where the root
      logger prints already (Hydra's job logging, console and file), each record would appear twice
      or miss the log file: those handlers are detached meanwhile and the records propagate to root.
    - the cloud-logger advertisement is dropped (:class:`_DropLightningTip`).
    - Lightning's CombinedLoader (every fit) builds torch's deprecated ``LeafSpec()``, a FutureWarning
      torch raises inside Lightning that no harmony code can avoid: ignored, that message only.
    """
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS] if logging.getLogger().handlers else []
    saved = [(logger, [h for h in logger.handlers if type(h) is logging.StreamHandler], logger.propagate)
             for logger in loggers]
    for logger, handlers, _ in saved:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    tip = _DropLightningTip()
    rank_zero.addFilter(tip)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        rank_zero.removeFilter(tip)
        for logger, handlers, propagate in saved:
            logger.propagate = propagate
            for handler in handlers:
                logger.addHandler(handler)
