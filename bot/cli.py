"""`lessonbot`: the command line. Each subcommand is a function below, listed in `build_parser`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable

from bot import bench, bench_channels, bench_scheduler
from bot.config import ConfigError, Settings, load_settings
from bot.observability import configure_logging
from channels import telegram_cli
from dialogs import certificate_cli, course_cli
from knowledge import cli as knowledge_cli
from scheduler import cli as scheduler_cli

log = logging.getLogger("lessonbot")


# serve -------------------------------------------------------------------------------------------------------------


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app

    app = create_app(settings, process=not args.no_worker, dispatch=not args.no_dispatcher)
    host, port = args.host or settings.host, args.port or settings.port
    log.info("serving on http://%s:%s", host, port)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    return 0


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    """The outbox dispatcher alone, for a topology with separate web workers."""
    from bot.app import build_channels
    from bot.core import Lessonbot
    from scheduler.clock import attach_clock
    from storage.db import Database

    async def main() -> None:
        db = Database(settings.resolved_database_url)
        lessonbot = Lessonbot(settings, build_channels(settings, db), process=False, dispatch=True, elect=True, db=db)
        attach_clock(lessonbot)  # lessons, nudges and broadcasts run with the elected dispatcher
        lessonbot.start()
        log.info("dispatcher running for channels: %s", ", ".join(lessonbot.channels) or "none")
        try:
            await asyncio.Event().wait()
        finally:
            await lessonbot.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    return 0


# chat --------------------------------------------------------------------------------------------------------------


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core import Lessonbot
    from channels.console import ConsoleChannel

    console = ConsoleChannel(args.user)
    interactive = sys.stdin.isatty()

    async def main() -> None:
        lessonbot = Lessonbot(settings, [console])
        try:
            if interactive:
                print(f"Chatting as {args.user}. Type a message; /help lists commands; Ctrl-D quits.")
            while True:
                if interactive:
                    print("you> ", end="", flush=True)
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    break
                if not line.strip():
                    continue
                await lessonbot.receive(console.inbound(line))
                await lessonbot.settle()
        finally:
            await lessonbot.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print()
    return 0


# db ----------------------------------------------------------------------------------------------------------------


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from storage import migrate

    url = settings.resolved_database_url
    if args.action == "upgrade":
        migrate.upgrade(url)
        print(f"Database is at schema {', '.join(sorted(migrate.head_revisions()))}.")
    elif args.action == "revision":
        if not args.message:
            print("Give the new migration a name: lessonbot db revision -m 'what changed'", file=sys.stderr)
            return 2
        migrate.make_revision(url, args.message)
    else:
        from storage.db import Database

        async def show() -> frozenset[str]:
            db = Database(url)
            try:
                return await migrate.current_revisions(db.engine)
            finally:
                await db.dispose()

        current, expected = asyncio.run(show()), migrate.head_revisions()
        print(f"current: {', '.join(sorted(current)) or 'empty'}; code expects: {', '.join(sorted(expected))}")
        return 0 if current == expected else 1
    return 0


# outbox ------------------------------------------------------------------------------------------------------------


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from storage.db import Database
    from storage.outbox import dead_letters, outbox_counts, requeue

    async def main() -> int:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as session:
                if args.action == "requeue":
                    if not args.ids and not args.all:
                        print("Name the replies to retry (lessonbot outbox requeue 12 13) or use --all.", file=sys.stderr)
                        return 2
                    count = await requeue(session, None if args.all else args.ids)
                    print(f"Requeued {count} failed {'reply' if count == 1 else 'replies'}.")
                    return 0
                if args.failed:
                    rows = await dead_letters(session, limit=args.limit)
                    if not rows:
                        print("No failed replies.")
                    for row in rows:
                        print(
                            f"{row.id}\t{row.channel}:{row.chat_id}\ttries={row.attempts}\t"
                            f"{row.created_at:%Y-%m-%d %H:%M:%S}\t{row.last_error or ''}"
                        )
                    return 0
                counts = await outbox_counts(session)
                print("  ".join(f"{status}={count}" for status, count in counts.items()))
                return 0
        finally:
            await db.dispose()

    return asyncio.run(main())


# the parser --------------------------------------------------------------------------------------------------------

Command = Callable[[Settings, argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lessonbot", description="Lessonbot: a chat-first learning bot.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the web server (web chat, webhooks), the worker and the dispatcher")
    serve.add_argument("--host", help="interface to bind (default: HOST setting, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PORT setting, 8000)")
    serve.add_argument("--no-worker", action="store_true", help="record and acknowledge only; others process")
    serve.add_argument("--no-dispatcher", action="store_true", help="leave sending to a `lessonbot dispatch` process")
    serve.set_defaults(func=cmd_serve)

    dispatch = sub.add_parser("dispatch", help="run only the outbox dispatcher")
    dispatch.set_defaults(func=cmd_dispatch)

    chat = sub.add_parser("chat", help="talk to the bot in this terminal (or pipe lines into it)")
    chat.add_argument("--user", default=getpass.getuser(), help="who you are in the conversation (default: $USER)")
    chat.set_defaults(func=cmd_chat)

    db = sub.add_parser("db", help="database schema: upgrade, current, revision")
    db.add_argument("action", choices=["upgrade", "current", "revision"])
    db.add_argument("-m", "--message", help="name of a new migration (with `revision`)")
    db.set_defaults(func=cmd_db)

    outbox = sub.add_parser("outbox", help="replies waiting or failed; requeue failed ones")
    outbox.add_argument("action", nargs="?", choices=["requeue"], help="put failed replies back in line")
    outbox.add_argument("ids", nargs="*", type=int, help="outbox ids to requeue")
    outbox.add_argument("--all", action="store_true", help="requeue every failed reply")
    outbox.add_argument("--failed", action="store_true", help="list the replies that could not be delivered")
    outbox.add_argument("--limit", type=int, default=50, help="how many failed replies to list")
    outbox.set_defaults(func=cmd_outbox)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Subcommands that live with their room register themselves here: each takes the subparsers object.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    bench.register,
    bench_channels.register,
    telegram_cli.register,
    course_cli.register,
    certificate_cli.register,
    knowledge_cli.register,
    scheduler_cli.register,
    bench_scheduler.register,
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "text" if args.command == "chat" else settings.log_format)
    return args.func(settings, args)


if __name__ == "__main__":
    sys.exit(main())
