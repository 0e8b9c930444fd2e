"""A local stand-in for Twilio, both ways: the REST API the WhatsApp channel calls, and the webhooks Twilio makes.

API: `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` answers as Twilio does (201 with the Message resource, a
fresh `SM…` sid) after checking HTTP basic auth, and records every request's form fields. Failures are scripted: each
request pops the next `Scripted` entry (a status with Twilio's error body, headers such as Retry-After, or a delay that
outlasts the client's timeout) until the script is empty. The real `twilio` client talks to it through
`client.api.base_url` (TWILIO_API_BASE_URL).

Webhooks: `TwilioWebhooks` posts form payloads built from Twilio's documented field names to the app, signed with the
SDK's RequestValidator over PUBLIC_BASE_URL + path, as Twilio signs them.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from standins.serving import serve_locally

ACCOUNT_SID = "AC" + "5" * 32
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
SENDER = "whatsapp:+14155238886"
PUBLIC_BASE_URL = "https://lessonbot.example.org"


@dataclass(frozen=True)
class Scripted:
    """What the next request gets instead of success (status 0 means: succeed, after `delay`)."""

    status: int = 0
    code: int | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def too_many_requests(retry_after: str | None = "1") -> Scripted:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Scripted(429, 20429, "Too Many Requests", headers)


def server_error() -> Scripted:
    return Scripted(500, 20500, "Internal Server Error")


def slow(seconds: float) -> Scripted:
    return Scripted(delay=seconds)


def invalid_number() -> Scripted:
    return Scripted(400, 21211, "The 'To' number whatsapp:+15557654321 is not a valid phone number.")


def unsubscribed() -> Scripted:
    return Scripted(400, 21610, "Attempt to send to unsubscribed recipient")


def outside_window() -> Scripted:
    return Scripted(
        400, 63016, "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template."
    )


@dataclass
class SentMessage:
    """One Message create request as Twilio received it (form fields; MediaUrl may repeat)."""

    sid: str
    form: dict[str, list[str]]
    at: float = field(default_factory=time.monotonic)  # when the stand-in accepted it

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.form.get(name)
        return values[0] if values else default

    @property
    def to(self) -> str | None:
        return self.get("To")

    @property
    def body(self) -> str | None:
        return self.get("Body")


class TwilioStandIn:
    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sent: list[SentMessage] = []
        self.refused: list[dict[str, list[str]]] = []  # requests answered with a scripted failure
        self.script: list[Scripted] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account_sid}/Messages.json", self._create_message)
        self._runner, port = await serve_locally(app)
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> TwilioStandIn:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    def to(self, number: str) -> list[SentMessage]:
        return [message for message in self.sent if message.to == f"whatsapp:{number}"]

    async def wait_for(self, count: int, *, timeout: float = 10.0) -> list[SentMessage]:
        """Wait until at least `count` messages were accepted; returns them all."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                await asyncio.sleep(0.02)
        return self.sent

    # the API ---------------------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == expected

    async def _create_message(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.match_info["account_sid"] != self.account_sid or not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        posted = await request.post()
        form: dict[str, list[str]] = {}
        for name, value in posted.items():
            form.setdefault(name, []).append(str(value))
        scripted = self.script.pop(0) if self.script else Scripted()
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        if scripted.status:
            self.refused.append(form)
            return _error(scripted.status, scripted.code, scripted.message, scripted.headers)
        if "To" not in form or not ({"Body", "MediaUrl", "ContentSid"} & form.keys()):
            return _error(400, 21602, "Message body is required.")
        sid = "SM" + secrets.token_hex(16)
        self.sent.append(SentMessage(sid, form))
        now = format_datetime(datetime.now(timezone.utc))
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body", [""])[0],
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From", [None])[0],
            "messaging_service_sid": None,
            "num_media": str(len(form.get("MediaUrl", []))),
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            "to": form["To"][0],
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return web.json_response(resource, status=201)


def _error(status: int, code: int | None, message: str, headers: dict[str, str] | None = None) -> web.Response:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more_info, "status": status}
    return web.json_response(body, status=status, headers=headers)


def message_form(number: str, body: str, *, sid: str | None = None, to: str = SENDER, **fields: str) -> dict[str, str]:
    """An inbound WhatsApp text as Twilio posts it (field names from Twilio's messaging webhook docs)."""
    sid = sid or "SM" + secrets.token_hex(16)
    form = {
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ProfileName": "Ann Learner",
        "MessageType": "text",
        "SmsSid": sid,
        "WaId": number.lstrip("+"),
        "SmsStatus": "received",
        "Body": body,
        "To": to,
        "NumSegments": "1",
        "ReferralNumMedia": "0",
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{number}",
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


class TwilioWebhooks:
    """Twilio calling the app: signed messaging webhooks and status callbacks."""

    def __init__(self, client: httpx.AsyncClient, *, auth_token: str = AUTH_TOKEN,
                 public_base_url: str = PUBLIC_BASE_URL, to: str = SENDER) -> None:
        self.client = client
        self.validator = RequestValidator(auth_token)
        self.public_base_url = public_base_url
        self.to = to

    def message_form(self, number: str, body: str, *, sid: str | None = None, **fields: str) -> dict[str, str]:
        return message_form(number, body, sid=sid, to=self.to, **fields)

    def signature(self, path: str, form: dict[str, str]) -> str:
        return self.validator.compute_signature(self.public_base_url + path, form)

    async def post(self, path: str, form: dict[str, str], *, signature: str | None = "sign") -> httpx.Response:
        """POST the form; `signature="sign"` signs it properly, None leaves the header out, anything else is sent."""
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature == "sign":
            signature = self.signature(path, form)
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        return await self.client.post(path, content=urlencode(form), headers=headers)

    async def message(self, number: str, body: str, **fields: str) -> httpx.Response:
        return await self.post("/webhooks/twilio/whatsapp", self.message_form(number, body, **fields))

    async def status(self, sid: str, status: str, error_code: str | None = None) -> httpx.Response:
        form = {
            "AccountSid": ACCOUNT_SID,
            "ApiVersion": "2010-04-01",
            "From": SENDER,
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": "whatsapp:+15551234567",
        }
        if error_code:
            form["ErrorCode"] = error_code
        return await self.post("/webhooks/twilio/status", form)
