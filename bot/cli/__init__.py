"""`lessonbot`: the command line. One module per command group, each with a `register` function listed in COMMANDS.

The commands are where the pieces are put together: they read the settings (once, here), build the one database
and the bot a process needs, and call the rooms' plain functions. Imports of heavy libraries stay inside the
command functions, so `lessonbot --help` stays quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError

from bot.cli import (
    admin,
    bench,
    broadcast,
    certificate,
    chat,
    codes,
    course,
    db,
    knowledge,
    learner,
    outbox,
    payments,
    rasa,
    serve,
    simulate,
    telegram,
)
from bot.cli.database import refused_midway, schema_ready
from bot.config import ConfigError, Settings, load_settings
from bot.observability import configure_logging

Command = Callable[[Settings, argparse.Namespace], int]

# Each takes the subparsers object and adds its commands, each command's `func` a Command.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    serve.register,  # serve, dispatch
    chat.register,
    db.register,
    outbox.register,
    bench.register,  # bench pipeline, channels, scheduler
    telegram.register,
    course.register,
    certificate.register,
    knowledge.register,  # ingest, eval knowledge, bench knowledge
    broadcast.register,
    learner.register,  # learner export, learner erase
    payments.register,  # payments list, show, refund
    codes.register,  # codes create, list, disable
    admin.register,  # admin role grant, revoke, list
    rasa.register,  # rasa-actions
    simulate.register,  # simulate reviews, simulate nudges
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lessonbot", description="Lessonbot: a chat-first learning bot.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    parser.set_defaults(uses_database=False)  # a command that does says so: set_defaults(uses_database=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "text" if args.command == "chat" else settings.log_format)
    try:
        if args.uses_database and not schema_ready(settings):
            return 2
        return args.func(settings, args)
    except ConfigError as exc:  # a setting found unusable only once a command used it: one message, no traceback
        print(exc, file=sys.stderr)
        return 2
    except DBAPIError as exc:  # the database opened, then refused a statement: one message, its transaction undone
        print(refused_midway(settings, exc), file=sys.stderr)
        return 1
