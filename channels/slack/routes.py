"""Slack's Request URL and install flow: `POST /slack/events` built from the shared steps (channels/webhook.py),
`GET /slack/install` and `GET /slack/oauth_redirect` handed to Bolt's OAuth flow.

`POST /slack/events` (the Events API, interactivity and slash commands): size limit (413) → verify Slack's v0
signature (HMAC-SHA256 of "v0:timestamp:body" under the signing secret, constant-time, timestamp within 5 minutes;
401 otherwise) → parse the body as Bolt's request (400) → Bolt's listeners turn it into an InboundMessage, record it
(`host.receive`), and only then `ack()`. Bolt runs with `process_before_response=True`, so the HTTP answer leaves
after the listener: nothing is acknowledged before it is stored, and recording is one insert, well inside Slack's
3 seconds. Requests no listener wants (other view submissions, other events) are acknowledged and logged with the
reason; an error of ours answers 500, and the database away a 503 with Retry-After (as every webhook here), so Slack
delivers the request again. A "Type an answer" press calls Slack
before the acknowledgement: its modal must be opened with the press's trigger_id, which lasts 3 seconds
(`open_form`); `/lessonbot team …` and member_joined_channel read the person's profile (users.info) and the
installation's installer then too (`workspace_standing`). Each gives up after BEFORE_ACK_TIMEOUT and carries on
without what it waited for, so the acknowledgement is in time. What needs only the database and can follow the
acknowledgement does (a note in the person's language, after their language is looked up: Bolt's lazy listener
`Listeners.note_after_ack`, through the request's response_url). Those run as tasks the channel keeps
(`AfterAcknowledgement`): a server that stops waits for the ones under way, within the dispatcher's grace.

Bolt has a signature check of its own; it is turned off (`request_verification_enabled=False`) because
`SlackSignature` has checked the same signature before Bolt parses anything, as every platform's webhook verifies
before it parses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from slack_bolt import BoltResponse
from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request, to_starlette_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.lazy_listener.async_internals import to_runnable_function
from slack_bolt.lazy_listener.asyncio_runner import AsyncioLazyListenerRunner
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot.channel import CannotRecord, ChannelHost, RequestRejected
from bot.messages import FROM_A_BOT, GUEST, MEMBERSHIP, TIMEZONE, WORKSPACE_ADMIN, InboundMessage, InboundMeta
from channels.slack.inbound import (
    ANSWER_FORM_CALLBACK,
    CHANNEL,
    MEMBERSHIP_EVENTS,
    NOT_INSTALLED,
    NOTES,
    TEAM_COMMAND,
    Outcome,
    answer_form,
    answered_in_direct_messages,
    filled,
    home_opened,
    installation_of,
    membership_change,
    message_from_action,
    message_from_command,
    message_from_event,
    message_from_view,
    person_of,
    unknown_command,
)
from channels.slack.store import (
    NotInstalled,
    SlackInstallationStore,
    SlackOAuthStateStore,
    StoreAuthorize,
    TokenAuthorize,
)
from channels.webhook import RETRY_AFTER_SECONDS, Ignored, LimitBody, Webhook, WebhookRequest, within_json_depth

if TYPE_CHECKING:
    from channels.slack.channel import SlackChannel

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
# What Bolt reads out of a payload into its context and hands on (the workspace to authorize, who and where): text,
# or absent, in all Slack sends.
CONTEXT_IDS = ("enterprise_id", "team_id", "user_id", "channel_id", "actor_enterprise_id", "actor_team_id",
               "actor_user_id", "thread_ts", "response_url")
# A Unix time in seconds: ASCII digits (str.isdigit() takes "²" too), few enough for int() (Slack's have 10)
UNIX_TIME = re.compile(r"[0-9]{1,12}")
SIGNATURE_WINDOW_SECONDS = 5 * 60  # Slack's own: older (or future) timestamps are refused as possible replays
# Seconds a call made before the acknowledgement may take (views.open, users.info and the installer's look-up
# together): Slack waits 3 for the acknowledgement (a press's trigger_id lasts as long), and gives up after them.
BEFORE_ACK_TIMEOUT = 2.0
FORM_TIMEOUT = BEFORE_ACK_TIMEOUT  # views.open
# Seconds the language of a note sent after the acknowledgement (through the request's response_url, valid for 30
# minutes) may take to look up before the note goes in English.
LANGUAGE_TIMEOUT = 10.0
# Where a listener leaves, for `Listeners.note_after_ack`, the note to show a person after the acknowledgement: their
# sender id, the key of its words (inbound.NOTES) and the values to fill in (Bolt hands its lazy listener a copy of
# the request's context).
NOTE_AFTER_ACK = "lessonbot_note_after_ack"

# The bot scopes the app asks for; channels/slack/manifest.yml lists the same (a test keeps them equal).
SCOPES = (
    "app_mentions:read",  # app_mention events: the bot is mentioned in a channel
    "channels:read",  # conversations.members and member_joined_channel in public channels: a team's members
    "chat:write",  # chat.postMessage and chat.postEphemeral: every reply, a member's private quiz in a channel
    "commands",  # /lesson, /quiz, /ask, /progress, /lessonbot
    "groups:read",  # the same in private channels
    "files:write",  # files_upload_v2: documents (certificates, handouts)
    "im:history",  # message.im events: what learners write in the bot's DM
    "im:read",  # see the DMs the bot is in
    "im:write",  # start a DM with a learner
    "users:read",  # users.info: a member's name, time zone, and whether they are a guest, a bot or a workspace admin
)


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackSignature:
    """Verify: Slack's v0 signature over the exact body, within 5 minutes of our clock (401 otherwise)."""

    def __init__(self, signing_secret: str, *, now: Callable[[], float] = time.time) -> None:
        self._verifier = SignatureVerifier(signing_secret, clock=_Clock(now))
        self._now = now

    async def __call__(self, request: WebhookRequest) -> None:
        self.check(request.body, request.http.headers)

    def check(self, body: bytes, headers: Mapping[str, str]) -> None:
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise RequestRejected(
                401, "Missing X-Slack-Signature or X-Slack-Request-Timestamp: only Slack may call this URL."
            )
        if not UNIX_TIME.fullmatch(timestamp):
            raise RequestRejected(401, "X-Slack-Request-Timestamp is not a Unix time in seconds.")
        if not signature.isascii():  # hmac.compare_digest compares ASCII text only: no signature of Slack's
            raise RequestRejected(401, "X-Slack-Signature does not match: the signature did not verify.")
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
            # The caller learns only that the signature did not verify; what to check is for the operator's log.
            log.warning(
                "a Slack request's X-Slack-Signature did not verify: if Slack sent it, check SLACK_SIGNING_SECRET "
                "(Basic Information → App Credentials → Signing Secret)"
            )
            raise RequestRejected(401, "X-Slack-Signature does not match: the signature did not verify.")


class ParseBoltRequest:
    """Parse: the verified body as Bolt's request (400 when it is neither Slack's JSON nor its form fields, or when
    its JSON nests deeper than channels.webhook.MAX_JSON_DEPTH, which is refused before Bolt parses it)."""

    async def __call__(self, request: WebhookRequest) -> None:
        within_json_depth(_json_in(request.body))
        request.payload = bolt_request(request.http, request.body)


def _json_in(body: bytes) -> bytes:
    """The JSON a Slack body carries: the body itself (Events API), or an interaction's `payload` form field."""
    if body.lstrip().startswith(b"{"):
        return body
    return parse_qs(body.decode("utf-8", "replace")).get("payload", [""])[0].encode()


class AfterAcknowledgement(AsyncioLazyListenerRunner):
    """Bolt's lazy listeners (`Listeners.note_after_ack`), each run as a task kept here until it ends, so a stopping
    server can wait for the notes under way (`finish`) instead of dropping them with the event loop. (Bolt's own
    runner keeps no hold on its tasks.)"""

    def __init__(self) -> None:
        super().__init__(logger=logging.getLogger("channels.slack.bolt"))
        self.running: set[asyncio.Task[None]] = set()

    def start(self, function: Callable[..., Awaitable[None]], request: AsyncBoltRequest) -> None:
        task = asyncio.get_running_loop().create_task(
            to_runnable_function(internal_func=function, logger=self.logger, request=request), name="slack-after-ack"
        )
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def finish(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the work under way (and any it starts meanwhile), then cancel the rest."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.running:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            await asyncio.wait(set(self.running), timeout=left)
        cut = list(self.running)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)
        if cut:
            log.warning("stopped with %d slack notes after an acknowledgement not yet shown: they are lost", len(cut))


class BoltListeners:
    """Record, then acknowledge: Bolt's listeners record the request into the host, then `ack()`; Bolt's answer is
    the outcome."""

    def __init__(self, app: AsyncApp) -> None:
        self.app = app

    async def __call__(self, request: WebhookRequest) -> None:
        request.outcome = await self.app.async_dispatch(request.payload)


def webhook_routes(channel: SlackChannel, host: ChannelHost) -> list[Route]:
    app = bolt_app(channel, host)
    events = Webhook(
        LimitBody(channel.max_body_bytes),
        SlackSignature(channel.signing_secret, now=channel.now),
        ParseBoltRequest(),
        BoltListeners(app),
        acknowledge=lambda request: to_starlette_response(request.outcome),
        refuse=refused,
    )

    async def install(request: Request) -> Response:
        if app.oauth_flow is None:
            return _one_workspace_only()
        return to_starlette_response(await app.oauth_flow.handle_installation(bolt_request(request, b"")))

    async def oauth_redirect(request: Request) -> Response:
        if app.oauth_flow is None:
            return _one_workspace_only()
        return to_starlette_response(await app.oauth_flow.handle_callback(bolt_request(request, b"")))

    return [
        events.route(EVENTS_PATH),
        Route("/slack/install", install, methods=["GET"]),
        Route("/slack/oauth_redirect", oauth_redirect, methods=["GET"]),
    ]


def bolt_app(channel: SlackChannel, host: ChannelHost) -> AsyncApp:
    """The Bolt app whose listeners record what Slack sends into `host`, then acknowledge it."""
    oauth_settings, authorize = _oauth(channel)
    app = AsyncApp(
        logger=logging.getLogger("channels.slack.bolt"),
        signing_secret=channel.signing_secret,
        # (the token comes with each request's authorization, `TokenAuthorize` or the installation's)
        client=AsyncWebClient(
            base_url=channel.api_base_url,
            timeout=channel.timeout,  # type: ignore[arg-type]  # typed int; it becomes aiohttp's float ClientTimeout
        ),
        oauth_settings=oauth_settings,
        authorize=authorize,  # (an AsyncAuthorize is taken as it is)
        # Record, then acknowledge: the listener finishes before the HTTP answer leaves.
        process_before_response=True,
        # Unmatched requests reach Listeners.on_error, which acknowledges them with a logged reason.
        raise_error_for_unhandled_request=True,
        # SlackSignature has checked the signature already, before Bolt parses anything.
        request_verification_enabled=False,
        # channels/slack/inbound.py ignores the bot's own messages (and other bots'), logging why.
        ignoring_self_events_enabled=False,
        # (Bolt's answer where an authorization it called fails with a Slack error of its own; ours raise
        # NotInstalled instead, which `Listeners.on_error` says in the person's language)
        user_facing_authorize_error_message=NOT_INSTALLED,
    )
    # The notes after an acknowledgement run as tasks the channel keeps, and waits for when the bot stops.
    app.listener_runner.lazy_listener_runner = channel.after_ack
    Listeners(channel, host, app, authorize).register()
    return app


def _oauth(channel: SlackChannel) -> tuple[AsyncOAuthSettings | None, StoreAuthorize | TokenAuthorize]:
    """Bolt's install flow and its look-up of a workspace's token, for an app installed in many workspaces (no
    install flow for one workspace's app, whose token is in the settings)."""
    if channel.installations is None:
        return None, TokenAuthorize(channel.bot_token)
    # Bolt looks the workspace up while Slack waits for the acknowledgement: urgent.
    installations = SlackInstallationStore(channel.installations, urgent=True)
    authorize = StoreAuthorize(
        logger=logging.getLogger("channels.slack.bolt"), installation_store=installations,
        client_id=channel.client_id, client_secret=channel.client_secret, bot_only=True,
    )
    oauth_settings = AsyncOAuthSettings(
        client_id=channel.client_id,
        client_secret=channel.client_secret,
        scopes=list(SCOPES),
        user_scopes=[],
        redirect_uri=channel.redirect_uri,
        install_page_rendering_enabled=False,  # /slack/install goes straight to Slack's consent page
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=SlackOAuthStateStore(channel.installations),
    )
    return oauth_settings, authorize


class Listeners:
    """What each kind of Slack request becomes: a listener a kind, each recording its outcome into the host and
    then acknowledging (`register` tells Bolt which is which)."""

    def __init__(self, channel: SlackChannel, host: ChannelHost, app: AsyncApp,
                 authorize: StoreAuthorize | TokenAuthorize) -> None:
        self.channel = channel
        self.host = host
        self.app = app
        self.authorize = authorize

    def register(self) -> None:
        app = self.app
        app.event("message")(self.on_event)
        app.event("app_mention")(self.on_event)
        app.block_action(re.compile(".*"))(self.on_action)
        app.command(re.compile(".*"))(ack=self.on_command, lazy=[self.note_after_ack])
        app.view(ANSWER_FORM_CALLBACK)(self.on_view)
        for kind in MEMBERSHIP_EVENTS:
            app.event(kind)(self.on_membership)
        app.event("app_home_opened")(self.on_home)
        app.event("app_uninstalled")(self.on_uninstalled)
        app.event("tokens_revoked")(self.on_uninstalled)
        app.error(self.on_error)

    async def record(self, outcome: Outcome, request: AsyncBoltRequest, profile: InboundMeta | None = None) -> None:
        """Record a message into the host (with `profile`, what users.info said of its sender, in its meta); an
        ignored request is logged with why, a second delivery of one recorded before with Slack's retry reason."""
        if isinstance(outcome, Ignored):
            log.info("slack request ignored: %s", outcome.reason)
            return
        if profile and isinstance(outcome, InboundMessage):
            outcome = replace(outcome, meta={**outcome.meta, **profile})
        recorded = await self.host.receive(outcome)
        if recorded.duplicate:
            retry = request.headers.get("x-slack-retry-num", [None])[0]
            reason = request.headers.get("x-slack-retry-reason", [""])[0]
            log.info(
                "slack delivery %s was recorded before%s", outcome.platform_id,
                f" (Slack's retry {retry}: {reason})" if retry else "",
            )

    async def on_event(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        outcome = message_from_event(body, installation=_installation(context), bot_user_id=context.bot_user_id)
        await self.record(outcome, request)
        await ack()

    async def on_action(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        form = answer_form(body, installation=_installation(context))
        if form is not None:
            await open_form(context, body, form)
        else:
            await self.record(message_from_action(body, installation=_installation(context)), request)
        await ack()

    async def on_view(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        await self.record(message_from_view(body, installation=_installation(context)), request)
        await ack()  # closes the modal; the answer's feedback comes in the channel, privately

    async def on_command(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        outcome = message_from_command(body, installation=_installation(context))
        profile: InboundMeta = {}
        if isinstance(outcome, InboundMessage) and changes_a_team(body):
            # Who may set up a team: the dialogs read the person's standing in the workspace from here.
            profile = await workspace_standing(context, str(body.get("user_id") or ""), self.channel)
        await self.record(outcome, request, profile)
        # Slack shows an ack's text to the person alone; a recorded command is answered by the worker instead (in
        # their DMs for some typed in a channel, which a note after the ack says where they typed it:
        # `note_after_ack`, once the person's language is looked up, which the ack does not wait for).
        if isinstance(outcome, Ignored) and outcome.answer:  # an unknown command: the ones there are
            noted = note_after_ack(context, person_of(body, installation=_installation(context)), "unknown_command",
                                   unknown_command(body))
            await (ack() if noted else ack(text=outcome.answer))
        elif isinstance(outcome, InboundMessage) and answered_in_direct_messages(body):
            note_after_ack(context, outcome.sender_id, "direct_answer")
            await ack()
        else:
            await ack()

    async def note_after_ack(self, context: AsyncBoltContext, respond: Any) -> None:
        """After the acknowledgement (Bolt's lazy listener, run once the HTTP answer has left), the note a listener
        left for the person (`context[NOTE_AFTER_ACK]`: that their answer comes in their direct messages, the
        commands there are, that the app is not installed), seen by them alone where they typed or pressed (the
        request's response_url), in their language where the bot knows it (the channel's `words`); in English for
        someone it does not know yet, or when the look-up fails or takes longer than LANGUAGE_TIMEOUT."""
        note = context.get(NOTE_AFTER_ACK)
        if not isinstance(note, dict) or respond is None:
            return
        language = None
        with contextlib.suppress(CannotRecord, TimeoutError):
            async with asyncio.timeout(LANGUAGE_TIMEOUT):
                language = await self.host.sender_language(CHANNEL, note["sender"])
        words = self.channel.words(language).get(note["words"]) or NOTES[note["words"]]
        try:
            await respond(text=filled(words, note["values"]), response_type="ephemeral", replace_original=False)
        except Exception as exc:  # expired, or Slack away (an answer in their DMs still comes)
            log.warning("a slack note (%s) was not shown: %s", note["words"], exc)

    async def on_membership(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        outcome = membership_change(body, installation=_installation(context), bot_user_id=context.bot_user_id)
        profile: InboundMeta = {}
        if isinstance(outcome, InboundMessage) and outcome.meta.get(MEMBERSHIP) == "joined":
            profile = await workspace_standing(context, str(_event(body).get("user") or ""), self.channel)
        await self.record(outcome, request, profile)
        await ack()

    async def on_home(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        await self.record(home_opened(body, installation=_installation(context)), request)
        await ack()

    async def before_the_installation(self, body: dict[str, Any], context: AsyncBoltContext) -> bool:
        """Whether the event happened wholly before the installation stored for its workspace was made: its
        event_time (whole seconds) ends at or before the installation's installed_at."""
        event_time = body.get("event_time")
        if self.channel.installations is None or not isinstance(event_time, int) or isinstance(event_time, bool):
            return False
        record = await self.channel.installations.find(
            enterprise_id=context.enterprise_id, team_id=context.team_id,
            is_enterprise_install=context.is_enterprise_install, urgent=True,
        )
        installed_at = record.get("installed_at") if record else None
        return isinstance(installed_at, datetime) and event_time + 1 <= installed_at.timestamp()

    async def on_uninstalled(
        self, ack: Any, body: dict[str, Any], context: AsyncBoltContext, request: AsyncBoltRequest
    ) -> None:
        """app_uninstalled, or the bot token revoked: forget the installation and stop every send there; unless it
        happened before the installation now stored (Slack delivering an old removal again after the workspace
        installed the app anew), which is acknowledged and left alone."""
        kind = str(_event(body).get("type"))
        if await self.before_the_installation(body, context):
            log.info("slack %s from before the workspace's current installation ignored (Slack's retry %s)", kind,
                     request.headers.get("x-slack-retry-num", ["-"])[0])
            await ack()
            return
        revoked_bot = kind == "tokens_revoked" and bool(_dict_of(_event(body).get("tokens")).get("bot"))
        if self.channel.multi_workspace and kind == "app_uninstalled":
            await self.app.default_app_uninstalled_event_listener()(context=context)
        elif self.channel.multi_workspace:
            await self.app.default_tokens_revoked_event_listener()(event=_event(body), context=context)
        if isinstance(self.authorize, TokenAuthorize) and (kind == "app_uninstalled" or revoked_bot):
            self.authorize.forget()  # the settings' token: Slack is asked again whether it still takes it
        installation = _installation(context)
        if installation and (kind == "app_uninstalled" or revoked_bot):
            cancelled = await self.host.stop_sending(
                CHANNEL, installation + ":", workspace=installation,
                reason=f"not sent: the Slack app was removed from {installation} ({kind})",
            )
            log.info("slack %s in %s: %d unsent replies cancelled", kind, installation, cancelled)
        await ack()

    async def on_error(self, error: Exception, body: dict[str, Any], request: AsyncBoltRequest) -> BoltResponse:
        if isinstance(error, NotInstalled):  # told, in their language, after the acknowledgement (and not retried)
            log.info("slack request ignored: %s (%s)", error, _describe(body))
            context = request.context
            if note_after_ack(context, person_of(body, installation=_installation(context)), "not_installed"):
                self.app.listener_runner.lazy_listener_runner.start(self.note_after_ack, request.to_copyable())
                return BoltResponse(status=200, body="")
            return BoltResponse(status=200, body=NOT_INSTALLED)
        if isinstance(error, BoltUnhandledRequestError):
            log.info("slack request ignored: nothing here handles %s", _describe(body))
            return BoltResponse(status=200, body="")
        if isinstance(error, CannotRecord):  # the database away: logged where it failed, once a minute
            return BoltResponse(status=503, body=json.dumps({"error": str(error)}), headers={
                "content-type": "application/json", "retry-after": str(RETRY_AFTER_SECONDS)})
        log.error("slack request failed; Slack will deliver it again", exc_info=error)
        return BoltResponse(status=500, body="")


async def open_form(context: AsyncBoltContext, body: dict[str, Any], view: dict[str, Any]) -> None:
    """A "Type an answer" press: its modal, opened with the press's trigger_id (valid for 3 seconds, so here, before
    the acknowledgement, not by the worker). Nothing is recorded: the words come with the modal's submission. When
    Slack refuses (a 429 on views.open, Tier 4), or does not answer within FORM_TIMEOUT (Slack waits 3 seconds for
    the acknowledgement, and the trigger_id dies with them), the question's text still says how to answer with
    /lessonbot."""
    client, trigger_id = context.client, body.get("trigger_id")
    if client is None or not isinstance(trigger_id, str):
        return
    try:
        async with asyncio.timeout(FORM_TIMEOUT):
            await client.views_open(trigger_id=trigger_id, view=view)
    except Exception as exc:  # refused, rate-limited or slow: the typed command still works
        log.warning("views.open failed for a slack answer form: %s", exc)


def note_after_ack(context: AsyncBoltContext, sender_id: str | None, words: str,
                   values: dict[str, str] | None = None) -> bool:
    """Leave the note `words` (a key of inbound.NOTES, with `values` to fill in) for `Listeners.note_after_ack` to
    show `sender_id` after the acknowledgement; False where it cannot be shown (no person, or no response_url)."""
    if not sender_id or not context.response_url:
        return False
    context[NOTE_AFTER_ACK] = {"sender": sender_id, "words": words, "values": values or {}}
    return True


def changes_a_team(body: dict[str, Any]) -> bool:
    """`/lessonbot team …` (and `/lessonbot` alone, which is `team`): a change to a team, or its help, which lists a
    team admin's commands; the person's standing in the workspace is read for it (users.info is a Tier 4 method: a
    member's answers and leaderboards do without it)."""
    words = str(body.get("text") or "").split()
    return body.get("command") == TEAM_COMMAND and (not words or words[0].lower().lstrip("/") == "team")


async def workspace_standing(context: AsyncBoltContext, user: str, channel: SlackChannel) -> InboundMeta:
    """What users.info says of a person that the dialogs weigh: a workspace admin or owner (or the person who
    installed the app), a guest, a bot, their name and time zone. Nothing when Slack cannot say within
    BEFORE_ACK_TIMEOUT (the request is recorded anyway: Slack waits for its acknowledgement), and no installer when
    the installation's look-up takes what is left of that time."""
    client = context.client
    if not user or client is None:
        return {}
    deadline = asyncio.get_running_loop().time() + BEFORE_ACK_TIMEOUT
    try:
        async with asyncio.timeout_at(deadline):
            response = await client.users_info(user=user)
    except Exception as exc:  # slow, refused or rate-limited: decide without it
        log.warning("users.info failed for a slack request: %s", str(exc) or type(exc).__name__)
        return {}
    profile = _dict_of(response.get("user"))
    installer = await _installer_before(deadline, context, channel)
    standing: InboundMeta = {
        WORKSPACE_ADMIN: bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner")
                              or (installer is not None and installer == user)),
        GUEST: bool(profile.get("is_restricted") or profile.get("is_ultra_restricted")),
        FROM_A_BOT: bool(profile.get("is_bot") or profile.get("is_app_user")),
    }
    if isinstance(profile.get("tz"), str) and profile["tz"]:
        standing[TIMEZONE] = profile["tz"][:64]
    return standing


async def _installer_before(deadline: float, context: AsyncBoltContext, channel: SlackChannel) -> str | None:
    """Who installed the app in the request's workspace, if the look-up answers by `deadline` (the loop's time);
    None when it does not (the person's own admin standing still counts)."""
    try:
        async with asyncio.timeout_at(deadline):
            return await channel.installer(context.enterprise_id, context.team_id, context.is_enterprise_install)
    except TimeoutError:
        log.warning("the slack installation's installer was not read in time: decided without it")
        return None


def _event(body: dict[str, Any]) -> dict[str, Any]:
    return _dict_of(body.get("event"))


def _dict_of(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def refused(exc: RequestRejected) -> Response:
    if exc.status == 401:
        log.warning("slack request refused: %s", exc.message)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def _installation(context: AsyncBoltContext) -> str:
    return installation_of(
        enterprise_id=context.enterprise_id,
        team_id=context.team_id,
        is_enterprise_install=context.is_enterprise_install,
    )


def bolt_request(request: Request, body: bytes) -> AsyncBoltRequest:
    """Bolt's request object for a verified body; RequestRejected(400) if the body is not what Slack sends."""
    try:
        converted = to_async_bolt_request(request, body)
    except (UnicodeDecodeError, ValueError, TypeError, AttributeError) as exc:
        raise RequestRejected(400, f"The body is not a Slack payload (JSON, or form fields): {exc}") from None
    payload = converted.body
    kind = payload.get("type")
    if kind == "event_callback" and not isinstance(payload.get("event"), dict):
        raise RequestRejected(400, "An event_callback without an event object.")
    # Bolt's own matchers index these without looking (body["actions"][0]["action_id"], body["view"]["type"]).
    if kind == "block_actions" and not _actions_as_slack_sends_them(payload.get("actions")):
        raise RequestRejected(400, "A block_actions payload whose actions are not a list of objects, each with a "
                                   "text action_id.")
    if odd := [key for key in CONTEXT_IDS if not isinstance(converted.context.get(key), str | None)]:
        raise RequestRejected(400, f"A payload whose {', '.join(odd)} is not text.")
    view = payload.get("view")
    viewed = isinstance(view, dict) and isinstance(view.get("type"), str)
    if kind in ("view_submission", "view_closed") and not viewed:
        raise RequestRejected(400, f"A {kind} payload without a view and its type.")
    return converted


def _actions_as_slack_sends_them(actions: object) -> bool:
    """A block_actions payload's actions as Slack sends them: at least one, each an object with a text action_id
    (Bolt's matchers read the first's and match a pattern against it)."""
    return (isinstance(actions, list) and bool(actions)
            and all(isinstance(action, dict) and isinstance(action.get("action_id"), str) for action in actions))


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
