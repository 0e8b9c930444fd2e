"""`lessonbot db upgrade|current|revision`: the database schema (Alembic migrations)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Literal

from bot.cli.database import _reason, _shown, cannot_open, database, newer_schema, schema_problem

if TYPE_CHECKING:
    from bot.config import Settings

WAITING = "Waiting for another upgrade to finish (another process is upgrading this database)…"

# PostgreSQL's SQLSTATE classes of a database that cannot be reached or entered: connection exceptions, invalid
# authorization, no such database, too many connections or out of resources, the server shutting down or failing
_CONNECTION_CLASSES = ("08", "28", "3D", "53", "57", "58", "XX")
# … and of a schema that conflicts with a migration: syntax or access rule (a table that exists already, one
# missing), data or integrity (rows a new constraint refuses)
_SCHEMA_CLASSES = ("42", "23", "22", "44")


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="database schema: upgrade, current, revision")
    db.add_argument("action", choices=["upgrade", "current", "revision"])
    db.add_argument("-m", "--message", help="name of a new migration (with `revision`)")
    db.set_defaults(func=cmd_db)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _schema_action(settings, args)
    except CommandError as exc:  # the database answered; Alembic cannot work with the schema it holds
        print(schema_problem(exc), file=sys.stderr)
        return 2
    except (SQLAlchemyError, OSError) as exc:
        print(database_problem(settings, exc), file=sys.stderr)
        return 2


def _schema_action(settings: Settings, args: argparse.Namespace) -> int:
    from storage import migrate

    url = settings.resolved_database_url
    if args.action == "upgrade":
        # What the database holds is read first, without the upgrade lock: a database already current needs no turn.
        applied = migrate.applied_revisions(url)
        if newer := newer_schema(applied):
            print(newer, file=sys.stderr)
            return 2
        heads = ", ".join(sorted(migrate.head_revisions()))
        if applied == migrate.head_revisions():
            print(f"Database is at schema {heads} already: nothing to do.")
            return 0
        migrate.upgrade(url, on_wait=lambda: print(WAITING, file=sys.stderr, flush=True))
        print(f"Database is at schema {heads}.")
    elif args.action == "revision":
        if not args.message:
            print("Give the new migration a name: lessonbot db revision -m 'what changed'", file=sys.stderr)
            return 2
        migrate.make_revision(url, args.message)
    else:
        if missing := _sqlite_file_missing(url):
            print(f"No database yet at {missing}: `lessonbot db upgrade` makes it.")
            return 1

        async def show() -> frozenset[str]:
            async with database(settings) as db:
                return await migrate.current_revisions(db.engine)

        current, expected = asyncio.run(show()), migrate.head_revisions()
        print(f"current: {', '.join(sorted(current)) or 'empty'}; code expects: {', '.join(sorted(expected))}")
        if newer := newer_schema(current):
            print(newer, file=sys.stderr)
        return 0 if current == expected else 1
    return 0


def _sqlite_file_missing(url: str) -> str | None:
    """The path of a SQLite file the URL names that does not exist yet (opening it would make an empty one), else
    None."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return None if Path(parsed.database).exists() else parsed.database


def database_problem(settings: Settings, exc: Exception) -> str:
    """One line for a database error, with the advice that fits it: a database out of reach (check the URL and the
    server), a user without the rights to change the schema, a schema that conflicts with the migrations."""
    url = settings.resolved_database_url
    kind = _kind(exc)
    if kind == "privilege":
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return (f"Cannot write to the database {_shown(url)}: {_reason(exc)}. Let this user write to "
                    f"{parsed.database} and to its folder (SQLite writes a journal beside the file).")
        user = parsed.username or "this user"
        return (f"The database user {user} may not change the schema of {_shown(url)}: {_reason(exc)}. Run "
                "`lessonbot db upgrade` with a DATABASE_URL naming the database's owner, or have the owner give "
                f"{user} the rights (ALTER DATABASE {parsed.database or 'NAME'} OWNER TO {user}; or GRANT CREATE ON "
                f"SCHEMA public TO {user}).")
    if kind == "schema":
        return (f"The database {_shown(url)} holds a schema that conflicts with Lessonbot's migrations: "
                f"{_reason(exc)}. Tables not made by `lessonbot db upgrade` are in the way (another application's, "
                "or made by hand): give Lessonbot a database of its own (DATABASE_URL), or restore a backup.")
    if kind == "other":
        return (f"The schema upgrade of {_shown(url)} failed: {_reason(exc)}. Run `lessonbot db upgrade` again; if it "
                "fails the same way, the database server's log says more.")
    return cannot_open(settings, exc)


def _kind(exc: Exception) -> Literal["connection", "privilege", "schema", "other"]:
    """What kind of trouble a database error is, by its code: PostgreSQL's SQLSTATE, SQLite's result code."""
    from sqlalchemy.exc import DBAPIError

    orig = exc.orig if isinstance(exc, DBAPIError) else None
    if orig is None:  # no answer of the database at all: a file that cannot be made, a pool that timed out
        return "connection"
    sqlite = getattr(orig, "sqlite_errorname", None)
    if sqlite is not None:
        if sqlite.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
            return "privilege"
        if sqlite.startswith(("SQLITE_ERROR", "SQLITE_CONSTRAINT")):  # SQL refused: a table there already, or missing
            return "schema"
        return "connection"  # cannot open, busy, not a database, an I/O error
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if not code:  # psycopg gives none for a failed connection: a server out of reach, a role or database missing
        return "connection"
    if code == "42501":  # insufficient_privilege: "permission denied for schema public"
        return "privilege"
    if code.startswith(_CONNECTION_CLASSES):
        return "connection"
    if code.startswith(_SCHEMA_CLASSES):
        return "schema"
    return "other"
