"""The ASGI app: health and metrics, and the routes of the channels this process serves (the web chat's page, the
platforms' webhooks).

Every request's headers are held to MAX_HEADER_BYTES (431 beyond). Every inbound endpoint follows one path, built
from channels/webhook.py's steps: read the body within MAX_BODY_BYTES → verify → parse → record
(`Lessonbot.receive`) → acknowledge. Processing happens after the response, in the conversation worker.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import dialogs
from bot.certificate_page import certificate_routes
from bot.channel import Channel, HasRoutes
from bot.config import Settings
from bot.core import Lessonbot, attach_clock
from bot.dashboard import dashboard_routes
from bot.dashboard.access import Access
from bot.dashboard.layout import HEADERS as DASHBOARD_HEADERS
from bot.observability import (
    INBOUND_PENDING,
    MODEL_CALLS_TODAY,
    MODEL_TOKENS_TODAY,
    OUTBOX_DEPTH,
    REGISTRY,
    WithoutDatabaseGauges,
)
from bot.outage import Outage
from bot.payments import payment_routes
from channels.webchat import WebChatChannel
from dialogs.pages import slack_words, web_chat_words
from dialogs.payments import PaymentDesk
from storage.db import Database
from storage.knowledge import model_use_today
from storage.migrate import current_revisions, head_revisions
from storage.outbox import outbox_counts, pending_inbound_count

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024  # what nginx and h11 allow by default; no platform's webhook sends a tenth of it


def headers_refusal(scope: Scope) -> Response | None:
    """431 when the request's headers, names and values together, are over MAX_HEADER_BYTES; else None."""
    size = sum(len(name) + len(value) for name, value in scope["headers"])
    if size <= MAX_HEADER_BYTES:
        return None
    message = f"The request's headers are {size:,} bytes; the limit is {MAX_HEADER_BYTES:,}."
    return JSONResponse({"error": message}, status_code=431)


class LimitHeaders:
    """Refuse (431) a request whose headers, names and values together, are over MAX_HEADER_BYTES."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (refused := headers_refusal(scope)) is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


Endpoint = Callable[[Request], Awaitable[Response]]


def exact_routes(routes: list[Any]) -> dict[tuple[str, str], Endpoint]:
    """The routes a request can be sent to by its exact method and path: each route of a fixed path (no parameters)
    with an async endpoint, for each of its methods, where Starlette's router, walking `routes` in order, would
    choose that same route (asked here, once, of the routes themselves)."""
    table: dict[tuple[str, str], Endpoint] = {}
    for route in routes:
        if not isinstance(route, Route) or route.param_convertors or not route.methods:
            continue
        if not inspect.iscoroutinefunction(route.endpoint):
            continue
        for method in route.methods:
            scope = {"type": "http", "method": method, "path": route.path, "root_path": "", "headers": []}
            if next(each for each in routes if each.matches(scope)[0] is Match.FULL) is route:
                table.setdefault((method, route.path), route.endpoint)
    return table


class App(Starlette):
    """Starlette, with a request for a fixed path found by its exact method and path, ahead of the middleware stack
    and the router (which walks the route list, a regular expression a route, and wraps `send` once a layer).

    Such a request is answered as Starlette would answer it: its headers held to MAX_HEADER_BYTES (431, LimitHeaders'
    check), the route's endpoint called with a `Request` and its response sent. An HTTPException of the endpoint is
    answered with its status and detail, as Starlette's ExceptionMiddleware does; any other exception with Starlette's
    plain 500 ("Internal Server Error", never a traceback), then raised on to the server, which logs it. One raised
    while the response is sent goes to the server, which answers 500 if nothing was sent yet, else closes the
    connection. Anything else (a path with parameters, a method the path does not take, a mount, a `root_path`) goes
    through Starlette as before; and everything does when the app has other middleware than LimitHeaders, exception
    handlers of its own, or debug on, whose answers this shortcut would not give."""

    def __init__(self, *, routes: list[Any], headers_under: Mapping[str, Mapping[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(routes=routes, **kwargs)
        # Headers every response under a path prefix carries, whoever answers (a page, a redirect, the router's 404
        # or 405, a 500): the dashboard's security headers (`with_headers`)
        self.headers_under = {prefix: _raw_headers(headers) for prefix, headers in (headers_under or {}).items()}
        plain = not self.debug and not self.exception_handlers
        plain = plain and all(middleware.cls is LimitHeaders for middleware in self.user_middleware)
        self.exact = exact_routes(routes) if plain else {}

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None:
        self.exact = {}
        super().add_middleware(middleware_class, *args, **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.headers_under:
            path = scope["path"][len(scope.get("root_path", "")):] if scope.get("root_path") else scope["path"]
            for prefix, headers in self.headers_under.items():
                if path == prefix or path.startswith(prefix + "/"):
                    send = with_headers(send, headers)
                    break
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self.exact.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self
                response = headers_refusal(scope)
                if response is None:
                    try:
                        response = await endpoint(Request(scope, receive, send))
                    except HTTPException as exc:  # as Starlette's ExceptionMiddleware answers it (a bad form: 400)
                        response = (
                            Response(status_code=exc.status_code, headers=exc.headers)
                            if exc.status_code in {204, 304}
                            else PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
                        )
                    except Exception:
                        await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
                        raise
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _raw_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


def with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding to the response's start each of `headers` it does not carry already."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {name.lower() for name, _ in message.get("headers", [])}
            missing = [(name, value) for name, value in headers if name not in present]
            if missing:
                message = {**message, "headers": [*message.get("headers", []), *missing]}
        await send(message)

    return sending


def build_channels(settings: Settings, db: Database) -> list[Channel]:
    """The channels the settings turn on, each made by its own step below (which logs why it is off, where it is).
    `db` is the process's database (the one its Lessonbot uses): the Slack installations are kept there."""
    made = (make(settings, db) for make in (_web_chat, _telegram, _whatsapp, _slack, _rasa))
    return [channel for channel in made if channel is not None]


def _web_chat(settings: Settings, _db: Database) -> Channel | None:
    if not settings.web_chat_enabled:
        return None
    return WebChatChannel(
        settings.resolved_secret_key,
        max_body_bytes=settings.max_body_bytes,
        poll_seconds=settings.web_chat_poll_seconds,
        session_idle_days=settings.web_chat_session_idle_days,
        streams_per_address=settings.web_chat_streams_per_address,
        streams_total=settings.web_chat_streams_total,
        words=web_chat_words,
    )


def _telegram(settings: Settings, _db: Database) -> Channel | None:
    if not settings.telegram_bot_token:
        log.info("telegram is off: set TELEGRAM_BOT_TOKEN (from @BotFather) and TELEGRAM_WEBHOOK_SECRET")
        return None
    if not settings.telegram_webhook_secret:
        log.error(
            "telegram is off: TELEGRAM_WEBHOOK_SECRET is empty, and an unsigned webhook would take updates from "
            "anyone; set it to a random string (e.g. `openssl rand -hex 32`), then `lessonbot telegram set-webhook URL`"
        )
        return None
    from channels.telegram import TelegramChannel

    return TelegramChannel(
        token=settings.telegram_bot_token,
        webhook_secret=settings.telegram_webhook_secret,
        api_base_url=settings.telegram_api_base_url,
        max_body_bytes=settings.max_body_bytes,
    )


def _whatsapp(settings: Settings, _db: Database) -> Channel | None:
    given = (settings.twilio_account_sid, settings.twilio_auth_token, settings.twilio_whatsapp_from)
    if not any(given):
        log.info("whatsapp is off: set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_WHATSAPP_FROM and PUBLIC_BASE_URL")
        return None
    if not all(given):
        log.error("whatsapp is off: set all of TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_WHATSAPP_FROM")
        return None
    if not settings.public_base_url:
        log.error(
            "whatsapp is off: PUBLIC_BASE_URL is empty, and Twilio's signatures are computed over the URL it "
            "calls; set it to the https address Twilio reaches (your domain or tunnel), e.g. "
            "https://bot.example.com"
        )
        return None
    from channels.whatsapp import WhatsAppChannel

    return WhatsAppChannel(
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        sender=settings.twilio_whatsapp_from,
        public_base_url=settings.public_base_url,
        api_base_url=settings.twilio_api_base_url,
        max_body_bytes=settings.max_body_bytes,
        template_content_sid=settings.twilio_template_content_sid,
        quick_reply_content_sids=settings.twilio_quick_reply_content_sids,
    )


def _slack(settings: Settings, db: Database) -> Channel | None:
    many_workspaces = bool(settings.slack_client_id and settings.slack_client_secret)
    if not (settings.slack_signing_secret and (settings.slack_bot_token or many_workspaces)):
        if settings.slack_bot_token or settings.slack_client_id or settings.slack_client_secret:
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
        return None
    from channels.slack import SlackChannel
    from channels.slack.installations import SlackInstallations

    if many_workspaces and settings.slack_bot_token:
        log.warning("slack: SLACK_BOT_TOKEN is ignored; each workspace's token comes from its installation")
    return SlackChannel(
        signing_secret=settings.slack_signing_secret,
        bot_token=settings.slack_bot_token,
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret,
        installations=SlackInstallations(db) if many_workspaces else None,
        api_base_url=settings.slack_api_base_url,
        public_base_url=settings.public_base_url,
        max_body_bytes=settings.max_body_bytes,
        commands=frozenset(f"/{command.name}" for command in dialogs.COMMANDS),
        words=slack_words,
    )


def _rasa(settings: Settings, _db: Database) -> Channel | None:
    if not settings.rasa_url:
        log.info("rasa is off for sending: set RASA_URL (a Rasa server run with --enable-api)")
        return None
    from bot.rasa_actions import rasa_file_links, rasa_message_seal
    from channels.rasa import RasaChannel

    return RasaChannel(
        server_url=settings.rasa_url,
        seal=rasa_message_seal(settings),
        token=settings.rasa_token,
        intent=settings.rasa_trigger_intent,
        output_channel=settings.rasa_output_channel,
        sends_per_second=settings.rasa_sends_per_second,
        files=rasa_file_links(settings),
    )


# Scrapes that cannot read the database while it is away: the first logged with its traceback, then once a minute.
_READING_GAUGES = Outage(log, "metrics: reading the queues' depth and the model's use from the database")


async def exposition(db: Database) -> bytes:
    """What `GET /metrics` answers (Prometheus' text format): every metric of REGISTRY, the gauges read from the
    database first (`serve`'s, and `dispatch --metrics-port`'s: the counters are each process's own). While the
    database cannot be read, those gauges are left out, not shown at the values of the last scrape that read them."""
    try:
        async with db.sessions() as session:
            for status, count in (await outbox_counts(session)).items():
                OUTBOX_DEPTH.labels(status).set(count)
            INBOUND_PENDING.set(await pending_inbound_count(session))
            calls, tokens = await model_use_today(session)
            MODEL_CALLS_TODAY.set(calls)
            MODEL_TOKENS_TODAY.set(tokens)
    except Exception:
        _READING_GAUGES.failed()
        return generate_latest(WithoutDatabaseGauges())
    _READING_GAUGES.ended()
    return generate_latest(REGISTRY)


def create_app(
    settings: Settings,
    *,
    process: bool = True,
    dispatch: bool = True,
    channels: list[Channel] | None = None,
) -> Starlette:
    db = Database(settings.resolved_database_url)
    channels = build_channels(settings, db) if channels is None else channels
    lessonbot = Lessonbot(settings, channels, process=process, dispatch=dispatch, elect=True, db=db)
    attach_clock(lessonbot)  # lessons, nudges and broadcasts run wherever the dispatcher is elected

    # health ---------------------------------------------------------------------------------------------------

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
            at = (f"database schema is at {', '.join(sorted(current)) or 'nothing'}, the code expects "
                  f"{', '.join(sorted(expected))}")
            # ahead of this code: no upgrade brings it here; the command line's own words say what does
            from bot.cli.database import newer_schema

            newer = newer_schema(current)
            return JSONResponse(
                {"status": "unavailable", "reason": f"{at}. {newer}" if newer else f"{at}: run `lessonbot db upgrade`"},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "schema": sorted(current)})

    async def metrics(request: Request) -> Response:
        return Response(await exposition(lessonbot.db), media_type=CONTENT_TYPE_LATEST)

    routes: list[Any] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        *certificate_routes(lessonbot.db),  # the public verification page printed on every certificate
    ]
    # The admins' dashboard (bot/dashboard): sign-in by a link the bot sends in chat, pages for their roles.
    access = Access(lessonbot.db, secret_key=settings.resolved_secret_key, owners=settings.admins,
                    site_url=settings.site_url, max_body_bytes=settings.max_body_bytes)
    routes += dashboard_routes(lessonbot.db, access, data_dir=settings.data_dir,
                              payments=lessonbot.worker.payments or PaymentDesk())

    routes += payment_routes(settings, lessonbot.db, lessonbot.receive, max_body_bytes=settings.max_body_bytes)
    for channel in channels:
        # Channels bring their own routes (the web chat's page, the platforms' webhooks); each inbound one
        # verifies, then records, then acknowledges.
        if isinstance(channel, HasRoutes):
            routes += channel.routes(lessonbot)

    app = App(routes=routes, lifespan=lifespan_of(lessonbot), middleware=[Middleware(LimitHeaders)],
              headers_under={"/admin": DASHBOARD_HEADERS})
    app.state.lessonbot = lessonbot
    return app


def lifespan_of(lessonbot: Lessonbot) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """An app's lifespan: `lessonbot` runs while the app serves."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("channels on: %s", ", ".join(lessonbot.channels) or "none")
        lessonbot.start()
        try:
            yield
        finally:
            await lessonbot.stop()

    return lifespan


async def healthz(request: Request) -> Response:
    """The process is up."""
    return JSONResponse({"status": "ok"})
