"""Session-wide fixtures: databases (SQLite always, PostgreSQL when HARMONY_TEST_PG_URL is set),
the synthetic data module, the trained default backbone (trained once, cached) and its weights file,
and the overrides of a fine-tuning run that takes seconds. A folder's own fixtures live in its conftest.py.

``HARMONY_TEST_BASE_SEED`` (default 0) picks the seed the base model trains with: a test that
uses it asserts what holds for any model reaching the documented accuracy, and running the
suite under a few seeds (each with its own ``HARMONY_TEST_CACHE``) shows it."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
LEGACY_DB = SHARED / "data" / "harmony_study_2024.sqlite3"
# Generated splits and the auto-trained base model persist here between local runs
# (git-ignored); a fresh clone builds them once per test session.
TEST_CACHE = Path(os.environ.get("HARMONY_TEST_CACHE", REPO / "outputs" / "test-cache"))


def _base_seed() -> int:
    value = os.environ.get("HARMONY_TEST_BASE_SEED", "0")
    try:
        return int(value)
    except ValueError:
        raise pytest.UsageError(f"HARMONY_TEST_BASE_SEED={value!r} is not an integer: give the seed the "
                                f"test base model trains with, e.g. HARMONY_TEST_BASE_SEED=1") from None


BASE_SEED = _base_seed()
# The overrides that make a command read the test cache and the session's base model (trained_tiny),
# trained by the recipe even for the seed whose weights ship with harmony: the tests check the recipe.
CACHE_OVERRIDES = [f"paths.cache={TEST_CACHE / 'cache'}", f"paths.models={TEST_CACHE / 'models'}",
                   f"backbone.auto.seed={BASE_SEED}", "backbone.auto.shipped=false"]


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine

    from harmony_cli.store.models import Base

    engine = create_engine(url)
    Base.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'harmony.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty store URL on each backend (PostgreSQL only where HARMONY_TEST_PG_URL is set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'harmony.db'}"  # a generator fixture must yield, not return
        return
    url = os.environ.get("HARMONY_TEST_PG_URL")
    if not url:
        pytest.skip("HARMONY_TEST_PG_URL is not set: no PostgreSQL server to test against (.ci/run starts one)")
    _reset_pg(url)
    yield url
    _reset_pg(url)


@pytest.fixture(scope="session")
def legacy_db() -> Path:
    """The published study's label database from ../shared (absent in a user's clone)."""
    if not LEGACY_DB.is_file():
        pytest.skip(f"{LEGACY_DB} is absent: the published study's database lives beside the project in CI only")
    return LEGACY_DB


@pytest.fixture(scope="session")
def synthetic_dm():
    """The default synthetic data module (splits cached under TEST_CACHE)."""
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    dm = instantiate(compose_config(CACHE_OVERRIDES).data)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def trained_tiny(synthetic_dm):
    """The default ``tiny`` backbone with ``weights=auto``, built from conf/ as a command builds it (one
    recipe, so one cached model whichever test first needs it; trained once, then loaded from TEST_CACHE)."""
    from hydra.utils import instantiate

    from harmony_cli.hydra_app import compose_config

    return instantiate(compose_config(CACHE_OVERRIDES).backbone, datamodule=synthetic_dm)


@pytest.fixture
def outputs_overrides(tmp_path) -> list[str]:
    """Hydra overrides that send a command's outputs to tmp but reuse the test cache."""
    return [f"paths.outputs={tmp_path / 'outputs'}", *CACHE_OVERRIDES]


@pytest.fixture(scope="session")
def tiny_weights(trained_tiny, tmp_path_factory) -> Path:
    """The session's trained ``tiny`` base model as a weights file (backbone.weights=<file>)."""
    import torch  # here, not at the top: the session-wide fixtures load torch only where a test needs it

    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    torch.save(trained_tiny.state_dict(), path)
    return path


@pytest.fixture
def small_run(outputs_overrides, tiny_weights) -> list[str]:
    """Overrides of a fine-tuning run that takes seconds."""
    return [*outputs_overrides, f"backbone.weights={tiny_weights}", "data.train_size=256", "data.val_size=64",
            "data.test_size=64", "finetune.batch_size=16", "finetune.val_size=32", "finetune.val_batch_size=32",
            "finetune.plot_images=4", "trainer.val_check_interval=2", "trainer.max_steps=4",
            "trainer.enable_progress_bar=false"]


@contextlib.contextmanager
def restored_root_log_handlers():
    """A command run in-process (Hydra's job logging) leaves its console handler on the root logger, writing to
    a stream that may close (a test's captured stdout): the handlers added inside are removed on the way out."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in before and type(h).__module__ == "logging"]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


@pytest.fixture(autouse=True)
def root_log_handlers_restored():
    """Each test's leftover root handlers go before a later test logs into a closed stream."""
    with restored_root_log_handlers():
        yield
