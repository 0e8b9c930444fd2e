"""A local stand-in of the Slack Web API that slack_sdk's AsyncWebClient talks to through its base URL.

It answers the methods Lessonbot calls the way slack.com/api does: auth.test, chat.postMessage, chat.postEphemeral,
conversations.members (paged by cursor), conversations.open (a person's DM with the bot), users.info, views.publish,
views.open, oauth.v2.access, and the three steps of files_upload_v2 (files.getUploadURLExternal, the upload URL it
hands out, and files.completeUploadExternal, which shares only into a conversation Slack would know); and the
response_urls it hands out with interactions (`response_url`). Channels' members and people's profiles are set up
with `add_member`. Every call is recorded with the token it carried. The
next calls of a method can be scripted to fail: a 429 with Retry-After, a 5xx, an `ok: false` error, or an answer
that comes too late.

Also here: what Slack itself does to the requests it sends us (v0 signatures, the fixtures' payloads).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from standins.serving import serve_locally

SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-111-standin-token"
CLIENT_ID = "1111.2222"
CLIENT_SECRET = "test-client-secret"
# A conversation's id as Slack makes them: a public or private channel (C…, G…) or a direct message (D…). A user id
# (U…, which chat.postMessage takes for the person's DM) or anything else is no conversation to share a file in.
CONVERSATION_ID = re.compile(r"^[CDG][A-Z0-9]{2,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class Workspace:
    """A workspace the stand-in knows, and the bot user the app has in it."""

    team_id: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    name: str = "Test Workspace"


@dataclass(frozen=True)
class Fault:
    """How the stand-in answers one call instead of doing it."""

    status: int = 200
    error: str = ""
    retry_after: int | None = None
    delay: float = 0.0  # seconds before answering normally (a client with a shorter timeout gives up)

    @classmethod
    def rate_limited(cls, retry_after: int = 1) -> Fault:
        return cls(429, "ratelimited", retry_after=retry_after)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status)

    @classmethod
    def refused(cls, error: str) -> Fault:
        return cls(200, error)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls(delay=seconds)

    @classmethod
    def none(cls) -> Fault:
        """Answer this call normally (to script a failure for a later one)."""
        return cls()

    @property
    def answers_normally(self) -> bool:
        return self.status == 200 and not self.error


@dataclass
class Call:
    method: str
    token: str | None
    params: dict[str, Any]
    outcome: str  # "ok", or what went wrong
    answer: dict[str, Any] = field(default_factory=dict)  # what the stand-in answered (a posted message's ts …)
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class SlackStandIn:
    def __init__(self, *workspaces: Workspace) -> None:
        self.workspaces = {w.bot_token: w for w in workspaces or (Workspace("T111", BOT_TOKEN, "W111", "B111"),)}
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.missing_channels: set[str] = set()
        self.oauth_codes: dict[str, Workspace] = {}
        self.uploads: dict[str, bytes] = {}
        self.channel_members: dict[str, list[str]] = {}
        # (channel, ts) of messages people wrote there (an event the test sent): a thread may hang from them too
        self.people_said: set[tuple[str, str]] = set()
        self._responses = 0
        self._response_uses: Counter[str] = Counter()
        self._private: dict[tuple[str, str], list[Call]] = {}  # (channel, user) → what they were shown privately
        self._private_waiters: dict[tuple[str, str], list[tuple[int, asyncio.Future[None]]]] = {}
        self.profiles: dict[str, dict[str, Any]] = {}
        self._triggers_used: set[str] = set()
        self._ts = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.root = ""

    # lifecycle ------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> SlackStandIn:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{channel}/{user}/{n}", self._response_url)
        self._runner, port = await serve_locally(app)
        self.root = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"{self.root}/api/"

    # scripting and reading back -------------------------------------------------------------------------------

    def fail(self, method: str, *faults: Fault) -> None:
        """The next calls of `method` get these answers, one each, in order."""
        self.faults.setdefault(method, []).extend(faults)

    def add_oauth_code(self, code: str, workspace: Workspace) -> None:
        """oauth.v2.access with this code installs the app into `workspace` (and auth.test then knows its token)."""
        self.oauth_codes[code] = workspace

    def add_member(self, channel: str, user: str, *, team: str = "T111", name: str = "", tz: str = "Europe/Lisbon",
                   admin: bool = False, guest: bool = False, bot: bool = False) -> None:
        """`user` is in `channel`, with a profile users.info gives (the shape of Slack's users.info answer)."""
        self.channel_members.setdefault(channel, [])
        if user not in self.channel_members[channel]:
            self.channel_members[channel].append(user)
        name = name or user.lower()
        self.profiles[user] = {
            "id": user, "team_id": team, "name": name, "deleted": False, "real_name": name.title(), "tz": tz,
            "tz_label": tz, "tz_offset": 0, "is_admin": admin, "is_owner": False, "is_primary_owner": False,
            "is_restricted": guest, "is_ultra_restricted": False, "is_bot": bot, "is_app_user": False,
            "profile": {"real_name": name.title(), "display_name": name, "team": team},
        }

    def remove_member(self, channel: str, user: str) -> None:
        self.channel_members[channel].remove(user)

    def response_url(self, channel: str, user: str) -> str:
        """A fresh response_url, as Slack puts in an interaction or a slash command of `user` in `channel`."""
        self._responses += 1
        return f"{self.root}/response/{channel}/{user}/{self._responses}"

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Call]:
        """What one member (or anyone) was shown privately in a channel (or any): successful chat.postEphemeral
        calls and answers through a response_url, in order."""
        return [
            c for c in self.calls
            if c.method in ("chat.postEphemeral", "response_url") and c.ok
            and (channel is None or c.params.get("channel") == channel)
            and (user is None or c.params.get("user") == user)
        ]

    async def wait_private(self, channel: str, user: str, count: int, timeout: float = 60.0) -> list[Call]:
        """Wait until `user` has been shown `count` private messages in `channel`; all of them, in order."""
        key = (channel, user)
        if len(self._private.get(key, ())) < count:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._private_waiters.setdefault(key, []).append((count, future))
            await asyncio.wait_for(future, timeout)
        return self._private[key]

    def _shown_privately(self, call: Call) -> None:
        key = (str(call.params.get("channel")), str(call.params.get("user")))
        shown = self._private.setdefault(key, [])
        shown.append(call)
        waiting = self._private_waiters.get(key, [])
        for entry in [entry for entry in waiting if entry[0] <= len(shown)]:
            waiting.remove(entry)
            if not entry[1].done():
                entry[1].set_result(None)

    def posted(self, channel: str | None = None) -> list[Call]:
        """Successful chat.postMessage calls, to one channel or all."""
        return [
            c for c in self.calls
            if c.method == "chat.postMessage" and c.ok and (channel is None or c.params.get("channel") == channel)
        ]

    def texts(self, channel: str | None = None) -> list[str]:
        return [c.params["text"] for c in self.posted(channel)]

    def top_level(self, channel: str) -> list[Call]:
        """The messages posted in a channel itself, not in a thread."""
        return [c for c in self.posted(channel) if not c.params.get("thread_ts")]

    def thread(self, channel: str, ts: str) -> list[Call]:
        """The replies posted in the thread of the message `ts` in `channel`, in order."""
        return [c for c in self.posted(channel) if c.params.get("thread_ts") == ts]

    async def wait_for(self, condition: Callable[[], object], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the stand-in did not see it within {timeout} s; calls: {self.calls}")
            await asyncio.sleep(0.02)

    # the API --------------------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            params.update(await request.post())
        token = _bearer(request.headers.get("Authorization")) or params.pop("token", None)
        call = Call(method, token, params, "ok")
        self.calls.append(call)
        faults = self.faults.get(method)
        if faults:
            fault = faults.pop(0)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if not fault.answers_normally:
                call.outcome = f"{fault.status} {fault.error}".strip()
                if fault.status >= 500:
                    return web.Response(
                        status=fault.status, text="<html>upstream error</html>", content_type="text/html"
                    )
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return web.json_response({"ok": False, "error": fault.error}, status=fault.status, headers=headers)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            call.outcome = "unknown_method"
            return web.json_response({"ok": False, "error": "unknown_method"}, status=404)
        if method != "oauth.v2.access" and token not in self.workspaces:
            call.outcome = "invalid_auth"
            return web.json_response({"ok": False, "error": "invalid_auth"})
        answer = call.answer = handler(call, request)
        if not answer.get("ok"):
            call.outcome = answer.get("error", "error")
        elif method == "chat.postEphemeral":
            self._shown_privately(call)
        return web.json_response(answer)

    def _auth_test(self, call: Call, request: web.Request) -> dict[str, Any]:
        workspace = self.workspaces[call.token or ""]
        return {
            "ok": True, "url": f"https://{workspace.team_id.lower()}.slack.com/", "team": workspace.name,
            "user": "lessonbot", "team_id": workspace.team_id, "user_id": workspace.bot_user_id,
            "bot_id": workspace.bot_id, "is_enterprise_install": False,
        }

    def _chat_postMessage(self, call: Call, request: web.Request) -> dict[str, Any]:
        channel = call.params.get("channel")
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        if not call.params.get("text") and not call.params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        thread_ts = call.params.get("thread_ts")
        if thread_ts and (str(channel), thread_ts) not in self.people_said and not any(
            c.answer.get("ts") == thread_ts for c in self.posted(str(channel))
        ):
            return {"ok": False, "error": "thread_not_found"}
        ts = f"{int(time.time())}.{next(self._ts):06d}"
        message = {"text": call.params.get("text"), "ts": ts, **({"thread_ts": thread_ts} if thread_ts else {})}
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _chat_postEphemeral(self, call: Call, request: web.Request) -> dict[str, Any]:
        channel, user = call.params.get("channel"), call.params.get("user")
        if not channel or channel in self.missing_channels:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channel_members and user not in self.channel_members[channel]:
            return {"ok": False, "error": "user_not_in_channel"}
        if not call.params.get("text") and not call.params.get("blocks"):
            return {"ok": False, "error": "no_text"}
        return {"ok": True, "message_ts": f"{int(time.time())}.{next(self._ts):06d}"}

    def _conversations_members(self, call: Call, request: web.Request) -> dict[str, Any]:
        channel = call.params.get("channel")
        if channel not in self.channel_members:
            return {"ok": False, "error": "channel_not_found"}
        members = self.channel_members[channel]
        limit = max(1, min(1000, int(call.params.get("limit") or 100)))
        cursor = str(call.params.get("cursor") or "")
        start = int(base64.b64decode(cursor).decode().partition(":")[2]) if cursor else 0
        following = start + limit
        next_cursor = base64.b64encode(f"offset:{following}".encode()).decode() if following < len(members) else ""
        return {"ok": True, "members": members[start:following], "response_metadata": {"next_cursor": next_cursor}}

    def _conversations_open(self, call: Call, request: web.Request) -> dict[str, Any]:
        """The DM of the bot with one person (`users`), the same id each time it is opened."""
        users = str(call.params.get("users") or "")
        if not users or "," in users:
            return {"ok": False, "error": "users_list_not_supplied" if not users else "not_enough_users"}
        if not USER_ID.match(users):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": f"D{users}"}}

    def _users_info(self, call: Call, request: web.Request) -> dict[str, Any]:
        profile = self.profiles.get(str(call.params.get("user")))
        if profile is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": profile}

    def _views_publish(self, call: Call, request: web.Request) -> dict[str, Any]:
        view = call.params.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not call.params.get("user_id") or not isinstance(view, dict) or view.get("type") != "home":
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": {"id": f"V{next(self._ts):08d}", "type": "home", **view}}

    def _views_open(self, call: Call, request: web.Request) -> dict[str, Any]:
        """A modal opened with an interaction's trigger_id (Slack lets each be used once, within 3 seconds)."""
        view = call.params.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        trigger_id = str(call.params.get("trigger_id") or "")
        if not trigger_id or trigger_id in self._triggers_used:
            return {"ok": False, "error": "invalid_trigger_id" if not trigger_id else "expired_trigger_id"}
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
            return {"ok": False, "error": "invalid_arguments"}
        self._triggers_used.add(trigger_id)
        return {"ok": True, "view": {"id": f"V{next(self._ts):08d}", "team_id": "T111", "hash": "1.abc", **view}}

    def opened_views(self) -> list[dict[str, Any]]:
        """The modals opened (views.open answers), in order."""
        return [c.answer["view"] for c in self.calls if c.method == "views.open" and c.ok]

    def _oauth_v2_access(self, call: Call, request: web.Request) -> dict[str, Any]:
        client_id, _, client_secret = _basic(request.headers.get("Authorization"))
        if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
            return {"ok": False, "error": "invalid_client_id"}
        workspace = self.oauth_codes.pop(str(call.params.get("code")), None)
        if workspace is None:
            return {"ok": False, "error": "invalid_code"}
        self.workspaces[workspace.bot_token] = workspace
        return {
            "ok": True, "app_id": "A111", "authed_user": {"id": "UINSTALLER"}, "scope": "chat:write,commands",
            "token_type": "bot", "access_token": workspace.bot_token, "bot_user_id": workspace.bot_user_id,
            "team": {"id": workspace.team_id, "name": workspace.name}, "enterprise": None,
            "is_enterprise_install": False,
        }

    def _files_getUploadURLExternal(self, call: Call, request: web.Request) -> dict[str, Any]:
        file_id = f"F{next(self._file_ids):08d}"
        return {"ok": True, "upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    async def _response_url(self, request: web.Request) -> web.Response:
        """A response_url: at most five answers each (Slack's rule), ephemeral unless told otherwise."""
        body = await request.json()
        key = request.path
        params = {**body, "channel": request.match_info["channel"], "user": request.match_info["user"]}
        call = Call("response_url", None, params, "ok")
        self.calls.append(call)
        faults = self.faults.get("response_url")
        if faults:
            fault = faults.pop(0)
            if fault.delay:  # (not shown to the person until it is answered)
                call.outcome = "answering"
                await asyncio.sleep(fault.delay)
                call.outcome = "ok"
            if not fault.answers_normally:
                call.outcome = f"{fault.status} {fault.error}".strip()
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                return web.Response(status=fault.status, text=fault.error or "error", headers=headers)
        if self._response_uses[key] >= 5:
            call.outcome = "used_url"
            return web.Response(status=404, text="used_url")
        call.answer = {"url": key}
        self._response_uses[key] += 1
        self._shown_privately(call)
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        self.uploads[request.match_info["file_id"]] = await request.read()
        return web.Response(text=f"OK - {len(self.uploads[request.match_info['file_id']])}")

    def _files_completeUploadExternal(self, call: Call, request: web.Request) -> dict[str, Any]:
        files = json.loads(call.params.get("files", "[]"))
        if not all(f["id"] in self.uploads for f in files):
            return {"ok": False, "error": "file_not_found"}
        channel = str(call.params.get("channel_id") or "")
        if channel and (not CONVERSATION_ID.match(channel) or channel in self.missing_channels):
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in files]}


def _bearer(header: str | None) -> str | None:
    return header[len("Bearer "):] if header and header.startswith("Bearer ") else None


def _basic(header: str | None) -> tuple[str, str, str]:
    if not header or not header.startswith("Basic "):
        return "", "", ""
    return base64.b64decode(header[len("Basic "):]).decode().partition(":")


# what Slack does on its side: signing, and the payloads it sends ---------------------------------------------------


def signed(body: bytes | str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None,
           content_type: str = "application/json", retry: int | None = None) -> dict[str, str]:
    """The headers Slack sends with `body`: a v0 signature over it at `timestamp` (default: now)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    # HMAC-SHA256 over "v0:<timestamp>:<body bytes>", as Slack signs (slack_sdk's generator wants UTF-8 text only).
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    headers = {"content-type": content_type, "x-slack-request-timestamp": stamp, "x-slack-signature": f"v0={digest}"}
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = "http_timeout"
    return headers


def form_body(payload: dict[str, Any]) -> bytes:
    """Interactivity arrives as a form with one field, `payload`, holding the JSON."""
    return urlencode({"payload": json.dumps(payload)}).encode()


def load_fixture(fixtures_dir: Path, relative: str) -> Any:
    """One of Slack's published payloads, from a folder laid out like tests/fixtures (`slack/…`)."""
    path = fixtures_dir / "slack" / relative
    return path.read_text() if path.suffix == ".txt" else json.loads(path.read_text())


def dm_event(text: str, *, event_id: str, user: str = "U0LEARNER", team: str = "T111", channel: str = "D0DM1",
             **event: Any) -> dict[str, Any]:
    """A message.im event as Slack sends it (the bolt-python fixture's shape, in a direct message)."""
    return {
        "token": "verification_token", "team_id": team, "api_app_id": "A111", "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()), "authed_users": ["W111"],
        "event": {
            "client_msg_id": event_id.lower(), "type": "message", "text": text, "user": user,
            "ts": f"{time.time():.6f}", "team": team, "channel": channel, "event_ts": f"{time.time():.6f}",
            "channel_type": "im", **event,
        },
    }
