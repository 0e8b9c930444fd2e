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
SCHEMA_NEWER = (
    "This database was migrated by a newer Lessonbot ({revisions}): run that version, or restore a backup made before "
    "the upgrade."
)


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
    `lessonbot db upgrade`, since other processes may run an older version of the code against it. A database a
    newer Lessonbot migrated (revisions this code has no migration for) is said to be so, and left alone.
    """
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from storage import migrate

    url = settings.resolved_database_url
    try:
        applied = migrate.applied_revisions(url)
        if applied == migrate.head_revisions():
            return True
        if newer := newer_schema(applied):  # ahead of this code, not behind: no upgrade brings it here
            print(newer, file=sys.stderr)
            return False
        if not settings.database_url:
            migrate.upgrade(url)
            return True
    except CommandError as exc:
        print(schema_problem(exc), file=sys.stderr)
        return False
    except (SQLAlchemyError, OSError) as exc:
        print(cannot_open(settings, exc), file=sys.stderr)
        return False
    print(SCHEMA_NOT_CURRENT, file=sys.stderr)
    return False


def newer_schema(applied: frozenset[str]) -> str | None:
    """What to say of a database holding revisions this code has no migration for (a newer Lessonbot's), or None
    when it knows them all."""
    from alembic.script import ScriptDirectory

    from storage import migrate

    known = {script.revision for script in ScriptDirectory(str(migrate.MIGRATIONS)).walk_revisions()}
    unknown = sorted(applied - known)
    if not unknown:
        return None
    return SCHEMA_NEWER.format(revisions=f"revision{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")


def schema_problem(exc: Exception) -> str:
    """One line for a schema Alembic cannot work with (a revision it cannot find, a broken history): the database was
    reached; its schema is the trouble."""
    return (
        f"The database schema cannot be brought up to date: {_reason(exc)}. If another version of Lessonbot migrated "
        "it, run that version, or restore a backup."
    )


def cannot_open(settings: Settings, exc: Exception) -> str:
    """One line for a database that cannot be opened: which one (without its password), why, and what to check."""
    url = settings.resolved_database_url
    reason = _reason(exc)
    return f"Cannot open the database {_shown(url)}: {reason}. {_what_to_check(settings, reason)}"


def refused_midway(settings: Settings, exc: Exception) -> str:
    """One line for a database that opened, then failed a command's statement (a read-only replica, a lock held past
    the wait, the server gone): what it said, that the command's transaction was rolled back, and what to check."""
    url = settings.resolved_database_url
    reason = _reason(exc)
    if "read-only" in reason or "read only" in reason or "readonly" in reason:
        check = ("DATABASE_URL names a database this user may only read (a replica, or read-only transactions): "
                 "point it at the primary.")
    else:
        check = _what_to_check(settings, reason)
    return (f"The database {_shown(url)} refused the command: {reason}. What it had not finished was rolled back. "
            f"{check}")


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # (the setting's check refuses such a URL; never a traceback in a message)
        return f"{url.split(':', 1)[0]}:…"


def _reason(exc: Exception) -> str:
    """The driver's own first line (`… failed: Connection refused`), not SQLAlchemy's wrapper around it."""
    from sqlalchemy.exc import DBAPIError

    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    first = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(exc).__name__)
    return first.removeprefix("connection failed: ")


def _what_to_check(settings: Settings, reason: str) -> str:
    if "database is locked" in reason or "database is busy" in reason:  # SQLite: another process is writing
        return ("Another process is writing to it (a running `lessonbot serve`, or a long import): try again in a "
                "moment, or put the bot on PostgreSQL (DATABASE_URL) to run several processes at once.")
    if settings.database_url:
        return "Check DATABASE_URL (postgresql://user:password@host:5432/name) and that the server is up."
    return f"Check that DATA_DIR ({settings.data_dir}) is a folder this user may write to."
