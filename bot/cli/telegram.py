"""`lessonbot telegram …`: register the webhook with Telegram, or poll for updates while developing locally.

Like the rest of the command line, `poll` is a place where the pieces are put together, so it builds a Lessonbot
(the core) around the Telegram channel; the channel itself never imports it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from bot.config import Settings
    from channels.telegram import TelegramChannel

# python-telegram-bot takes half a second to import: it is imported when a telegram command runs, not for every
# `lessonbot` command.

NO_TOKEN = "Set TELEGRAM_BOT_TOKEN to the token @BotFather gave you (/newbot), in the environment or .env."
NO_SECRET = (
    "Set TELEGRAM_WEBHOOK_SECRET to a random string of letters, digits, _ and - (e.g. `openssl rand -hex 32`): "
    "Telegram sends it with every update, and Lessonbot refuses updates without it."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    telegram = subparsers.add_parser("telegram", help="Telegram: register the webhook, or poll while developing")
    actions = telegram.add_subparsers(dest="telegram_action", required=True, metavar="ACTION")

    hook = actions.add_parser(
        "set-webhook",
        help="tell Telegram where to send updates (with TELEGRAM_WEBHOOK_SECRET)",
        description="Register the public HTTPS address Telegram posts updates to. A bare origin such as "
        "https://bot.example.com gets the webhook's path, /webhooks/telegram, added.",
    )
    hook.add_argument("url", nargs="?", help="public HTTPS address (default: PUBLIC_BASE_URL)")
    hook.add_argument("--drop-pending", action="store_true", help="discard the updates Telegram is holding")
    hook.set_defaults(func=cmd_set_webhook)

    poll = actions.add_parser(
        "poll",
        help="receive updates by long polling, for local development (deletes the webhook)",
        description="Run the bot against Telegram with no public URL: fetch updates with getUpdates, process them "
        "and send the replies. The webhook is deleted first; run set-webhook again when you are done.",
    )
    poll.set_defaults(func=cmd_poll, uses_database=True)


def webhook_url(given: str) -> str:
    """The full webhook address: HTTPS (Telegram's rule), with /webhooks/telegram added to a bare origin."""
    from channels.telegram import WEBHOOK_PATH

    parts = urlsplit(given.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(
            f"{given!r} is not an https:// address. Telegram delivers updates only over HTTPS (ports 443, 80, 88 or "
            "8443); for a local server use a tunnel such as `cloudflared tunnel --url http://localhost:8000`."
        )
    if parts.path in ("", "/"):
        return f"{parts.scheme}://{parts.netloc}{WEBHOOK_PATH}"
    return given.strip()


def channel_for(settings: Settings) -> TelegramChannel:
    from channels.telegram import TelegramChannel

    return TelegramChannel(
        token=settings.telegram_bot_token,
        webhook_secret=settings.telegram_webhook_secret,
        api_base_url=settings.telegram_api_base_url,
        max_body_bytes=settings.max_body_bytes,
    )


def cmd_set_webhook(settings: Settings, args: argparse.Namespace) -> int:
    from telegram.error import InvalidToken, TelegramError

    from channels.telegram import SECRET_HEADER, TOKEN_REJECTED

    if not settings.telegram_bot_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    if not settings.telegram_webhook_secret:
        print(NO_SECRET, file=sys.stderr)
        return 2
    given = args.url or settings.public_base_url
    if not given:
        print("Give the public address: lessonbot telegram set-webhook https://bot.example.com", file=sys.stderr)
        return 2
    try:
        url = webhook_url(given)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    channel = channel_for(settings)

    async def main() -> None:
        try:
            await channel.set_webhook(url, drop_pending_updates=args.drop_pending)
        finally:
            await channel.close()

    try:
        asyncio.run(main())
    except InvalidToken:
        print(TOKEN_REJECTED, file=sys.stderr)
        return 1
    except TelegramError as exc:
        print(f"Telegram did not register the webhook: {exc.message}", file=sys.stderr)
        return 1
    print(f"Telegram will now POST updates to {url}, with the secret in {SECRET_HEADER}.")
    return 0


def cmd_poll(settings: Settings, args: argparse.Namespace) -> int:
    from bot.cli.serve import run_until_stopped
    from bot.core import Lessonbot
    from channels.telegram.polling import PollingStopped, poll

    if not settings.telegram_bot_token:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    channel = channel_for(settings)

    async def main() -> None:
        lessonbot = Lessonbot(settings, [channel])
        lessonbot.start()
        try:
            await poll(channel, lessonbot)
        finally:
            await lessonbot.stop()
            await channel.close()

    print("Polling Telegram; send your bot a message. Ctrl-C stops.", file=sys.stderr)
    try:
        run_until_stopped(main())  # Ctrl-C or SIGTERM: the replies under way are sent before it stops
    except PollingStopped as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        pass
    return 0
