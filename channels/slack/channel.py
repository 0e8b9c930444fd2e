"""Slack: direct messages, mentions, button presses and slash commands in; Block Kit messages and files out.

Inbound, on one Request URL (`POST /slack/events`, for the Events API, interactivity and slash commands):
read the body within the size limit → verify Slack's v0 signature (HMAC-SHA256 of "v0:timestamp:body" under the
signing secret, constant-time, timestamp within 5 minutes; 401 otherwise) → hand the request to a slack-bolt app
whose listeners turn it into an InboundMessage, record it (`host.receive`), and only then `ack()`. Bolt runs with
`process_before_response=True`, so the HTTP answer leaves after the listener: nothing is acknowledged before it is
stored, and recording is one insert, well inside Slack's 3 seconds. The answer to the learner comes later, from
the worker, through `send`. Requests no listener wants (view submissions, other events) are acknowledged and
logged with the reason; an error of ours answers 500, so Slack delivers the request again.

Workspaces: with SLACK_BOT_TOKEN the app serves one workspace; with SLACK_CLIENT_ID / SLACK_CLIENT_SECRET it is
installable into many through Bolt's OAuth flow (`GET /slack/install` → Slack → `GET /slack/oauth_redirect`), each
installation kept in our database; Bolt authorizes every request with it, and `send` finds the workspace's bot token
in it through the installation prefix of chat_id (see channels.slack_inbound).

Outbound (`send`): text as Block Kit (channels.slack_blocks), documents with a file path through files_upload_v2,
documents with only a URL as a link. Errors: a 429 becomes RateLimited(Retry-After); 5xx, timeouts and dropped
connections TransientSendError; errors that will not go away (channel_not_found, not_in_channel, account_inactive,
invalid_auth, …) PermanentSendError. Slack allows about one message per second per channel.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from slack_bolt import BoltResponse
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.messages import Document
from channels.base import (
    ChannelHost,
    Delivery,
    PermanentSendError,
    RateLimit,
    RateLimited,
    RequestRejected,
    SendError,
    TransientSendError,
)
from channels.http import read_limited_body
from channels.slack_blocks import ReplyNotRenderable, SlackMessage, escape_mrkdwn, render_link, render_text
from channels.slack_inbound import (
    Ignored,
    Outcome,
    installation_of,
    message_from_action,
    message_from_command,
    message_from_event,
    split_chat_id,
)
from channels.slack_store import InstallationRecords, SlackInstallationStore, SlackOAuthStateStore

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://slack.com/api/"
SIGNATURE_WINDOW_SECONDS = 5 * 60  # Slack's own: older (or future) timestamps are refused as possible replays

# The bot scopes the app asks for; channels/slack_manifest.yml lists the same (a test keeps them equal).
SCOPES = (
    "app_mentions:read",  # app_mention events: the bot is mentioned in a channel
    "chat:write",  # chat.postMessage: every reply
    "commands",  # /lesson, /quiz, /ask, /progress
    "files:write",  # files_upload_v2: documents (certificates, handouts)
    "im:history",  # message.im events: what learners write in the bot's DM
    "im:read",  # see the DMs the bot is in
    "im:write",  # start a DM with a learner
    "users:read",  # a learner's profile (name, time zone); asked for now so lesson times need no re-install
)

# Slack error codes that no retry will fix (https://docs.slack.dev/reference/methods/chat.postMessage#errors).
PERMANENT_ERRORS = frozenset({
    "account_inactive", "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "token_revoked", "token_expired", "no_permission", "missing_scope", "restricted_action", "cannot_dm_bot",
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "too_many_attachments",
    "team_access_not_granted", "ekm_access_denied", "user_not_in_channel", "invalid_arguments",
    "not_allowed_token_type", "channel_is_archived", "file_uploads_disabled", "file_upload_size_restricted",
})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
PROGRESS_REMEMBERED = 1000  # outbox rows whose partly sent replies are remembered, for resuming after a failure


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackChannel:
    """Slack, for one workspace (a bot token) or many (OAuth installations in our database)."""

    name = "slack"

    def __init__(
        self,
        *,
        signing_secret: str,
        max_body_bytes: int,
        bot_token: str = "",
        client_id: str = "",
        client_secret: str = "",
        installations: InstallationRecords | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        public_base_url: str = "",
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not signing_secret:
            raise ValueError("SLACK_SIGNING_SECRET is needed to verify that requests come from Slack")
        self.multi_workspace = bool(client_id and client_secret)
        if self.multi_workspace and installations is None:
            raise ValueError("installing into many workspaces needs installation records (bot.slack_installations)")
        if not self.multi_workspace and not bot_token:
            raise ValueError("set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (many)")
        self.max_body_bytes = max_body_bytes
        self.api_base_url = api_base_url
        self.timeout = timeout
        self._signing_secret = signing_secret
        self._verifier = SignatureVerifier(signing_secret, clock=_Clock(now))
        self._now = now
        self._bot_token = "" if self.multi_workspace else bot_token
        self._client_id, self._client_secret = client_id, client_secret
        self._redirect_uri = f"{public_base_url.rstrip('/')}/slack/oauth_redirect" if public_base_url else None
        self._installations = installations if self.multi_workspace else None
        self.installation_store = self.state_store = None
        if self._installations is not None:
            self.installation_store = SlackInstallationStore(self._installations)
            self.state_store = SlackOAuthStateStore(self._installations)
        # One client for the single workspace; in many-workspace mode a client per send with that team's token.
        self._client = self._web_client(self._bot_token) if self._bot_token else None
        # Parts already posted of a reply split over several messages, by outbox id: a retry resumes after them.
        self._progress: OrderedDict[int, list[str]] = OrderedDict()

    async def close(self) -> None:
        if self._installations is not None:
            await self._installations.close()

    # inbound --------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[Route]:
        app = self._bolt_app(host)

        async def events(request: Request) -> Response:
            try:
                body = await read_limited_body(request, self.max_body_bytes)
                self.verify(body, request.headers)
                bolt_request = _bolt_request(request, body)
            except RequestRejected as exc:
                if exc.status == 401:
                    log.warning("slack request refused: %s", exc.message)
                return JSONResponse({"error": exc.message}, status_code=exc.status)
            return to_starlette_response(await app.async_dispatch(bolt_request))

        async def install(request: Request) -> Response:
            if app.oauth_flow is None:
                return _one_workspace_only()
            return to_starlette_response(await app.oauth_flow.handle_installation(_bolt_request(request, b"")))

        async def oauth_redirect(request: Request) -> Response:
            if app.oauth_flow is None:
                return _one_workspace_only()
            return to_starlette_response(await app.oauth_flow.handle_callback(_bolt_request(request, b"")))

        return [
            Route("/slack/events", events, methods=["POST"]),
            Route("/slack/install", install, methods=["GET"]),
            Route("/slack/oauth_redirect", oauth_redirect, methods=["GET"]),
        ]

    def verify(self, body: bytes, headers: Any) -> None:
        """Slack's v0 signature over the exact body, within 5 minutes of our clock; RequestRejected(401) if not."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise RequestRejected(
                401, "Missing X-Slack-Signature or X-Slack-Request-Timestamp: only Slack may call this URL."
            )
        if not timestamp.isdigit():
            raise RequestRejected(401, "X-Slack-Request-Timestamp is not a Unix time in seconds.")
        if abs(self._now() - int(timestamp)) > SIGNATURE_WINDOW_SECONDS:
            raise RequestRejected(
                401, "X-Slack-Request-Timestamp is more than 5 minutes from this server's clock (a replay, or a "
                "clock out of sync: check NTP)."
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestRejected(400, "The body is not UTF-8 text, so it is not from Slack.") from None
        if not self._verifier.is_valid(text, timestamp, signature):
            raise RequestRejected(
                401, "X-Slack-Signature does not match: check SLACK_SIGNING_SECRET (Basic Information → App "
                "Credentials → Signing Secret)."
            )

    def _bolt_app(self, host: ChannelHost) -> AsyncApp:
        """The Bolt app whose listeners record what Slack sends into `host`, then acknowledge it."""
        oauth_settings = None
        if self.multi_workspace:
            oauth_settings = AsyncOAuthSettings(
                client_id=self._client_id,
                client_secret=self._client_secret,
                scopes=list(SCOPES),
                user_scopes=[],
                redirect_uri=self._redirect_uri,
                install_page_rendering_enabled=False,  # /slack/install goes straight to Slack's consent page
                installation_store=self.installation_store,
                installation_store_bot_only=True,
                state_store=self.state_store,
            )
        app = AsyncApp(
            logger=logging.getLogger(f"{__name__}.bolt"),
            signing_secret=self._signing_secret,
            client=AsyncWebClient(token=self._bot_token or None, base_url=self.api_base_url, timeout=self.timeout),
            oauth_settings=oauth_settings,
            # Record, then acknowledge: the listener finishes before the HTTP answer leaves.
            process_before_response=True,
            # Unmatched requests reach on_error below, which acknowledges them with a logged reason.
            raise_error_for_unhandled_request=True,
            # `verify` has checked the signature already, before Bolt parses anything.
            request_verification_enabled=False,
            # channels.slack_inbound ignores the bot's own messages (and other bots'), logging why.
            ignoring_self_events_enabled=False,
            user_facing_authorize_error_message=(
                "Lessonbot is not installed in this workspace (any more). Ask an admin to install it again."
            ),
        )
        if self.multi_workspace:
            app.enable_token_revocation_listeners()  # app_uninstalled / tokens_revoked forget the installation

        async def record(outcome: Outcome, request: AsyncBoltRequest) -> None:
            retry = request.headers.get("x-slack-retry-num", [None])[0]
            if isinstance(outcome, Ignored):
                log.info("slack request ignored: %s", outcome.reason)
                return
            recorded = await host.receive(outcome)
            if recorded.duplicate:
                reason = request.headers.get("x-slack-retry-reason", [""])[0]
                log.info(
                    "slack delivery %s was recorded before%s", outcome.platform_id,
                    f" (Slack's retry {retry}: {reason})" if retry else "",
                )

        async def on_event(
            ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
        ) -> None:
            outcome = message_from_event(body, installation=_installation(context), bot_user_id=context.bot_user_id)
            await record(outcome, request)
            await ack()

        async def on_action(
            ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
        ) -> None:
            await record(message_from_action(body, installation=_installation(context)), request)
            await ack()

        async def on_command(
            ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
        ) -> None:
            outcome = message_from_command(body, installation=_installation(context))
            await record(outcome, request)
            # Slack shows an ack's text to the person alone; a recorded command is answered by the worker instead.
            if isinstance(outcome, Ignored) and outcome.answer:
                await ack(text=outcome.answer)
            else:
                await ack()

        async def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
            if isinstance(error, BoltUnhandledRequestError):
                log.info("slack request ignored: nothing here handles %s", _describe(body))
                return BoltResponse(status=200, body="")
            log.error("slack request failed; Slack will deliver it again", exc_info=error)
            return BoltResponse(status=500, body="")

        app.event("message")(on_event)
        app.event("app_mention")(on_event)
        app.block_action(re.compile(".*"))(on_action)
        app.command(re.compile(".*"))(on_command)
        app.error(on_error)
        return app

    # outbound -------------------------------------------------------------------------------------------------

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        """chat.postMessage: about one message per second per channel (short bursts tolerated)."""
        return (RateLimit(f"slack:channel:{chat_id}", 1, 1.0),)

    async def send(self, delivery: Delivery) -> str:
        """Post one reply; returns the ts of its last message (or the uploaded file's id)."""
        installation, channel = split_chat_id(delivery.chat_id)
        reply = delivery.reply
        try:
            client = await self._client_for(installation)
            if isinstance(reply, Document) and reply.path:
                return await self._upload(client, channel, reply)
            if isinstance(reply, Document):
                if not reply.url:
                    raise PermanentSendError(f"document {reply.filename!r} has neither a path nor a URL")
                messages = [render_link(reply)]
            else:
                messages = render_text(reply)
            return await self._post(client, channel, messages, outbox_id=delivery.outbox_id)
        except ReplyNotRenderable as exc:
            raise PermanentSendError(f"Slack cannot show this reply: {exc}") from exc
        except SlackApiError as exc:
            raise send_error(exc) from exc
        except SlackRequestError as exc:  # a file upload's second step (the upload URL) failed
            raise TransientSendError(f"Slack file upload failed: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransientSendError(f"Slack unreachable: {type(exc).__name__}: {exc}") from exc

    async def _client_for(self, installation: str) -> AsyncWebClient:
        if self._client is not None:
            return self._client
        assert self.installation_store is not None
        org_wide = installation.startswith("E")
        bot = await self.installation_store.async_find_bot(
            enterprise_id=installation if org_wide else None,
            team_id=None if org_wide else installation,
            is_enterprise_install=org_wide,
        )
        if bot is None:
            raise PermanentSendError(
                f"the Slack app is not installed in {installation or 'this workspace'} (uninstalled, or never "
                "installed): install it through /slack/install"
            )
        return self._web_client(bot.bot_token)

    def _web_client(self, token: str) -> AsyncWebClient:
        # No retry handlers: the dispatcher decides about retries (with backoff, and Retry-After for 429s).
        return AsyncWebClient(token=token, base_url=self.api_base_url, timeout=self.timeout, retry_handlers=[])

    async def _post(self, client: AsyncWebClient, channel: str, messages: list[SlackMessage], *, outbox_id: int) -> str:
        """Post the messages in order. If one fails, the ones before it are remembered: the dispatcher's retry
        posts only the rest (within this process; after a restart the earlier parts would be posted again)."""
        posted = self._progress.pop(outbox_id, [])
        try:
            for message in messages[len(posted) :]:
                response = await client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
                posted.append(str(response.get("ts") or ""))
        except BaseException:
            if posted:
                self._progress[outbox_id] = posted
                while len(self._progress) > PROGRESS_REMEMBERED:
                    self._progress.popitem(last=False)
            raise
        return posted[-1]

    async def _upload(self, client: AsyncWebClient, channel: str, document: Document) -> str:
        path = Path(document.path or "")
        try:
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise PermanentSendError(f"document {document.filename!r} cannot be read at {path}: {exc}") from exc
        response = await client.files_upload_v2(
            channel=channel,
            content=content,
            filename=document.filename,
            title=document.filename,
            initial_comment=escape_mrkdwn(document.caption) or None,
        )
        return str((response.get("file") or {}).get("id") or "")


def send_error(exc: SlackApiError) -> SendError:
    """What the dispatcher should do about a failed Slack API call."""
    response = exc.response
    status = getattr(response, "status_code", None) or getattr(response, "status", None) or 0
    data = getattr(response, "data", None)
    error = data.get("error", "") if isinstance(data, dict) else ""
    headers = getattr(response, "headers", None) or {}
    if status == 429 or error == "ratelimited":
        return RateLimited(_retry_after(headers.get("Retry-After")), "Slack rate limit")
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientSendError(f"Slack answered {status} {error}".rstrip())
    if error in PERMANENT_ERRORS or 400 <= status < 500:
        return PermanentSendError(f"Slack refused the message: {error or status}")
    # ok=false with an error code not listed above: a request Slack judged wrong; repeating it will not help.
    return PermanentSendError(f"Slack refused the message: {error or 'unknown error'} (HTTP {status})")


def _retry_after(value: object) -> float:
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        return 1.0


def _installation(context: AsyncBoltContext) -> str:
    return installation_of(
        enterprise_id=context.enterprise_id,
        team_id=context.team_id,
        is_enterprise_install=context.is_enterprise_install,
    )


def _bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    """Bolt's request object for a verified body; RequestRejected(400) if the body is not what Slack sends."""
    try:
        bolt_request = to_async_bolt_request(request, body)
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise RequestRejected(400, f"The body is not a Slack payload (JSON, or form fields): {exc}") from None
    payload = bolt_request.body
    if payload.get("type") == "event_callback" and not isinstance(payload.get("event"), dict):
        raise RequestRejected(400, "An event_callback without an event object.")
    return bolt_request


def _describe(body: dict[str, Any]) -> str:
    event = body.get("event")
    kind = body.get("type") or ("slash command" if "command" in body else "request")
    if isinstance(event, dict):
        return f"{kind} {event.get('type')!r}"
    return f"{kind} {body.get('command') or ''}".rstrip()


def _one_workspace_only() -> Response:
    return PlainTextResponse(
        "This Lessonbot serves one Slack workspace (SLACK_BOT_TOKEN). Installing it into others through "
        "/slack/install needs SLACK_CLIENT_ID and SLACK_CLIENT_SECRET.",
        status_code=404,
    )
