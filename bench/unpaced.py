"""`lessonbot serve` with the platforms' rate limits out of the way, for measuring what the bot itself can turn over.

Each channel paces its sends to its platform's published limits (Telegram ~30 messages/s and 1/s in one chat,
Twilio 80/s per sender, Slack 1/s per channel). Against a stand-in those limits would be all a throughput bench
measures, so here every channel says it has none, as the bare python-telegram-bot application has none; everything
else is `lessonbot serve` as it runs:

    python -m bench.unpaced serve --port 8001
"""

from __future__ import annotations

import sys

from bot.channel import RateLimit


def no_limits(self: object, chat_id: str) -> tuple[RateLimit, ...]:
    return ()


def unpace() -> None:
    """Every platform channel's `rate_limits` answers: none."""
    from channels.slack import SlackChannel
    from channels.telegram import TelegramChannel
    from channels.whatsapp import WhatsAppChannel

    for channel in (TelegramChannel, WhatsAppChannel, SlackChannel):
        channel.rate_limits = no_limits  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    from bot.cli import main as lessonbot

    unpace()
    return lessonbot(argv)


if __name__ == "__main__":
    sys.exit(main())
