"""`lessonbot rasa-actions`: the action server a Rasa assistant calls (docs/rasa.md)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from typing import TYPE_CHECKING

from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger("lessonbot")

DEFAULT_PORT = 5055  # where Rasa looks for an action server unless endpoints.yml says otherwise


def register(subparsers: argparse._SubParsersAction) -> None:
    actions = subparsers.add_parser(
        "rasa-actions", help="serve Lessonbot's actions to a Rasa assistant (rasa-sdk's webhook)"
    )
    actions.add_argument("--host", help="interface to bind (default: HOST setting, 127.0.0.1)")
    actions.add_argument("--port", type=whole(least=1, most=65535), default=DEFAULT_PORT,
                         help=f"port (default: {DEFAULT_PORT})")
    actions.add_argument("--no-dispatcher", action="store_true",
                         help="leave sending and the clock to a `lessonbot dispatch` process")
    actions.set_defaults(func=cmd_rasa_actions, uses_database=True)


def cmd_rasa_actions(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.server import STARTUP_FAILURE

    from bot.cli.serve import cannot_listen, cannot_listen_status, listen
    from bot.rasa_actions import create_action_app

    host = args.host or settings.host
    if not settings.rasa_actions_token and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "the action server listens on %s without RASA_ACTIONS_TOKEN: anyone who reaches it can act for any "
            "rasa: learner; set it, and the same token in endpoints.yml's action_endpoint", host
        )
    try:  # bound before anything starts, as `serve` does: a port in use is one line, not an app started and stopped
        listening = listen(host, args.port)
    except OSError as exc:
        print(cannot_listen(args, host, args.port, exc), file=sys.stderr)
        return cannot_listen_status(exc)
    with listening:
        app = create_action_app(settings, dispatch=not args.no_dispatcher)
        log.info("Rasa actions on http://%s:%s/webhook", host, args.port)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=args.port, log_config=None, access_log=False,
                                              lifespan="on"))
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[listening])
    return 0 if server.started else STARTUP_FAILURE
