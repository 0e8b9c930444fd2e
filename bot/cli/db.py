"""`lessonbot db upgrade|current|revision`: the database schema (Alembic migrations)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli.database import cannot_open, database, newer_schema, schema_problem

if TYPE_CHECKING:
    from bot.config import Settings


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
        print(cannot_open(settings, exc), file=sys.stderr)
        return 2


def _schema_action(settings: Settings, args: argparse.Namespace) -> int:
    from storage import migrate

    url = settings.resolved_database_url
    if args.action == "upgrade":
        if newer := newer_schema(migrate.applied_revisions(url)):
            print(newer, file=sys.stderr)
            return 2
        migrate.upgrade(url)
        print(f"Database is at schema {', '.join(sorted(migrate.head_revisions()))}.")
    elif args.action == "revision":
        if not args.message:
            print("Give the new migration a name: lessonbot db revision -m 'what changed'", file=sys.stderr)
            return 2
        migrate.make_revision(url, args.message)
    else:

        async def show() -> frozenset[str]:
            async with database(settings) as db:
                return await migrate.current_revisions(db.engine)

        current, expected = asyncio.run(show()), migrate.head_revisions()
        print(f"current: {', '.join(sorted(current)) or 'empty'}; code expects: {', '.join(sorted(expected))}")
        if newer := newer_schema(current):
            print(newer, file=sys.stderr)
        return 0 if current == expected else 1
    return 0
