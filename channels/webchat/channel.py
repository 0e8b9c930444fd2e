"""The local web chat: a page served by the app (channels/webchat/routes.py), talking JSON to it.

A session is a random id plus an HMAC of it under SECRET_KEY, so verifying one needs no database and a forged or
altered session is refused (403) before anything is stored. Replies are "sent" by being marked so in the outbox;
the page reads them as server-sent events, woken in this process the moment they are sent and by polling across
processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from collections import defaultdict

from starlette.routing import BaseRoute

from bot.channel import ChannelHost, Delivery, RateLimit, RequestRejected
from bot.messages import InboundMessage
from channels.webchat.routes import Posted, web_chat_routes

MAX_TEXT_CHARS = 4000
MAX_CLIENT_ID_CHARS = 100


class WebChatChannel:
    name = "web"

    def __init__(self, secret_key: str, *, max_body_bytes: int = 64 * 1024, poll_seconds: float = 1.0) -> None:
        """`poll_seconds`: how often an open event stream looks for replies sent by other processes."""
        self.max_body_bytes = max_body_bytes
        self.poll_seconds = poll_seconds
        self._key = hashlib.sha256(b"lessonbot web chat session\0" + secret_key.encode()).digest()
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._drafts: dict[str, str] = {}  # session → the reply being written, until it is sent

    # sessions ------------------------------------------------------------------------------------------------

    def _signature(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()[:32]

    def new_session(self) -> str:
        session_id = secrets.token_urlsafe(16)
        return f"{session_id}.{self._signature(session_id)}"

    def verify_session(self, token: object) -> str:
        """The session id inside a token; RequestRejected if it is missing, malformed or not ours."""
        if not isinstance(token, str) or not token:
            raise RequestRejected(401, "Missing 'session': create one with POST /chat/api/sessions.")
        session_id, _, signature = token.partition(".")
        if not session_id or not hmac.compare_digest(signature, self._signature(session_id)):
            raise RequestRejected(403, "This chat session is not valid here; start a new one (reload the page).")
        return session_id

    # inbound -------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[BaseRoute]:
        """The page, its files and its JSON API (channels/webchat/routes.py)."""
        return web_chat_routes(self, host)

    def message(self, posted: Posted) -> InboundMessage:
        """One message posted by the page, its fields checked (422, or 413 when too long)."""
        session_id, data = posted.session_id, posted.fields
        text, choice, client_id = data.get("text", ""), data.get("choice"), data.get("id")
        if not isinstance(text, str):
            raise RequestRejected(422, "'text' must be a string.")
        if choice is not None and not isinstance(choice, str):
            raise RequestRejected(422, "'choice' must be a string (the value of a pressed button).")
        if not text.strip() and not choice:
            raise RequestRejected(422, "Send some 'text' (or a 'choice'); the message was empty.")
        if len(text) > MAX_TEXT_CHARS:
            raise RequestRejected(
                413,
                f"The message is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}. Please shorten it.",
            )
        if client_id is not None and (not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS):
            raise RequestRejected(422, f"'id' must be a string of 1 to {MAX_CLIENT_ID_CHARS} characters.")
        return InboundMessage(
            channel=self.name,
            platform_id=f"{session_id}:{client_id or uuid.uuid4().hex}",
            chat_id=session_id,
            sender_id=session_id,
            text=text,
            choice=choice,
        )

    # outbound ------------------------------------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> str:
        return f"web-{delivery.outbox_id}"

    def after_sent(self, chat_id: str) -> None:
        """The dispatcher committed a reply as sent: wake this session's event streams (before, they would find
        nothing yet and sleep until the next poll). A draft of it is over."""
        self._drafts.pop(chat_id, None)
        self._wake(chat_id)

    async def show_draft(self, chat_id: str, text: str) -> None:
        """The reply so far (a model's answer as it streams): the page shows it until the reply itself arrives.
        Only this process's event streams see it; the reply reaches every stream, wherever it was written. An
        empty text ends the draft here: a stream opened later does not show it (an open page keeps its bubble
        until the reply replaces it)."""
        if not text:
            self._drafts.pop(chat_id, None)
            return
        self._drafts[chat_id] = text
        self._wake(chat_id)

    def draft(self, session_id: str) -> str | None:
        return self._drafts.get(session_id)

    def _wake(self, chat_id: str) -> None:
        for waiter in self._waiters.get(chat_id, ()):
            waiter.set()

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return ()

    async def wait_for_reply(self, session_id: str, timeout: float) -> None:
        """Return when a reply to this session is sent by this process, or after `timeout`."""
        event = asyncio.Event()
        self._waiters[session_id].add(event)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: that starts a task for every wait
                await event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters[session_id].discard(event)
            if not self._waiters[session_id]:
                del self._waiters[session_id]
