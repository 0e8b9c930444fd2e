"""`lessonbot serve` (the web server, the worker and the dispatcher) and `lessonbot dispatch` (the dispatcher alone).

Both stop cleanly on SIGTERM (`docker stop`, systemd, `kill`) as on Ctrl-C: `serve` through uvicorn, which ends the
web chat's open event streams and waits at most GRACEFUL_SHUTDOWN_SECONDS for the other requests; `dispatch` (and
`lessonbot telegram poll`) through `run_until_stopped`. Either way the sends under way finish within the
dispatcher's grace (Slack's notes after an acknowledgement within the same grace, beside them), the clock stops and
the leadership is released, so a standby takes over at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import gc
import logging
import signal
import socket
import sys
from collections.abc import Coroutine, Generator
from typing import TYPE_CHECKING, Any

from bot.cli.numbers import whole

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

    from bot.config import Settings
    from bot.core import Lessonbot
    from storage.db import Database

log = logging.getLogger("lessonbot")

# How long a stopping server waits for the requests under way (a webhook being recorded, a dashboard page) before it
# cancels them. The web chat's event streams, open for as long as their pages are, are ended at once instead; without
# a bound a stopping server would wait for ever on a client that keeps its connection. Well under the 10 s Docker
# and Kubernetes give a process after SIGTERM, with the dispatcher's own grace (5 s) after it.
GRACEFUL_SHUTDOWN_SECONDS = 5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    dispatch.add_argument(
        "--metrics-port", type=whole(least=1, most=65535),
        help="serve /metrics (the delivery metrics are counted here) and /healthz on this port (default: none)",
    )
    dispatch.add_argument("--metrics-host", help="interface for --metrics-port (default: HOST setting, 127.0.0.1)")
    dispatch.set_defaults(func=cmd_dispatch, uses_database=True)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.server import STARTUP_FAILURE

    from bot.app import create_app

    host, port = args.host or settings.host, args.port or settings.port
    try:  # bound before anything starts, so a bad HOST or PORT is one line, not a server started and stopped
        listening = listen(host, port)
    except OSError as exc:
        print(cannot_listen(args, host, port, exc), file=sys.stderr)
        return cannot_listen_status(exc)
    with listening:  # (closed if the app cannot be made; uvicorn closes it too as it stops)
        app = create_app(settings, process=not args.no_worker, dispatch=not args.no_dispatcher)
        keep_startup_objects_out_of_collections()
        log.info("serving on http://%s:%s", host, port)
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        server = server_ending_streams(config, app.state.lessonbot)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[listening])
    return 0 if server.started else STARTUP_FAILURE  # as uvicorn.run: the app did not start


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or OSError: a host name that cannot even be encoded for the resolver (an
    empty label in "ü..x": a TypeError from `bind`) as one the resolver does not know."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except (TypeError, UnicodeError):
        raise socket.gaierror(socket.EAI_NONAME, "not a host name") from None


def cannot_listen(args: argparse.Namespace, host: str, port: int, exc: OSError, *, host_option: str = "--host",
                  port_option: str = "--port") -> str:
    """What a command that serves HTTP says when it cannot listen where told, naming the setting (HOST, PORT) or the
    option (`host_option`, `port_option`: `--metrics-port` for `dispatch`) to change."""
    host_from = host_option if getattr(args, _attribute(host_option), None) else "HOST"
    port_from = port_option if getattr(args, _attribute(port_option), None) else "PORT"
    reason = (exc.strerror or str(exc)).split(" (while attempting to bind", 1)[0]  # (socket.create_server's words)
    problem = f"Cannot serve on {host_from}={host}, {port_from}={port}: {reason[:1].lower()}{reason[1:]}."
    if exc.errno == errno.EADDRINUSE:
        return f"{problem} Stop what listens there, or set {port_from} to a free port."
    if exc.errno == errno.EACCES:
        return f"{problem} Set {port_from} to a port above 1023 (the lower ones are the system's)."
    return f"{problem} Set {host_from} to an address of this machine: 127.0.0.1 for it alone, 0.0.0.0 for all."


def cannot_listen_status(exc: OSError) -> int:
    """The exit status of a command that could not listen: uvicorn's for a port in use (as it said it), 2 else."""
    from uvicorn.server import STARTUP_FAILURE

    return STARTUP_FAILURE if exc.errno == errno.EADDRINUSE else 2


def _attribute(option: str) -> str:
    """Where argparse keeps an option's value: `--metrics-port` in `metrics_port`."""
    return option.lstrip("-").replace("-", "_")


def server_ending_streams(config: uvicorn.Config, lessonbot: Lessonbot) -> uvicorn.Server:
    """A uvicorn server that, as it starts shutting down, ends the web chat's open event streams: it waits for its
    connections to close before it stops the app, and a page keeps its stream open for as long as it is open."""
    import uvicorn

    from channels.webchat import WebChatChannel

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for channel in lessonbot.channels.values():
                if isinstance(channel, WebChatChannel):
                    channel.end_streams()
            await super().shutdown(sockets)

    return Server(config)


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
    """The outbox dispatcher alone, for a topology with separate web workers; with `--metrics-port`, its metrics
    (the delivery ones are counted only where the dispatcher runs) and its health over HTTP."""
    listening: socket.socket | None = None
    if args.metrics_port:
        host = args.metrics_host or settings.host
        try:  # bound before anything starts, so a port in use is one line, not a dispatcher started and stopped
            listening = listen(host, args.metrics_port)
        except OSError as exc:
            print(cannot_listen(args, host, args.metrics_port, exc, host_option="--metrics-host",
                                port_option="--metrics-port"), file=sys.stderr)
            return cannot_listen_status(exc)

    async def main() -> None:
        lessonbot = dispatcher(settings)
        keep_startup_objects_out_of_collections()
        metrics: uvicorn.Server | None = None
        serving: asyncio.Task[None] | None = None
        try:
            if listening is not None:
                metrics = quiet_server(metrics_app(lessonbot.db))
                serving = asyncio.get_running_loop().create_task(metrics.serve(sockets=[listening]), name="metrics")
                log.info("metrics on http://%s:%s/metrics", args.metrics_host or settings.host, args.metrics_port)
            lessonbot.start()
            log.info("dispatcher running for channels: %s", ", ".join(lessonbot.channels) or "none")
            await asyncio.Event().wait()
        finally:
            if metrics is not None and serving is not None:
                metrics.should_exit = True
                await asyncio.gather(serving, return_exceptions=True)
            await lessonbot.stop()

    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while stopping
        run_until_stopped(main())
    return 0


def metrics_app(db: Database) -> Starlette:
    """`GET /metrics` and `GET /healthz` as `lessonbot serve` answers them, for a process that serves nothing else."""
    from prometheus_client import CONTENT_TYPE_LATEST
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from bot.app import exposition, healthz

    async def metrics(request: Request) -> Response:
        return Response(await exposition(db), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


def quiet_server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server run inside a command that handles the signals itself (`run_until_stopped`): it installs no
    handlers of its own and stops when told (`should_exit`)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                 timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS))


def run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)`, stopped by SIGTERM (`docker stop`, systemd, `kill`) as by Ctrl-C: either cancels `main`,
    as Ctrl-C alone did, and its `finally` stops the bot cleanly (the sends under way finish within the dispatcher's
    grace, the clock stops, the leadership is released). A second signal while it stops takes its default course
    (Ctrl-C: KeyboardInterrupt; SIGTERM: the end of the process).

    Without a handler, SIGTERM ends the process at once, leaving a reply being sent claimed (sent again by the next
    dispatcher) and the leadership held until its lease runs out; as PID 1 in a container it is ignored altogether."""
    asyncio.run(_stopped_by_signals(main))


async def _stopped_by_signals(main: Coroutine[Any, Any, None]) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        received.append(signum)
        for each in STOP_SIGNALS:
            loop.remove_signal_handler(each)
        log.info("%s received: stopping", signum.name)
        task.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    try:
        await main
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def keep_startup_objects_out_of_collections() -> None:
    """Move everything made so far (modules, classes, mappers, the app) out of the garbage collector's reach.

    They live as long as the process, yet every full collection would walk them all: about 100 ms of CPU each,
    once every thousand or so messages under load. Frozen, a collection walks only what was made since."""
    gc.collect()
    gc.freeze()
