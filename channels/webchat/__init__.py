"""The local web chat, for trying the bot with no account anywhere.

- channel.py: `WebChatChannel`, a posted message read into the core's terms, drafts and wake-ups
- sessions.py: signed sessions that end after a while without use; the unguessable addresses of documents
- streams.py: the caps on open event streams, and what wakes them (no stream polls the database every second)
- routes.py: the page and its JSON API (messages in through channels/webhook.py's steps, replies out as events)
- web/: the page itself (HTML, script, style)
"""

from channels.webchat.channel import WebChatChannel

__all__ = ["WebChatChannel"]
