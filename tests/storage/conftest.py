"""What the storage tests share: a database made by the migrations, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.processes import DatabaseUnreachable, postgres_database
from storage.migrate import upgrade
from tests.conftest import POSTGRES_ADMIN_URL, missing


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new database upgraded to the latest migration (a test may downgrade it, write rows the old way
    and upgrade it again); PostgreSQL's is dropped afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lessonbot.db'}"
        upgrade(url)
        yield url
        return
    try:
        with postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_migrated") as url:
            upgrade(url)
            yield url
    except DatabaseUnreachable as exc:
        missing(str(exc))
