"""Long polling (getUpdates) for local development: a real bot with no public URL, through the webhook's own path.

Telegram offers an update by getUpdates until a later call's `offset` passes it, so an update is confirmed only
after it is recorded (or deliberately ignored): a crash or a database error in between brings it back, and the
update_id recognises it if it was recorded already. Telegram refuses getUpdates while a webhook is set, so polling
deletes the webhook first (pending updates are kept).
"""

from __future__ import annotations

import asyncio
import logging

from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from bot.channel import ChannelHost
from channels.telegram.channel import ALLOWED_UPDATES, TOKEN_REJECTED, TelegramChannel, retry_after_seconds

log = logging.getLogger(__name__)

MAX_PAUSE_SECONDS = 30.0


class PollingStopped(Exception):
    """Polling cannot go on: the message says what to change (the token, or another consumer of the updates)."""


async def poll(channel: TelegramChannel, host: ChannelHost, *, timeout: int = 30) -> None:
    """Receive updates until cancelled. `timeout` is how long Telegram holds each getUpdates open when idle."""
    try:
        bot = await channel.ready()
        await bot.delete_webhook(drop_pending_updates=False)
    except InvalidToken:
        raise PollingStopped(TOKEN_REJECTED) from None
    except TelegramError as exc:
        raise PollingStopped(f"Could not reach Telegram at TELEGRAM_API_BASE_URL: {exc.message}") from None
    log.info("polling Telegram for updates as @%s", bot.username)
    offset: int | None = None
    pause = 1.0
    while True:
        try:
            updates = await bot.get_updates(offset=offset, timeout=timeout, allowed_updates=list(ALLOWED_UPDATES))
            for update in updates:
                accepted = await channel.accept(update, host)
                offset = update.update_id + 1
                if accepted.callback_query_id is not None and not accepted.duplicate:
                    await channel.answer_button(accepted.callback_query_id)
        except RetryAfter as exc:
            await asyncio.sleep(retry_after_seconds(exc))
            continue
        except Conflict:
            raise PollingStopped(
                "Telegram reports another consumer of this bot's updates (a second `lessonbot telegram poll`, or a "
                "webhook set again meanwhile): stop it and start polling again."
            ) from None
        except InvalidToken:
            raise PollingStopped(TOKEN_REJECTED) from None
        except Exception as exc:  # Telegram unreachable, or recording failed: the update comes again
            log.warning(
                "polling failed; trying again in %.0f s", pause, extra={"error": str(exc)},
                exc_info=not isinstance(exc, TelegramError),
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)
            continue
        pause = 1.0
