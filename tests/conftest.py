"""Shared fixtures: databases (SQLite always, PostgreSQL when HARMONY_TEST_PG_URL is set),
the synthetic data module and the trained default backbone (trained once, cached)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
LEGACY_DB = SHARED / "data" / "harmony_study_2024.sqlite3"
# Generated splits and the auto-trained base model persist here between local runs
# (git-ignored); a fresh clone builds them once per test session.
TEST_CACHE = Path(os.environ.get("HARMONY_TEST_CACHE", REPO / "outputs" / "test-cache"))


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
    from lightning_modules.data import SyntheticDataModule

    dm = SyntheticDataModule(cache_dir=TEST_CACHE / "cache")
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def trained_tiny(synthetic_dm):
    """The default ``tiny`` backbone with ``weights=auto`` (trained once, then loaded from TEST_CACHE)."""
    from lightning_modules.backbones import TinyCNN, build_backbone

    return build_backbone(TinyCNN(num_classes=8), name="tiny", weights="auto", gradcam_layer="features.20",
                          datamodule=synthetic_dm, cache_dir=TEST_CACHE / "models")


@pytest.fixture
def outputs_overrides(tmp_path) -> list[str]:
    """Hydra overrides that send a command's outputs to tmp but reuse the test cache."""
    return [f"paths.outputs={tmp_path / 'outputs'}", f"paths.cache={TEST_CACHE / 'cache'}",
            f"paths.models={TEST_CACHE / 'models'}"]
