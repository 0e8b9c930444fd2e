"""The one database a command works with: built from DATABASE_URL, checked before the command runs, disposed of when
the command is done."""

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


def schema_ready(settings: Settings) -> bool:
    """Whether the database can be reached and has the schema this code expects; every command that uses the
    database asks this first (see `main`). If not, one line on stderr says why and what to do.

    The embedded SQLite file (no DATABASE_URL) is this installation's own, so it is brought up to date here instead:
    a first `lessonbot chat` or `serve` just works. A shared database (DATABASE_URL) is only migrated on request,
    `lessonbot db upgrade`, since other processes may run an older version of the code against it.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from storage import migrate

    url = settings.resolved_database_url
    try:
        if migrate.applied_revisions(url) == migrate.head_revisions():
            return True
        if not settings.database_url:
            migrate.upgrade(url)
            return True
    except (SQLAlchemyError, OSError, CommandError) as exc:
        print(cannot_open(settings, exc), file=sys.stderr)
        return False
    print(SCHEMA_NOT_CURRENT, file=sys.stderr)
    return False


def cannot_open(settings: Settings, exc: Exception) -> str:
    """One line for a database that cannot be opened: which one (without its password), why, and what to check."""
    url = settings.resolved_database_url
    return f"Cannot open the database {_shown(url)}: {_reason(exc)}. {_what_to_check(settings)}"


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _reason(exc: Exception) -> str:
    """The driver's own first line (`… failed: Connection refused`), not SQLAlchemy's wrapper around it."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(exc).__name__)
    return first.removeprefix("connection failed: ")


def _what_to_check(settings: Settings) -> str:
    if settings.database_url:
        return "Check DATABASE_URL (postgresql://user:password@host:5432/name) and that the server is up."
    return f"Check that DATA_DIR ({settings.data_dir}) is a folder this user may write to."
