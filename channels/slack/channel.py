"""Slack: Block Kit messages and files out, for one workspace or many.

Inbound (direct messages, mentions, button presses and slash commands) arrives on one Request URL, `POST
/slack/events` (channels/slack/routes.py), and is read into the core's terms by channels/slack/inbound.py.

Workspaces: with SLACK_BOT_TOKEN the app serves one workspace; with SLACK_CLIENT_ID / SLACK_CLIENT_SECRET it is
installable into many through Bolt's OAuth flow (`GET /slack/install` → Slack → `GET /slack/oauth_redirect`), each
installation kept in our database (channels/slack/installations.py, through the process's own Database); Bolt
authorizes every request with it, and `send` finds the workspace's bot token in it through the installation prefix
of chat_id (see channels/slack/inbound.py).

Outbound (`send`): text as Block Kit (channels/slack/blocks.py), documents with a file path through
files_upload_v2 (one person's, for their private place in a channel or their own address, into their DM with the
bot), documents with only a URL as a link. To a member's private place in a channel ("T01:C02@U03",
channels/slack/inbound.py) text goes as ephemeral messages only that member sees: through the response_url of what
they pressed or typed (`Delivery.reply_address`), else chat.postEphemeral. A reply addressed "home:<user>" (to
app_home_opened) is published as that person's Home tab (views.publish).

Members (`chat_members`, `member_profile`): conversations.members, every page, and users.info, for a team's
channel; a 429 is waited out for its Retry-After (at most MEMBER_CALL_TRIES times a call).

Errors: a 429 becomes RateLimited(Retry-After); 5xx, timeouts
and dropped connections TransientSendError; errors that will not go away (channel_not_found, not_in_channel,
account_inactive, invalid_auth, …) PermanentSendError. Slack allows about one message per second per channel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.routing import Route

from bot.channel import (
    ChannelHost,
    ChatMember,
    Delivery,
    NotShown,
    PartsSent,
    PermanentSendError,
    RateLimit,
    RateLimited,
    SendError,
    TransientSendError,
)
from bot.messages import Document, Text
from channels.slack.blocks import ReplyNotRenderable, SlackMessage, render_caption, render_link, render_text
from channels.slack.inbound import (
    HOME_ADDRESS_PREFIX,
    THREAD_ADDRESS_PREFIX,
    chat_id_for,
    ephemeral_target,
    home_target,
    split_chat_id,
)
from channels.slack.installations import SlackInstallations
from channels.slack.routes import AfterAcknowledgement, webhook_routes
from channels.slack.store import SlackInstallationStore

DEFAULT_API_BASE_URL = "https://slack.com/api/"

# Slack error codes that no retry will fix (https://docs.slack.dev/reference/methods/chat.postMessage#errors).
PERMANENT_ERRORS = frozenset({
    "account_inactive", "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "token_revoked", "token_expired", "no_permission", "missing_scope", "restricted_action", "cannot_dm_bot",
    "invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "too_many_attachments",
    "team_access_not_granted", "ekm_access_denied", "user_not_in_channel", "invalid_arguments",
    "not_allowed_token_type", "channel_is_archived", "file_uploads_disabled", "file_upload_size_restricted",
})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# users.info's word for a person it will not describe: a deactivated account, one of another organisation
NOT_SHOWN = frozenset({"user_not_found", "user_not_visible"})

USER_ID_PREFIXES = ("U", "W")  # a user id (W… in Enterprise Grid): chat.postMessage there lands in their DM
HOME_BLOCKS = 100  # a Home tab view holds at most 100 blocks
MEMBER_PER_SECOND = 4  # private messages to one member: a quiz's feedback and next question come together
# Where a response_url may send us: Slack's own, or the host of the Web API we were pointed at (a stand-in).
RESPONSE_URL_PREFIX = "https://hooks.slack.com/"
MEMBERS_PAGE = 200  # conversations.members: Slack recommends at most 200 a page
MEMBER_CALL_TRIES = 5  # a members call retried after a 429 at most this often
PROFILES_PER_MINUTE = 100  # users.info is a Tier 4 method: 100+ calls a minute per workspace
POST_PACE_SECONDS = 1.0  # between the messages of one reply (a long one, a lesson's post and its thread): 1/s/channel


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
        installations: SlackInstallations | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        public_base_url: str = "",
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
        commands: frozenset[str] = frozenset(),
        words: Callable[[str | None], Mapping[str, str]] = lambda _language: {},
    ) -> None:
        """`commands`: the core's commands ("/help", "/stop", …), which a reply names as they are typed in Slack.
        `words`: what the channel says itself (a note after an acknowledgement: `routes.Listeners.note_after_ack`), by
        key, in a learner's language (or None: English), which the wiring hands in; none, it says them in English."""
        if not signing_secret:
            raise ValueError("SLACK_SIGNING_SECRET is needed to verify that requests come from Slack")
        self.multi_workspace = bool(client_id and client_secret)
        if self.multi_workspace and installations is None:
            raise ValueError("installing into many workspaces needs the installations in our database")
        if not self.multi_workspace and not bot_token:
            raise ValueError("set SLACK_BOT_TOKEN (one workspace) or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (many)")
        self.max_body_bytes = max_body_bytes
        self.commands = commands
        self.words = words
        self.api_base_url = api_base_url
        self.timeout = timeout
        self.signing_secret = signing_secret
        self.now = now
        self.bot_token = "" if self.multi_workspace else bot_token
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uri = f"{public_base_url.rstrip('/')}/slack/oauth_redirect" if public_base_url else None
        self.installations = installations if self.multi_workspace else None
        self._installation_store = (
            SlackInstallationStore(self.installations) if self.installations is not None else None
        )
        # One client for the single workspace; in many-workspace mode a client per send with that team's token.
        self._client = self._web_client(self.bot_token) if self.bot_token else None
        self.members_page = MEMBERS_PAGE
        self.profiles_per_minute = PROFILES_PER_MINUTE
        self.post_pace = POST_PACE_SECONDS
        self._next_profile: dict[str, float] = {}  # installation → when its next users.info may go (monotonic)
        # installation → until when chat.postEphemeral is not tried there (monotonic): its Tier 4 is the
        # workspace's, so a 429 for one member holds every member's, not only that member's place
        self._ephemeral_held: dict[str, float] = {}
        # What follows a request's acknowledgement (a note through its response_url), kept until it ends
        self.after_ack = AfterAcknowledgement()

    # inbound --------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[Route]:
        """`POST /slack/events` and the install flow (channels/slack/routes.py)."""
        return webhook_routes(self, host)

    async def finish(self, timeout: float) -> None:
        """The bot is stopping: the notes after an acknowledgement still under way get `timeout` seconds to be shown
        (bot.channel.FinishesAfterAcknowledging)."""
        await self.after_ack.finish(timeout)

    # outbound -------------------------------------------------------------------------------------------------

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        """chat.postMessage: about one message per second per channel (short bursts tolerated). A member's private
        place in a channel is answered through the response_url of what they pressed or typed, which no Web API
        tier counts, a few messages a second at most; where there is none (a welcome), chat.postEphemeral's Tier 4
        answers a 429 with a Retry-After, which pauses that member's place and holds the workspace's other
        chat.postEphemeral calls as long (`_post_ephemeral`)."""
        _installation, channel = split_chat_id(chat_id)
        if ephemeral_target(channel)[1] is not None:
            return (RateLimit(f"slack:member:{chat_id}", MEMBER_PER_SECOND, 1.0),)
        return (RateLimit(f"slack:channel:{chat_id}", 1, 1.0),)

    async def send(self, delivery: Delivery) -> str:
        """Post one reply; returns the ts of its last message (or the uploaded file's id)."""
        installation, channel = split_chat_id(delivery.chat_id)
        reply = delivery.reply
        try:
            client = await self._client_for(installation)
            if isinstance(reply, Document) and reply.path:
                return await self._upload(client, await self._file_channel(client, channel), reply)
            if isinstance(reply, Document):
                if not reply.url:
                    raise PermanentSendError(f"document {reply.filename!r} has neither a path nor a URL")
                messages = [render_link(reply, commands=self.commands)]
            elif isinstance(reply, Text):
                messages = render_text(reply, commands=self.commands)
            else:
                raise ReplyNotRenderable(f"a {type(reply).__name__} is for platforms that take payments themselves")
            if delivery.reply_address and delivery.reply_address.startswith(HOME_ADDRESS_PREFIX):
                return await self._publish_home(client, delivery.reply_address[len(HOME_ADDRESS_PREFIX):], messages)
            channel, member = ephemeral_target(channel)
            if member is not None and self.answers_through(delivery.reply_address):
                answered = await self._respond(str(delivery.reply_address), messages, parts=delivery.parts)
                if answered is not None:
                    return answered
            if member is not None:
                return await self._post_ephemeral(client, installation, channel, member, messages,
                                                  parts=delivery.parts)
            return await self._post(client, channel, messages, parts=delivery.parts,
                                    thread=_thread_of(delivery.reply_address))
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
        assert self._installation_store is not None
        org_wide = installation.startswith("E")
        bot = await self._installation_store.async_find_bot(
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
        return AsyncWebClient(
            token=token,
            base_url=self.api_base_url,
            timeout=self.timeout,  # type: ignore[arg-type]  # typed int; it becomes aiohttp's float ClientTimeout
            retry_handlers=[],
        )

    async def _post(
        self, client: AsyncWebClient, channel: str, messages: list[SlackMessage], *, parts: PartsSent,
        thread: str | None = None,
    ) -> str:
        """Post the messages in order, after those already posted (`parts`, kept on the outbox row): a retry of a
        reply whose later message failed, in any process, posts only the rest. A threaded reply's follow-ups go in
        the thread of its first message (its ts is the first part's id, so a retry finds the thread too); the whole
        reply to a message written in a thread (`thread`, its ts) goes in that thread."""
        posted = parts.ids
        last: float | None = None
        for index in range(len(posted), len(messages)):
            message = messages[index]
            if last is not None:  # the dispatcher's limiter paces replies; this, the messages within one
                await asyncio.sleep(max(0.0, last + self.post_pace - time.monotonic()))
            last = time.monotonic()
            thread_ts = thread or (posted[0] if message.in_thread and posted and posted[0] else None)
            response = await client.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks,
                                                     thread_ts=thread_ts)
            await parts.add(str(response.get("ts") or ""), more_to_come=index + 1 < len(messages))
        return posted[-1]

    async def _post_ephemeral(
        self, client: AsyncWebClient, installation: str, channel: str, user: str, messages: list[SlackMessage], *,
        parts: PartsSent
    ) -> str:
        """As `_post`, each message seen by `user` alone in `channel` (Slack keeps ephemeral messages only for the
        session: a member who was away sees the lesson post, and its button brings the quiz again). While Slack
        holds the workspace's chat.postEphemeral after a 429, no member's is tried: each is RateLimited for what
        is left of the wait (answers through a response_url, which no tier counts, go on)."""
        posted = parts.ids
        for index in range(len(posted), len(messages)):
            message = messages[index]
            if (left := self._ephemeral_held.get(installation, 0.0) - time.monotonic()) > 0:
                raise RateLimited(left, "Slack rate limit (chat.postEphemeral, the workspace's)")
            try:
                response = await client.chat_postEphemeral(
                    channel=channel, user=user, text=message.text, blocks=message.blocks
                )
            except SlackApiError as exc:
                if isinstance(error := send_error(exc), RateLimited):
                    self._ephemeral_held[installation] = time.monotonic() + error.retry_after
                raise
            await parts.add(str(response.get("message_ts") or ""), more_to_come=index + 1 < len(messages))
        return posted[-1]

    async def _publish_home(self, client: AsyncWebClient, address: str, messages: list[SlackMessage]) -> str:
        """The reply as the person's Home tab (views.publish): its messages' blocks, at most HOME_BLOCKS, and their
        DM with the app, where its buttons answer (`home_target`), as the view's private_metadata."""
        user, direct = home_target(address)
        blocks = [block for message in messages for block in message.blocks][:HOME_BLOCKS]
        view: dict[str, Any] = {"type": "home", "blocks": blocks}
        if direct:
            view["private_metadata"] = direct
        response = await client.views_publish(user_id=user, view=view)
        return str((response.get("view") or {}).get("id") or "")

    def answers_through(self, address: str | None) -> bool:
        """Whether `address` is a response_url this app may post to: Slack's, or our Web API base's host."""
        if not address:
            return False
        own = self.api_base_url.split("/api/", 1)[0] + "/"
        return address.startswith(RESPONSE_URL_PREFIX) or address.startswith(own)

    async def _respond(self, url: str, messages: list[SlackMessage], *, parts: PartsSent) -> str | None:
        """Answer through a response_url, each message seen by that member alone; None when the URL has expired or
        been used up (Slack allows five answers within 30 minutes), so the caller posts with chat.postEphemeral."""
        webhook = AsyncWebhookClient(url, timeout=int(self.timeout), retry_handlers=[])
        for index in range(len(parts.ids), len(messages)):
            message = messages[index]
            response = await webhook.send(text=message.text, blocks=message.blocks, response_type="ephemeral",
                                          replace_original=False)
            if response.status_code == 429:
                raise RateLimited(_retry_after(response.headers.get("Retry-After")), "Slack rate limit")
            if response.status_code >= 500:
                raise TransientSendError(f"Slack answered {response.status_code} to a response_url")
            if response.status_code != 200:
                return None  # expired_url, used_url, …: the Web API takes over
            await parts.add(f"response:{index}", more_to_come=index + 1 < len(messages))
        return parts.ids[-1]

    # members ----------------------------------------------------------------------------------------------------

    async def chat_members(self, chat_id: str) -> list[str]:
        """Everyone in a channel, as sender ids ("T01/U02"), through every page of conversations.members."""
        installation, channel = split_chat_id(chat_id)
        client = await self._client_for(installation)
        members: list[str] = []
        cursor = ""

        def page(after: str) -> Callable[[], Awaitable[Any]]:
            return lambda: client.conversations_members(channel=channel, limit=self.members_page,
                                                         cursor=after or None)

        while True:
            response = await self._patiently(page(cursor))
            members += [f"{installation}/{user}" for user in response.get("members") or () if isinstance(user, str)]
            cursor = str((response.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return members

    async def member_profile(self, sender_id: str) -> ChatMember:
        """users.info of one person: name, zone, and whether they are a guest, a bot or a workspace admin."""
        installation, _, user = sender_id.partition("/")
        client = await self._client_for(installation)
        await self._pace_profiles(installation)
        try:
            response = await self._patiently(lambda: client.users_info(user=user))
        except PermanentSendError as exc:
            if exc.refusal in NOT_SHOWN:
                raise NotShown(f"Slack shows no profile of {sender_id} ({exc.refusal})", refusal=exc.refusal) from exc
            raise
        profile = response.get("user") or {}
        # named by their own workspace, as every event of theirs names them (a Slack Connect channel's guest from
        # another organisation is not the installing workspace's)
        team = profile.get("team_id")
        return ChatMember(
            sender_id=f"{team}/{user}" if isinstance(team, str) and team else sender_id,
            name=str(profile.get("real_name") or (profile.get("profile") or {}).get("display_name")
                     or profile.get("name") or "")[:200],
            timezone=str(profile["tz"])[:64] if profile.get("tz") else None,
            guest=bool(profile.get("is_restricted") or profile.get("is_ultra_restricted")),
            bot=bool(profile.get("is_bot") or profile.get("is_app_user") or user == "USLACKBOT"),
            admin=bool(profile.get("is_admin") or profile.get("is_owner") or profile.get("is_primary_owner")),
            direct_chat=chat_id_for(installation, user),  # chat.postMessage to a user id lands in their DM
        )

    async def _pace_profiles(self, installation: str) -> None:
        """Space users.info calls evenly at `profiles_per_minute` per workspace, so a large channel's first read
        keeps within Slack's tier instead of meeting its 429s."""
        now = time.monotonic()
        at = max(now, self._next_profile.get(installation, now))
        self._next_profile[installation] = at + 60.0 / self.profiles_per_minute
        if at > now:
            await asyncio.sleep(at - now)

    async def _patiently(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """A Web API call, waiting out a 429 for its Retry-After (at most MEMBER_CALL_TRIES tries); other errors
        are the caller's."""
        for attempt in range(1, MEMBER_CALL_TRIES + 1):
            try:
                return await call()
            except SlackApiError as exc:
                error = send_error(exc)
                if not isinstance(error, RateLimited) or attempt == MEMBER_CALL_TRIES:
                    raise error from exc
                await asyncio.sleep(error.retry_after)
        raise AssertionError("unreachable")

    async def installer(self, enterprise_id: str | None, team_id: str | None, org_wide: bool | None) -> str | None:
        """The Slack user id of whoever installed the app in a workspace, where it was installed through OAuth."""
        if self.installations is None:
            return None
        record = await self.installations.find(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=org_wide, urgent=True
        )
        return str(record["user_id"]) if record and record.get("user_id") else None

    async def _file_channel(self, client: AsyncWebClient, channel: str) -> str:
        """Where a file for `channel` is shared: a channel or DM as it is; for one person (their private place in a
        channel, "C123@U9", or their own address, a user id) their DM with the bot, opened with conversations.open,
        since a file shared in the channel would be everyone's and Slack shares files only into conversations."""
        _channel, member = ephemeral_target(channel)
        person = member or (channel if channel.startswith(USER_ID_PREFIXES) else None)
        if person is None:
            return channel
        response = await client.conversations_open(users=person)
        return str((response.get("channel") or {}).get("id") or "")

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
            initial_comment=render_caption(document, commands=self.commands) or None,
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
        return PermanentSendError(f"Slack refused the message: {error or status}", refusal=error or None)
    # ok=false with an error code not listed above: a request Slack judged wrong; repeating it will not help.
    return PermanentSendError(f"Slack refused the message: {error or 'unknown error'} (HTTP {status})",
                              refusal=error or None)


def _retry_after(value: object) -> float:
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        return 1.0


def _thread_of(reply_address: str | None) -> str | None:
    """The ts of the thread a reply goes in, where the message it answers was written in one."""
    if reply_address and reply_address.startswith(THREAD_ADDRESS_PREFIX):
        return reply_address[len(THREAD_ADDRESS_PREFIX):] or None
    return None
