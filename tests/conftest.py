"""Shared fixtures: a migrated database on SQLite and on PostgreSQL, settings pointing at it, a running Lessonbot.

PostgreSQL is the local server (LESSONBOT_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres):
each test session creates its own database and drops it at the end. Without a server the PostgreSQL cases are
skipped, unless LESSONBOT_REQUIRE_ALL_TESTS=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.processes import DEFAULT_POSTGRES_ADMIN_URL, DatabaseUnreachable, postgres_database
from bot.config import Settings, load_settings
from storage.db import make_sync_engine
from storage.migrate import upgrade
from storage.schema import metadata

POSTGRES_ADMIN_URL = os.environ.get("LESSONBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)
REQUIRE_ALL = os.environ.get("LESSONBOT_REQUIRE_ALL_TESTS") == "1"
FIXTURES = Path(__file__).resolve().parent / "fixtures"  # real platform payloads, a slice of SQuAD (README there)


def missing(reason: str) -> None:
    """Skip for lack of an outside service or tool, or fail where the run must be complete (CI)."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (LESSONBOT_REQUIRE_ALL_TESTS=1)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgresql_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    with ExitStack() as scratch:
        try:
            url = scratch.enter_context(postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_test"))
        except DatabaseUnreachable as exc:
            missing(str(exc))
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'lessonbot.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database that nobody has migrated yet, on each database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'elsewhere' / 'empty.db'}"
        return
    try:
        with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_unmigrated") as url:
            yield url
    except DatabaseUnreachable as exc:
        missing(str(exc))


def _empty_tables(url: str) -> None:
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        for table in reversed(metadata.sorted_tables):
            connection.execute(text(f'DELETE FROM "{table.name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses the database runs once on SQLite and once on PostgreSQL, on empty tables."""
    url = request.getfixturevalue(f"{request.param}_url")
    _empty_tables(url)
    return url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None,
        database_url=database_url,
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-0123456789",
        worker_poll_seconds=0.2,
        outbox_backoff_seconds=0.05,
        log_format="text",
    )


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES
