"""The local web chat: a page served by the app (channels/webchat/routes.py), talking JSON to it.

Sessions are signed tokens that end after a while without use (channels/webchat/sessions.py). Replies are "sent"
by being marked so in the outbox; the page reads them as server-sent events, its streams capped and woken as
channels/webchat/streams.py says. The page's own words come in the learner's language from `words`, which the wiring
hands in (the catalogues are the dialogs'; a channel does not read them itself).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from starlette.routing import BaseRoute

from bot.channel import ChannelHost, Delivery, RateLimit, RequestRejected, SentReply
from bot.messages import LANGUAGE, START_LINK, InboundMessage, InboundMeta
from bot.text import storable
from channels.webchat.routes import Posted, web_chat_routes
from channels.webchat.sessions import SessionSigner
from channels.webchat.streams import Listener, SentSince, StreamGate, Wakeups

MAX_TEXT_CHARS = 4000
MAX_CLIENT_ID_CHARS = 100
# The longest value a button is offered with (an offered choice is kept in 500 characters: OfferedChoice.value in
# storage/models.py): a longer `choice` is no button's.
MAX_CHOICE_CHARS = 500
# The page's language, sent with each message as a platform tells its app's language: a short BCP 47 tag
# ("es", "pt-BR", "zh-Hant-TW"), a first guess at the learner's that the bot takes until they choose one.
LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")
# What the page posts with a message (channels/webchat/web/chat.js): any other field is refused (422), so a misspelt
# one is said, not stored as if it meant something.
FIELDS = ("session", "text", "choice", "id", "language", "start")
# A start link's payload, as Telegram allows one (t.me/<bot>?start=PAYLOAD): the page opened as /?start=PAYLOAD
# sends it with its first message, for the set-up to read (a course's id, an access code).
START_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
DAY_SECONDS = 86400.0
SENT_PREFIX = "web-"  # a reply's platform id: this and its outbox id

# A learner's language or a browser's Accept-Language header (or None) → the language chosen, and the page's
# words in it by key.
PageWords = Callable[[str | None], tuple[str, Mapping[str, str]]]


def english_words(language: str | None) -> tuple[str, Mapping[str, str]]:
    """No catalogue handed in: the page keeps the English words it is written in."""
    return "en", {}


def only_known_fields(data: Mapping[str, Any]) -> None:
    """Refuse (422) a message with a field the page never sends, naming it."""
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        named = ", ".join(f"'{field[:40]}'" for field in unknown[:5])
        raise RequestRejected(
            422,
            f"Unknown field{'s' if len(unknown) > 1 else ''} {named}; a message has only "
            f"{', '.join(FIELDS[:-1])} and {FIELDS[-1]}.",
        )


def page_meta(data: Mapping[str, Any]) -> InboundMeta:
    """What the page tells of a message beyond its words: its language (422 if it is not a short BCP 47 tag), and
    the start link it was opened with (422 if it is not one)."""
    meta: InboundMeta = {}
    language = data.get("language")
    if language is not None:
        if not isinstance(language, str) or not LANGUAGE_TAG.fullmatch(language):
            raise RequestRejected(422, "'language' must be a language tag like \"es\" or \"pt-BR\".")
        meta[LANGUAGE] = language
    start = data.get("start")
    if start is not None:
        if not isinstance(start, str) or not START_PAYLOAD.fullmatch(start):
            raise RequestRejected(422, "'start' must be a start link's payload: 1 to 64 letters, digits, _ or -.")
        meta[START_LINK] = start
    return meta


class WebChatChannel:
    name = "web"

    def __init__(
        self,
        secret_key: str,
        *,
        max_body_bytes: int = 64 * 1024,
        poll_seconds: float = 1.0,
        session_idle_days: float = 30.0,
        streams_per_address: int = 20,
        streams_total: int = 1000,
        words: PageWords = english_words,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`poll_seconds`: how often this process looks, once for all its open event streams, for replies sent by
        other processes. `clock`: the current Unix time, for sessions' ages."""
        self.max_body_bytes = max_body_bytes
        self.sessions = SessionSigner(secret_key, idle_seconds=session_idle_days * DAY_SECONDS, clock=clock)
        self.gate = StreamGate(per_address=streams_per_address, total=streams_total)
        self.wakeups = Wakeups(poll_seconds=poll_seconds)
        self.words = words
        self._drafts: dict[str, str] = {}  # session → the reply being written, until it is sent

    # sessions ------------------------------------------------------------------------------------------------

    def new_session(self) -> str:
        return self.sessions.new_session()

    def verify_session(self, token: object) -> str:
        """The session id inside a token; RequestRejected if it is missing, malformed, not ours or expired."""
        return self.sessions.verify(token)

    # inbound -------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[BaseRoute]:
        """The page, its files and its JSON API (channels/webchat/routes.py)."""
        return web_chat_routes(self, host)

    def message(self, posted: Posted) -> InboundMessage:
        """One message posted by the page, its fields checked (422 for one it never sends, or one of the wrong kind;
        413 when too long); the page's language goes with it as a platform's hint (`meta[LANGUAGE]`, as Telegram
        gives its app's language)."""
        session_id, data = posted.session_id, posted.fields
        only_known_fields(data)
        text, choice, client_id = data.get("text", ""), data.get("choice"), data.get("id")
        if not isinstance(text, str):
            raise RequestRejected(422, "'text' must be a string.")
        if choice is not None and (not isinstance(choice, str) or not 0 < len(choice) <= MAX_CHOICE_CHARS):
            raise RequestRejected(
                422, f"'choice' must be a string of 1 to {MAX_CHOICE_CHARS} characters (a pressed button's value)."
            )
        if not storable(text).strip() and not choice:  # (NULs alone are nothing: they are not stored)
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
            meta=page_meta(data),
        )

    # outbound ------------------------------------------------------------------------------------------------

    async def send(self, delivery: Delivery) -> str:
        return f"{SENT_PREFIX}{delivery.outbox_id}"

    def sent_prefix(self) -> str:
        """A reply is sent by being marked so (the dispatcher does it in one statement): its id, after this."""
        return SENT_PREFIX

    def after_sent(self, chat_id: str, sent: SentReply | None = None) -> None:
        """The dispatcher committed a reply as sent: this session's event streams show it at once (`sent`, the
        reply itself: without reading it back where it follows what a stream has shown). A draft of it is over."""
        self._drafts.pop(chat_id, None)
        self.wakeups.wake(chat_id, reply=True, sent=sent)

    async def show_draft(self, chat_id: str, text: str, reply_address: str | None = None) -> None:
        """The reply so far (a model's answer as it streams): the page shows it until the reply itself arrives (a
        page has one place: `reply_address` is none of its concern).
        Only this process's event streams see it; the reply reaches every stream, wherever it was written. An
        empty text ends the draft here: a stream opened later does not show it (an open page keeps its bubble
        until the reply replaces it)."""
        if not text:
            self._drafts.pop(chat_id, None)
            return
        self._drafts[chat_id] = text
        self.wakeups.wake(chat_id, reply=False)

    def draft(self, session_id: str) -> str | None:
        return self._drafts.get(session_id)

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return ()

    def listen(self, session_id: str, cursor: int, *, sent_since: SentSince) -> AbstractContextManager[Listener]:
        """An open event stream of this session that has shown the replies up to `cursor`: rung while it is open
        (channels/webchat/streams.py)."""
        return self.wakeups.listen(session_id, cursor, sent_since=sent_since)

    def end_streams(self) -> None:
        """The server is stopping: end every open event stream, and any opened from now on, once each has shown what
        it has (the page reconnects and resumes after the last reply it was shown). A server waits for its open
        connections before it stops, and a page holds its stream open for as long as it is open."""
        self.wakeups.end()

    async def close(self) -> None:
        await self.wakeups.close()
