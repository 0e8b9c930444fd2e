"""The web chat's page and JSON API, served by the app.

- `GET /` the page, `/static/…` its script and style (channels/webchat/web/).
- `POST /chat/api/sessions` a new signed session (201).
- `POST /chat/api/messages` a message, through the shared webhook steps (channels/webhook.py): size limit (413) →
  parse the JSON object (400) → verify its session (401 missing, 403 not signed here) → record, its fields checked
  (422, 413 when too long) → 202 with the inbound id, or 200 for a message id seen before.
- `GET /chat/api/messages?session=…&after=…` the replies sent since a reply id, for a page that (re)loads.
- `GET /chat/api/events?session=…` the replies as server-sent events (`reply`, with the reply id as the event id so a
  reconnecting page resumes after it) and the reply being written (`draft`, never replayed).

A reply's light Markdown is rendered here, by channels/markdown.py, both ways: `text` (and a document's `caption`) as
plain text, and `html` (`caption_html`) in the small HTML subset of `render_html`, the only HTML the page shows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from bot.channel import ChannelHost, Received, RequestRejected
from channels.markdown import PLAIN, render, render_html
from channels.webhook import LimitBody, Parse, Record, Webhook, WebhookRequest, parse_json, refusal

if TYPE_CHECKING:
    from channels.webchat.channel import WebChatChannel

WEB_DIR = Path(__file__).parent / "web"
SSE_KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Posted:
    """A message the page posted, its session verified: the fields still to be read."""

    session_id: str
    fields: dict[str, Any]


class SessionToken:
    """Verify: the session the page posts is one this server signed (401 when missing, 403 when not ours)."""

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


def acknowledge(request: WebhookRequest) -> Response:
    recorded: Received = request.outcome
    if recorded.duplicate:
        return JSONResponse({"status": "duplicate"}, status_code=200)
    return JSONResponse({"status": "accepted", "id": recorded.inbound_id}, status_code=202)


def reply_view(outbox_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """What the page gets for one reply, its Markdown rendered; a document's `path` names a file on this server and
    stays here."""
    view = {"id": outbox_id, **{key: value for key, value in payload.items() if key != "path"}}
    for field, html_field in (("text", "html"), ("caption", "caption_html")):
        if isinstance(view.get(field), str):
            view.update(rendered(view[field], field=field, html_field=html_field))
    return view


def rendered(markdown: str, *, field: str = "text", html_field: str = "html") -> dict[str, str]:
    """Light Markdown as the page's two views of it: plain text, and the HTML the page puts in a bubble."""
    return {field: render(markdown, PLAIN), html_field: render_html(markdown)}


def web_chat_routes(webchat: WebChatChannel, host: ChannelHost) -> list[BaseRoute]:
    async def record(posted: Posted) -> Received:
        return await host.receive(webchat.message(posted))

    post_message = Webhook(
        LimitBody(webchat.max_body_bytes),
        Parse(json_object),
        SessionToken(webchat),
        Record(record),
        acknowledge=acknowledge,
    )

    async def page(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def new_session(request: Request) -> Response:
        return JSONResponse({"session": webchat.new_session()}, status_code=201)

    async def fetch_replies(session_id: str, after: int) -> list[dict[str, Any]]:
        sent = await host.sent_replies(webchat.name, session_id, after=after)
        return [reply_view(outbox_id, payload) for outbox_id, payload in sent]

    def session_and_cursor(request: Request) -> tuple[str, int]:
        session_id = webchat.verify_session(request.query_params.get("session"))
        raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        if not raw.isdigit():
            raise RequestRejected(422, "'after' must be the id of the last reply seen (a whole number).")
        return session_id, int(raw)

    async def list_replies(request: Request) -> Response:
        try:
            session_id, after = session_and_cursor(request)
        except RequestRejected as exc:
            return refusal(exc)
        return JSONResponse({"replies": await fetch_replies(session_id, after)})

    async def events(request: Request) -> Response:
        try:
            session_id, after = session_and_cursor(request)
        except RequestRejected as exc:
            return refusal(exc)

        async def stream() -> AsyncIterator[str]:
            cursor, quiet, shown_draft = after, 0.0, None
            yield "retry: 2000\n\n"
            while True:
                replies = await fetch_replies(session_id, cursor)
                for reply in replies:
                    cursor = reply["id"]
                    yield f"id: {cursor}\nevent: reply\ndata: {json.dumps(reply, ensure_ascii=False)}\n\n"
                draft = webchat.draft(session_id)
                if draft is not None and draft != shown_draft:  # no id: a draft is not replayed on reconnecting
                    yield f"event: draft\ndata: {json.dumps(rendered(draft), ensure_ascii=False)}\n\n"
                shown_draft = draft
                if replies or draft is not None:
                    quiet = 0.0
                elif quiet >= SSE_KEEPALIVE_SECONDS:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                # Woken at once by a send in this process; other processes' sends are seen at the next poll.
                started = asyncio.get_running_loop().time()
                await webchat.wait_for_reply(session_id, timeout=webchat.poll_seconds)
                quiet += asyncio.get_running_loop().time() - started

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/", page),
        Route("/chat/api/sessions", new_session, methods=["POST"]),
        post_message.route("/chat/api/messages"),
        Route("/chat/api/messages", list_replies, methods=["GET"]),
        Route("/chat/api/events", events),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
