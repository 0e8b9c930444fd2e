"""The ASGI app: the web chat, health and metrics, and (as they are connected) the platforms' webhooks.

Every inbound endpoint follows one path: read the body within MAX_BODY_BYTES → verify and parse (the channel) →
record (`Lessonbot.receive`) → acknowledge. Processing happens after the response, in the conversation worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import bindparam, select, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bot.config import Settings
from bot.core import Lessonbot, attach_clock
from bot.observability import INBOUND_PENDING, OUTBOX_DEPTH, REGISTRY
from channels.base import Channel, RequestRejected
from channels.http import read_limited_body
from channels.webchat import WebChatChannel, reply_view
from storage.migrate import current_revisions, head_revisions
from storage.models import Conversation, OutboxMessage
from storage.outbox import OutboxStatus, outbox_counts, pending_inbound_count

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
SSE_KEEPALIVE_SECONDS = 15.0


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes without reading past it."""
    return await read_limited_body(request, limit)


def rejected(exc: RequestRejected) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def build_channels(settings: Settings) -> list[Channel]:
    channels: list[Channel] = []
    if settings.web_chat_enabled:
        channels.append(WebChatChannel(settings.resolved_secret_key))
    if settings.telegram_bot_token and settings.telegram_webhook_secret:
        from channels.telegram import TelegramChannel

        channels.append(
            TelegramChannel(
                token=settings.telegram_bot_token,
                webhook_secret=settings.telegram_webhook_secret,
                api_base_url=settings.telegram_api_base_url,
                max_body_bytes=settings.max_body_bytes,
            )
        )
    elif settings.telegram_bot_token:
        log.error(
            "telegram is off: TELEGRAM_WEBHOOK_SECRET is empty, and an unsigned webhook would take updates from "
            "anyone; set it to a random string (e.g. `openssl rand -hex 32`), then `lessonbot telegram set-webhook URL`"
        )
    else:
        log.info("telegram is off: set TELEGRAM_BOT_TOKEN (from @BotFather) and TELEGRAM_WEBHOOK_SECRET")
    if settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_whatsapp_from:
        if settings.public_base_url:
            from channels.whatsapp import WhatsAppChannel

            channels.append(
                WhatsAppChannel(
                    account_sid=settings.twilio_account_sid,
                    auth_token=settings.twilio_auth_token,
                    sender=settings.twilio_whatsapp_from,
                    public_base_url=settings.public_base_url,
                    api_base_url=settings.twilio_api_base_url,
                    max_body_bytes=settings.max_body_bytes,
                    template_content_sid=settings.twilio_template_content_sid,
                    quick_reply_content_sids=settings.twilio_quick_reply_content_sids,
                )
            )
        else:
            log.error(
                "whatsapp is off: PUBLIC_BASE_URL is empty, and Twilio's signatures are computed over the URL it "
                "calls; set it to the https address Twilio reaches (your domain or tunnel), e.g. "
                "https://bot.example.com"
            )
    elif settings.twilio_account_sid or settings.twilio_auth_token or settings.twilio_whatsapp_from:
        log.error("whatsapp is off: set all of TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_WHATSAPP_FROM")
    else:
        log.info("whatsapp is off: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_WHATSAPP_FROM and PUBLIC_BASE_URL")
    many_workspaces = bool(settings.slack_client_id and settings.slack_client_secret)
    if settings.slack_signing_secret and (settings.slack_bot_token or many_workspaces):
        from bot.slack_installations import SlackInstallations
        from channels.slack import SlackChannel

        if many_workspaces and settings.slack_bot_token:
            log.warning("slack: SLACK_BOT_TOKEN is ignored; each workspace's token comes from its installation")
        channels.append(
            SlackChannel(
                signing_secret=settings.slack_signing_secret,
                bot_token=settings.slack_bot_token,
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret,
                installations=SlackInstallations.connect(settings.resolved_database_url) if many_workspaces else None,
                api_base_url=settings.slack_api_base_url,
                public_base_url=settings.public_base_url,
                max_body_bytes=settings.max_body_bytes,
            )
        )
    elif settings.slack_bot_token or settings.slack_client_id or settings.slack_client_secret:
        log.error(
            "slack is off: SLACK_SIGNING_SECRET is empty (Basic Information → App Credentials → Signing Secret), "
            "and without it requests cannot be verified"
            if not settings.slack_signing_secret
            else "slack is off: set both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, or SLACK_BOT_TOKEN"
        )
    else:
        log.info(
            "slack is off: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN (one workspace), or SLACK_SIGNING_SECRET, "
            "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (installable into many)"
        )
    return channels


def create_app(
    settings: Settings,
    *,
    process: bool = True,
    dispatch: bool = True,
    channels: list[Channel] | None = None,
) -> Starlette:
    channels = build_channels(settings) if channels is None else channels
    webchat = next((c for c in channels if isinstance(c, WebChatChannel)), None)
    lessonbot = Lessonbot(settings, channels, process=process, dispatch=dispatch, elect=True)
    attach_clock(lessonbot)  # lessons, nudges and broadcasts run wherever the dispatcher is elected

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("channels on: %s", ", ".join(lessonbot.channels) or "none")
        lessonbot.start()
        try:
            yield
        finally:
            await lessonbot.stop()

    # health ---------------------------------------------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            async with lessonbot.db.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            current = await current_revisions(lessonbot.db.engine)
        except Exception as exc:
            log.warning("readiness check: database unreachable", extra={"error": str(exc)})
            return JSONResponse({"status": "unavailable", "reason": "database unreachable"}, status_code=503)
        expected = head_revisions()
        if current != expected:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": f"database schema is at {', '.join(sorted(current)) or 'nothing'}, the code expects "
                    f"{', '.join(sorted(expected))}: run `lessonbot db upgrade`",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "schema": sorted(current)})

    async def metrics(request: Request) -> Response:
        try:
            async with lessonbot.db.sessions() as session:
                for status, count in (await outbox_counts(session)).items():
                    OUTBOX_DEPTH.labels(status).set(count)
                INBOUND_PENDING.set(await pending_inbound_count(session))
        except Exception:
            log.exception("metrics: could not read outbox depth")
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
    ]

    # web chat -------------------------------------------------------------------------------------------------

    if webchat is not None:
        routes += web_chat_routes(lessonbot, webchat, settings)
    for channel in channels:
        # Platform channels bring their own webhook routes; each verifies, then receives, then acknowledges.
        if hasattr(channel, "routes"):
            routes += channel.routes(lessonbot)

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.lessonbot = lessonbot
    return app


def web_chat_routes(lessonbot: Lessonbot, webchat: WebChatChannel, settings: Settings) -> list[Any]:
    async def page(request: Request) -> Response:
        return FileResponse(WEB_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def new_session(request: Request) -> Response:
        return JSONResponse({"session": webchat.new_session()}, status_code=201)

    async def post_message(request: Request) -> Response:
        try:
            message = webchat.parse(await read_body(request, settings.max_body_bytes))
        except RequestRejected as exc:
            return rejected(exc)
        recorded = await lessonbot.receive(message)
        if recorded.duplicate:
            return JSONResponse({"status": "duplicate"}, status_code=200)
        return JSONResponse({"status": "accepted", "id": recorded.inbound_id}, status_code=202)

    outbox, conversations = OutboxMessage.__table__, Conversation.__table__
    replies_after = (  # built once; by conversation, so the (status, conversation_id, id) index answers without a sort
        select(outbox.c.id, outbox.c.payload)
        .where(
            outbox.c.conversation_id
            == select(conversations.c.id)
            .where(conversations.c.channel == webchat.name, conversations.c.chat_id == bindparam("chat"))
            .scalar_subquery(),
            outbox.c.status == OutboxStatus.SENT.value,
            outbox.c.id > bindparam("after"),
        )
        .order_by(outbox.c.id)
        .limit(bindparam("most"))
    )

    async def fetch_replies(session_id: str, after: int, limit: int = 100) -> list[dict[str, Any]]:
        async with lessonbot.db.sessions() as session:
            connection = await session.connection()
            rows = await connection.execute(replies_after, {"chat": session_id, "after": after, "most": limit})
            return [reply_view(row.id, row.payload) for row in rows]

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
            return rejected(exc)
        return JSONResponse({"replies": await fetch_replies(session_id, after)})

    async def events(request: Request) -> Response:
        try:
            session_id, after = session_and_cursor(request)
        except RequestRejected as exc:
            return rejected(exc)

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
                    yield f"event: draft\ndata: {json.dumps({'text': draft}, ensure_ascii=False)}\n\n"
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
                await webchat.wait_for_reply(session_id, timeout=settings.worker_poll_seconds)
                quiet += asyncio.get_running_loop().time() - started

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return [
        Route("/", page),
        Route("/chat/api/sessions", new_session, methods=["POST"]),
        Route("/chat/api/messages", post_message, methods=["POST"]),
        Route("/chat/api/messages", list_replies, methods=["GET"]),
        Route("/chat/api/events", events),
        Mount("/static", StaticFiles(directory=WEB_DIR), name="static"),
    ]
