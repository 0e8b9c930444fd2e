"""The one database a command works with: built from DATABASE_URL, disposed of when the command is done."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from storage.db import Database

SCHEMA_NOT_CURRENT = "The database schema is not up to date: run `lessonbot db upgrade` first."


@asynccontextmanager
async def database(settings: Settings, *, pool_size: int = 20) -> AsyncIterator[Database]:
    from storage.db import Database

    db = Database(settings.resolved_database_url, pool_size=pool_size)
    try:
        yield db
    finally:
        await db.dispose()


async def schema_is_current(db: Database) -> bool:
    """Whether the database has the schema this code expects; if not, says how to bring it there (on stderr)."""
    from storage import migrate

    if await migrate.current_revisions(db.engine) == migrate.head_revisions():
        return True
    print(SCHEMA_NOT_CURRENT, file=sys.stderr)
    return False
