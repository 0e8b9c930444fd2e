"""The local web chat, for trying the bot with no account anywhere.

- channel.py: `WebChatChannel`, signed sessions, a posted message read into the core's terms, drafts and wake-ups
- routes.py: the page and its JSON API (messages in through channels/webhook.py's steps, replies out as events)
- web/: the page itself (HTML, script, style)
"""

from channels.webchat.channel import WebChatChannel

__all__ = ["WebChatChannel"]
