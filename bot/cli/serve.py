"""`lessonbot serve` (the web server, the worker and the dispatcher) and `lessonbot dispatch` (the dispatcher alone)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
from typing import TYPE_CHECKING

from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Lessonbot

log = logging.getLogger("lessonbot")


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the web server (web chat, webhooks), the worker and the dispatcher"
    )
    serve.add_argument("--host", help="interface to bind (default: HOST setting, 127.0.0.1)")
    serve.add_argument("--port", type=whole(least=1, most=65535), help="port (default: PORT setting, 8000)")
    serve.add_argument("--no-worker", action="store_true", help="record and acknowledge only; others process")
    serve.add_argument("--no-dispatcher", action="store_true", help="leave sending to a `lessonbot dispatch` process")
    serve.set_defaults(func=cmd_serve, uses_database=True)

    dispatch = subparsers.add_parser(
        "dispatch", help="run the outbox dispatcher and the clock (lessons, nudges, broadcasts) only"
    )
    dispatch.set_defaults(func=cmd_dispatch, uses_database=True)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bot.app import create_app

    app = create_app(settings, process=not args.no_worker, dispatch=not args.no_dispatcher)
    keep_startup_objects_out_of_collections()
    host, port = args.host or settings.host, args.port or settings.port
    log.info("serving on http://%s:%s", host, port)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    return 0


def dispatcher(settings: Settings, *, elect: bool = True) -> Lessonbot:
    """A bot that only sends and keeps time: the outbox dispatcher and the clock (lessons, nudges, broadcasts), for
    the channels the settings turn on. It processes no message. With `elect`, it works only while elected."""
    from bot.app import build_channels
    from bot.core import Lessonbot, attach_clock
    from storage.db import Database

    db = Database(settings.resolved_database_url)
    lessonbot = Lessonbot(settings, build_channels(settings, db), process=False, dispatch=True, elect=elect, db=db)
    attach_clock(lessonbot)  # lessons, nudges and broadcasts run with the elected dispatcher
    return lessonbot


def cmd_dispatch(settings: Settings, args: argparse.Namespace) -> int:
    """The outbox dispatcher alone, for a topology with separate web workers."""

    async def main() -> None:
        lessonbot = dispatcher(settings)
        keep_startup_objects_out_of_collections()
        lessonbot.start()
        log.info("dispatcher running for channels: %s", ", ".join(lessonbot.channels) or "none")
        try:
            await asyncio.Event().wait()
        finally:
            await lessonbot.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


def keep_startup_objects_out_of_collections() -> None:
    """Move everything made so far (modules, classes, mappers, the app) out of the garbage collector's reach.

    They live as long as the process, yet every full collection would walk them all: about 100 ms of CPU each,
    once every thousand or so messages under load. Frozen, a collection walks only what was made since."""
    gc.collect()
    gc.freeze()
