"""The web chat's page and JSON API, served by the app.

- `GET /` the page, `/static/…` its script and style (channels/webchat/web/): each asked for again at every load
  (`no-cache`; a 304 when unchanged), so a page after an upgrade does not run the script a browser kept from before.
  The page comes with its Content-Security-Policy as a header (`PAGE_POLICY`).
- `POST /chat/api/sessions` a new signed session (201).
- `POST /chat/api/messages` a message, through the shared webhook steps (channels/webhook.py): JSON only (415 for
  a form or text/plain, which another site's page may post without the browser asking this server first) → size
  limit (413) → parse the JSON object (400) → verify its session (401 missing, 403 not signed here or ended) →
  record, its fields checked (422, 413 when too long): `text` or `choice`, the page's own `id` for it, and the
  page's `language` (a platform's hint at the learner's language), the `start` link's payload of a page opened
  as /?start=PAYLOAD, and no other field (422) → 202 with the inbound id, or 200 for a message id seen before.
- `GET /chat/api/messages?session=…&after=…` the replies sent since a reply id, for a page that (re)loads; 503 to
  try again while the database is away.
- `GET /chat/api/events?session=…` the replies as server-sent events (`reply`, with the reply id as the event id so a
  reconnecting page resumes after it) and the reply being written (`draft`, never replayed); 429 beyond the open
  streams allowed (channels/webchat/streams.py); 503 to try again while the database is away (the page says it is
  offline and tries again). A stream ends when the server stops (`WebChatChannel.end_streams`) or its replies cannot
  be read any more (the database gone away since): the page reconnects.
- `GET /chat/api/words?session=…` the page's own words (placeholder, buttons, status lines) in the learner's
  language, else in the browser's (Accept-Language).
- `GET /chat/files/SESSION/REPLY/SIGNATURE` the file of a document reply (a certificate), for its session only.

The answers to a page's requests that use a session carry `session`: the same session, issued anew, which the page
keeps (a session ends after a while without use, channels/webchat/sessions.py).

A reply's light Markdown is rendered here, by channels/markdown.py, both ways: `text` (and a document's `caption`) as
plain text, and `html` (`caption_html`) in the small HTML subset of `render_html`, the only HTML the page shows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Receive, Scope, Send

from bot.channel import CannotRecord, ChannelHost, Received, RequestRejected
from bot.messages import Link, reply_from_payload
from bot.text import whole_number
from channels.http import NOT_FRAMED, PRIVATE, sent_document
from channels.markdown import PLAIN, render, render_html, with_links
from channels.webchat.streams import REPLIES_A_READ, Feed, reply_events
from channels.webhook import LimitBody, MediaType, Parse, Record, Webhook, WebhookRequest, parse_json, refusal

if TYPE_CHECKING:
    from channels.webchat.channel import WebChatChannel

WEB_DIR = Path(__file__).parent / "web"
# The page and its files are kept by a browser only to be asked for again (a 304 when unchanged): never used on the
# browser's own guess of how long they stay fresh, which would mix one version's page with another's script.
ASK_AGAIN = {"Cache-Control": "no-cache"}
# The page's Content-Security-Policy, sent as a header, so it holds from the response's first byte and says what a
# <meta> cannot (frame-ancestors): everything the page loads or calls comes from this server, no inline script or
# style, no plugin, no <base>; and no other site may show it in a frame (channels.http.NOT_FRAMED).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    f"base-uri 'none'; form-action 'self'; object-src 'none'; {NOT_FRAMED['Content-Security-Policy']}"
)
PAGE_HEADERS = {**ASK_AGAIN, **NOT_FRAMED, "Content-Security-Policy": PAGE_POLICY}


@dataclass(frozen=True, slots=True)
class Posted:
    """A message the page posted, its session verified: the fields still to be read."""

    session_id: str
    fields: dict[str, Any]


class SessionToken:
    """Verify: the session the page posts is one this server signed and still open (401 missing, 403 otherwise)."""

    def __init__(self, webchat: WebChatChannel) -> None:
        self.webchat = webchat

    async def __call__(self, request: WebhookRequest) -> None:
        fields = request.payload
        request.payload = Posted(self.webchat.verify_session(fields.get("session")), fields)


def json_object(body: bytes) -> dict[str, Any]:
    """The posted body as a JSON object; 400 otherwise."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise RequestRejected(400, 'The body must be a JSON object like {"session": "...", "text": "hi"}.')
    return data


def reply_view(
    outbox_id: int, payload: dict[str, Any], *, file_url: Callable[[], str] | None = None
) -> dict[str, Any]:
    """What the page gets for one reply, its Markdown rendered: the reply as the channel contract reads it back
    (`reply_from_payload`), so what the bot keeps beside a reply in its row (the lesson and part a lesson shows,
    storage.outbox.LESSON_PLACE) stays here. A document's `path` names a file on this server and stays here too;
    the page gets the address `file_url()` makes for it instead (one only its session can use)."""
    contract = reply_from_payload(payload).to_payload()
    view = {"id": outbox_id, **{key: value for key, value in contract.items() if key not in ("path", "links")}}
    if payload.get("kind") == "text" and payload.get("links"):
        view["text"] = with_links(view["text"], [Link(link["label"], link["url"]) for link in payload["links"]])
    if payload.get("kind") == "document" and not payload.get("url") and payload.get("path") and file_url:
        view["url"] = file_url()
    for field, html_field in (("text", "html"), ("caption", "caption_html")):
        if isinstance(view.get(field), str):
            view.update(rendered(view[field], field=field, html_field=html_field))
    return view


def rendered(markdown: str, *, field: str = "text", html_field: str = "html", remember: bool = True) -> dict[str, str]:
    """Light Markdown as the page's two views of it: plain text, and the HTML the page puts in a bubble.
    `remember=False` for a text no one else will be sent (a draft as it grows)."""
    plain, html = _rendered(markdown) if remember else (render(markdown, PLAIN), render_html(markdown))
    return {field: plain, html_field: html}


@lru_cache(maxsize=1024)
def _rendered(markdown: str) -> tuple[str, str]:
    """Many learners get the same texts (a lesson's parts, a prompt, /help): each is rendered once, while it is
    among the most recent thousand."""
    return render(markdown, PLAIN), render_html(markdown)


class ClosingStream(StreamingResponse):
    """A streamed response that runs `on_close` once it is over, however it ends (even never started), its content
    closed first: a page that went away while a chunk was being written leaves the generator at that `yield`, and
    its own `finally` (an event stream's listener let go) runs then, not whenever the collector finds it.
    `opening`: the chunk already taken from a content started before the response (an event stream's first read),
    sent first."""

    def __init__(self, content: AsyncGenerator[str, None], *, on_close: Callable[[], None], opening: str = "",
                 **kwargs: Any) -> None:
        super().__init__(_after(opening, content) if opening else content, **kwargs)
        self.content = content
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.content.aclose()
            finally:
                self.on_close()


async def _after(opening: str, content: AsyncGenerator[str, None]) -> AsyncGenerator[str, None]:
    """`opening`, then the rest of `content` (which its response closes itself)."""
    yield opening
    async for chunk in content:
        yield chunk


class PageFiles(StaticFiles):
    """The page's script and style, each answer saying to ask again before using a kept copy (`ASK_AGAIN`)."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = FileResponse(full_path, status_code=status_code, stat_result=stat_result, headers=ASK_AGAIN)
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response


def web_chat_routes(webchat: WebChatChannel, host: ChannelHost) -> list[BaseRoute]:
    return WebChatRoutes(webchat, host).routes()


class WebChatRoutes:
    """The page, its API and its files: an endpoint a method, each on the channel and the host it is given."""

    def __init__(self, webchat: WebChatChannel, host: ChannelHost) -> None:
        self.webchat = webchat
        self.host = host

    def routes(self) -> list[BaseRoute]:
        post_message = Webhook(
            MediaType("application/json", "Send the message as JSON, with Content-Type: application/json."),
            LimitBody(self.webchat.max_body_bytes),
            Parse(json_object),
            SessionToken(self.webchat),
            Record(self.record),
            acknowledge=self.acknowledge,
        )
        return [
            Route("/", self.page),
            Route("/chat/api/sessions", self.new_session, methods=["POST"]),
            post_message.route("/chat/api/messages"),
            Route("/chat/api/messages", self.list_replies, methods=["GET"]),
            Route("/chat/api/events", self.events),
            Route("/chat/api/words", self.words),
            Route("/chat/files/{session}/{reply:int}/{signature}", self.document),
            Mount("/static", PageFiles(directory=WEB_DIR), name="static"),
        ]

    # a message: recorded, then acknowledged with the session renewed

    async def record(self, posted: Posted) -> Received:
        return await self.host.receive(self.webchat.message(posted))

    def acknowledge(self, request: WebhookRequest) -> Response:
        recorded: Received = request.outcome
        session = self.webchat.sessions.issue(request.payload.session_id)
        if recorded.duplicate:
            return JSONResponse({"status": "duplicate", "session": session}, status_code=200)
        return JSONResponse({"status": "accepted", "id": recorded.inbound_id, "session": session}, status_code=202)

    # the page and its session

    async def page(self, request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)

    async def new_session(self, request: Request) -> Response:
        return JSONResponse({"session": self.webchat.new_session()}, status_code=201)

    async def words(self, request: Request) -> Response:
        language, token = None, request.query_params.get("session")
        # a page whose session is no longer valid (or asking while the database is away) still gets words, in the
        # browser's language
        with contextlib.suppress(RequestRejected, CannotRecord):
            language = await self.host.learner_language(self.webchat.name, self.webchat.verify_session(token))
        chosen, page_words = self.webchat.words(language or request.headers.get("accept-language"))
        return JSONResponse({"language": chosen, "words": dict(page_words)})

    # replies: read after a cursor, or streamed as they are sent

    def file_url(self, session_id: str, outbox_id: int) -> str:
        return f"chat/files/{session_id}/{outbox_id}/{self.webchat.sessions.file_signature(session_id, outbox_id)}"

    def view(self, session_id: str, outbox_id: int, payload: dict[str, Any]) -> dict[str, Any]:
        return reply_view(outbox_id, payload, file_url=partial(self.file_url, session_id, outbox_id))

    async def fetch_replies(self, session_id: str, after: int) -> list[dict[str, Any]]:
        sent = await self.host.sent_replies(self.webchat.name, session_id, after=after, limit=REPLIES_A_READ)
        return [self.view(session_id, outbox_id, payload) for outbox_id, payload in sent]

    async def sent_since(self, since: datetime) -> Mapping[str, int]:
        return await self.host.chats_sent_to(self.webchat.name, since=since)

    def session_and_cursor(self, request: Request) -> tuple[str, int]:
        session_id = self.webchat.verify_session(request.query_params.get("session"))
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        after = whole_number(raw)
        if after is None:
            raise RequestRejected(422, "'after' must be the id of the last reply seen (a whole number).")
        return session_id, after

    async def list_replies(self, request: Request) -> Response:
        try:
            session_id, after = self.session_and_cursor(request)
            replies = await self.fetch_replies(session_id, after)
        except RequestRejected as exc:
            return refusal(exc)
        except CannotRecord as exc:  # the database away: try again shortly
            return refusal(RequestRejected(503, str(exc)))
        return JSONResponse({"replies": replies, "session": self.webchat.sessions.issue(session_id)})

    async def events(self, request: Request) -> Response:
        address = request.client.host if request.client else "unknown"
        try:
            session_id, after = self.session_and_cursor(request)
            self.webchat.gate.enter(address)
        except RequestRejected as exc:
            response = refusal(exc)
            if exc.status == 429:
                response.headers["Retry-After"] = "30"
            return response

        feed = Feed(
            read=partial(self.fetch_replies, session_id),
            show=lambda sent: self.view(session_id, sent.outbox_id, sent.payload),
            draft=partial(self.webchat.draft, session_id),
            show_draft=partial(rendered, remember=False),
            gone=request.is_disconnected,
        )
        events = reply_events(self.webchat.listen(session_id, after, sent_since=self.sent_since), feed)
        try:
            opening = await anext(events)  # its first read (a generator that raised is closed, its listener let go)
        except BaseException as exc:
            self.webchat.gate.leave(address)
            if isinstance(exc, CannotRecord):  # the database away: try again shortly, not a stream that ends at once
                return refusal(RequestRejected(503, str(exc)))
            raise
        return ClosingStream(
            events,
            opening=opening,
            on_close=lambda: self.webchat.gate.leave(address),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # a document sent to the session

    async def document(self, request: Request) -> Response:
        session_id, signature = request.path_params["session"], request.path_params["signature"]
        outbox_id: int = request.path_params["reply"]
        if not self.webchat.sessions.file_signature_matches(session_id, outbox_id, signature):
            return Response("No such file here.", status_code=404, media_type="text/plain", headers=PRIVATE)
        return await sent_document(self.host, self.webchat.name, session_id, outbox_id)
