"""Telegram, through python-telegram-bot.

- channel.py: `TelegramChannel`, the Bot: what an update comes to (`accept`) and the sender of replies
- routes.py: the webhook, `POST /webhooks/telegram`, built from channels/webhook.py's steps
- updates.py: which updates become an InboundMessage, and why the others are ignored
- buttons.py: choices as inline keyboards, and a pressed button back into its choice
- polling.py: getUpdates, for a bot with no public URL while developing
- request.py: how the Bot reaches the Bot API, python-telegram-bot's `BaseRequest` over aiohttp
"""

from channels.telegram.channel import TOKEN_REJECTED, TelegramChannel
from channels.telegram.routes import SECRET_HEADER, WEBHOOK_PATH

__all__ = ["SECRET_HEADER", "TOKEN_REJECTED", "WEBHOOK_PATH", "TelegramChannel"]
