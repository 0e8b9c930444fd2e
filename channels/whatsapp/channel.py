"""WhatsApp through Twilio: sending replies with the twilio SDK, and the rules WhatsApp sets on sending.

Inbound: the webhooks Twilio calls (channels/whatsapp/routes.py), read into the core's terms by
channels/whatsapp/inbound.py. STOP / START / HELP are Twilio's keywords: the channel marks them and the core keeps the
opt-out in the database (see bot.pipeline and bot.dispatcher).

Outbound: one Twilio Message per part of a reply (see channels/whatsapp/render.py), each with a StatusCallback so the
outbox row learns whether it was delivered and read. Twilio's limits shape the errors `send` raises for the
dispatcher: 80 messages/s per sender (the rate limit it declares), 429 → RateLimited at Retry-After, 5xx and timeouts
→ TransientSendError, a refusal that will not change (invalid number 21211, unsubscribed 21610) → PermanentSendError,
and outside the 24-hour customer-service window (error 63016) a configured template, or WaitForInbound. WhatsApp's
clock may close the window before ours (which closes it WINDOW_MARGIN early): a reply Twilio took and then reports
refused with 63016 goes again at once as the template where one is configured (the status callback says so to the
core, `sends_otherwise`, and its next Delivery is `window_closed`), else it waits for the person's next message.

The window is WhatsApp's rule, so it is kept here alone: `send` follows it, and the channel declares it
(`may_send_unprompted_until`, bot.channel.SendsUnpromptedWithin) for the scheduler, which skips a nudge that could
only wait.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client

from bot.channel import (
    ChannelHost,
    Delivery,
    PermanentSendError,
    RateLimit,
    RateLimited,
    SendError,
    TransientSendError,
    Unreachable,
    WaitForInbound,
)
from bot.messages import Document, Text
from channels.markdown import WHATSAPP, render
from channels.text import split_utf16
from channels.whatsapp.inbound import CHANNEL
from channels.whatsapp.media import MediaLinks
from channels.whatsapp.render import (
    MAX_BODY_CHARS,
    quick_reply_variables,
    template_variables,
    text_bodies,
)
from channels.whatsapp.routes import STATUS_PATH, webhook_routes

# What Twilio's WhatsApp sends as media (twilio.com/docs/whatsapp/guidance-whatsapp-media-messages): PDF, DOC, DOCX,
# PPTX and XLSX documents, and images, audio and video of a few types; a document of another type goes as a link.
CARRIED_MEDIA = frozenset({
    "application/pdf", "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "image/jpeg", "image/png", "audio/ogg", "audio/amr", "audio/3gpp", "audio/aac", "audio/mpeg", "video/mp4",
    "text/vcard",
})

log = logging.getLogger(__name__)
# The SDK logs every request's URL and headers at INFO: at 80 sends a second that drowns our own logs.
_sdk_log = logging.getLogger(f"{__name__}.sdk")
_sdk_log.setLevel(logging.WARNING)

SENDS_PER_SECOND = 80  # Twilio's default for one WhatsApp sender
CUSTOMER_SERVICE_WINDOW = timedelta(hours=24)
# Our last_inbound_at is when the message was processed, a little after Twilio received it: close the window early.
WINDOW_MARGIN = timedelta(minutes=2)
DEFAULT_RETRY_AFTER = 1.0
NEVER_OPEN = datetime.min.replace(tzinfo=timezone.utc)  # the window of a person who never wrote

NO_TEMPLATE = (
    "outside WhatsApp's 24-hour window and no template configured (TWILIO_TEMPLATE_CONTENT_SID): "
    "it waits for the person's next message"
)
DOCUMENT_WAITS = "a document may only go inside WhatsApp's 24-hour window: it waits for the person's next message"
UNSUBSCRIBED = 21610
# The number is not one WhatsApp or Twilio will deliver to: not a phone number, not a mobile one, not a valid
# recipient, or its person unsubscribed (`bot.channel.Unreachable`)
UNREACHABLE = frozenset({21211, 21614, 63024, UNSUBSCRIBED})
ERROR_HINTS = {
    20003: "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
    21211: "the number is not a valid phone number",
    21610: "the person unsubscribed at Twilio (STOP); they must send START to this number",
    21606: "TWILIO_WHATSAPP_FROM is not a sender of this account",
    63007: "TWILIO_WHATSAPP_FROM is not a WhatsApp sender of this account",
}


class WhatsAppChannel:
    name = CHANNEL

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_base_url: str,
        api_base_url: str = "https://api.twilio.com",
        max_body_bytes: int = 64 * 1024,
        template_content_sid: str = "",
        quick_reply_content_sids: dict[int, str] | None = None,
        timeout: float = 10.0,
        sends_per_second: int = SENDS_PER_SECOND,
    ) -> None:
        if not public_base_url:
            raise ValueError(
                "PUBLIC_BASE_URL is not set: Twilio signs each webhook over the URL it calls, so the WhatsApp channel "
                "needs that address (e.g. https://bot.example.com, or your tunnel's https URL)."
            )
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.sender = sender if sender.startswith("whatsapp:") else f"whatsapp:{sender}"
        self.public_base_url = public_base_url.rstrip("/")
        self.api_base_url = api_base_url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        self.template_content_sid = template_content_sid
        self.quick_reply_content_sids = dict(quick_reply_content_sids or {})
        self.timeout = timeout
        self.sends_per_second = sends_per_second  # the sender's throughput (Twilio raises it on request)
        self.status_callback_url = self.public_base_url + STATUS_PATH
        self.media = MediaLinks(auth_token, self.public_base_url)
        self._client: Client | None = None

    # inbound -------------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[Route]:
        """The message and status webhooks, and the media links (channels/whatsapp/routes.py)."""
        return webhook_routes(self, host)

    # outbound ------------------------------------------------------------------------------------------------------

    def may_send_unprompted_until(self, last_inbound_at: datetime | None) -> datetime | None:
        """Until when a message the person did not ask for may go out: the close of the 24-hour window, or no limit
        when an approved template (TWILIO_TEMPLATE_CONTENT_SID) can carry it outside the window."""
        if self.template_content_sid:
            return None
        return window_closes_at(last_inbound_at)

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        sender = self.sender.removeprefix("whatsapp:")
        return (RateLimit(f"whatsapp:sender:{sender}", self.sends_per_second, 1.0, shared=True),)

    async def send(self, delivery: Delivery) -> str:
        """Send one reply; returns the sid of its last Twilio message (delivery reports for that sid update it)."""
        to = f"whatsapp:{delivery.chat_id}"
        # closed by our clock, or by WhatsApp's (63016 reported after Twilio took this reply, and no message since)
        if not _window_open(delivery.last_inbound_at) or delivery.window_closed:
            return await self._send_template(to, delivery)
        try:
            return await self._send_in_session(to, delivery)
        except WaitForInbound:
            # Twilio says the window is closed (63016) although our clock said open.
            if self.template_content_sid:
                return await self._send_template(to, delivery)
            raise

    async def _send_in_session(self, to: str, delivery: Delivery) -> str:
        if not isinstance(delivery.reply, Text | Document):
            raise PermanentSendError(f"WhatsApp cannot send a {type(delivery.reply).__name__}")
        messages = self._messages(delivery.reply)
        sent = delivery.parts.ids  # accepted before (by any process): a retry resumes after them
        for index in range(len(sent), len(messages)):
            sid = await self._create(to, **messages[index])
            await delivery.parts.add(sid, more_to_come=index + 1 < len(messages))
        return sent[-1]

    async def _send_template(self, to: str, delivery: Delivery) -> str:
        """The reply as the approved template, in as many as it needs. Each message the reply makes inside the window
        goes as the templates that carry it, and counts as sent once they all went: a reply whose first parts went
        inside the window (or as templates before a retry) goes on from there, repeating none of them."""
        reply = delivery.reply
        if not self.template_content_sid:
            raise WaitForInbound(NO_TEMPLATE)
        if not isinstance(reply, Text):
            raise WaitForInbound(DOCUMENT_WAITS)
        messages = template_variables(reply)
        sent = delivery.parts.ids
        for index in range(len(sent), len(messages)):
            for variables in messages[index]:
                sid = await self._create(to, content_sid=self.template_content_sid, content_variables=variables)
            await delivery.parts.add(sid, more_to_come=index + 1 < len(messages))
        return sent[-1]

    def _messages(self, reply: Text | Document) -> list[dict[str, Any]]:
        """The Twilio Message parameters a reply becomes, in sending order."""
        if isinstance(reply, Text):
            template = self.quick_reply_content_sids.get(len(reply.choices))
            variables = quick_reply_variables(reply) if template else None
            if template and variables:
                return [{"content_sid": template, "content_variables": variables}]
            return [{"body": body} for body in text_bodies(reply)]
        if reply.url:
            url = reply.url
        elif reply.path:
            url = self.media.link(reply.path, reply.filename, reply.media_type)
        else:
            raise PermanentSendError(f"the document {reply.filename!r} has neither a url nor a path to send")
        caption = render(reply.caption, WHATSAPP)
        if _media_type(reply) not in CARRIED_MEDIA:
            # a file WhatsApp does not carry (the data export's JSON): its caption and a link to download it
            return [{"body": body} for body in split_utf16(f"{caption}\n\n{url}".strip(), MAX_BODY_CHARS)]
        # WhatsApp shows no caption under a document: it goes first, as a message of its own (a certificate's
        # verification code is in it), then the file
        captions = split_utf16(caption, MAX_BODY_CHARS) if caption.strip() else []
        return [*({"body": part} for part in captions), {"media_url": [url]}]

    async def _create(self, to: str, **params: Any) -> str:
        try:
            message = await self._twilio().messages.create_async(
                to=to, from_=self.sender, status_callback=self.status_callback_url, **params
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _send_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSendError(f"Twilio did not answer ({type(exc).__name__}: {exc})") from exc
        if not message.sid:
            raise TransientSendError("Twilio accepted the message but returned no sid")
        return message.sid


    def _twilio(self) -> Client:
        """The SDK client, made on first use inside the running loop (its aiohttp session belongs to that loop)."""
        if self._client is None:
            http = _TwilioHttpClient(timeout=self.timeout, logger=_sdk_log)
            client = Client(self.account_sid, self.auth_token, http_client=http)
            client.edge = client.region = None  # the API's address is TWILIO_API_BASE_URL alone
            client.api.base_url = self.api_base_url
            self._client = client
        return self._client

    async def close(self) -> None:
        """Close the HTTP session (the app calls this at shutdown)."""
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None


class _TwilioHttpClient(AsyncTwilioHttpClient):
    """Twilio's aiohttp client with three fixes: the SDK passes no timeout per request (so aiohttp would wait
    forever); a 429's Retry-After is read here, the only place that sees the response headers; and the credentials go
    in an Authorization header, as aiohttp 3.14 deprecates its `auth` argument."""

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        response = await super().request(
            method, url, params, data, headers, None, timeout or self.timeout, allow_redirects
        )
        if response.status_code == 429:
            raise RateLimited(_retry_after_seconds(response.headers.get("Retry-After")), "Twilio answered 429")
        return response


def window_closes_at(last_inbound_at: datetime | None) -> datetime:
    """When free text may no longer go: 24 hours after the person last wrote (WhatsApp's customer-service window),
    less WINDOW_MARGIN; long past when they never wrote."""
    if last_inbound_at is None:
        return NEVER_OPEN
    return last_inbound_at + CUSTOMER_SERVICE_WINDOW - WINDOW_MARGIN


def _window_open(last_inbound_at: datetime | None) -> bool:
    """Whether free text may go now: the person wrote within WhatsApp's 24-hour customer-service window."""
    return datetime.now(timezone.utc) < window_closes_at(last_inbound_at)


def _retry_after_seconds(value: str | None) -> float:
    """Retry-After as seconds (it may be a number or an HTTP date); 1 s when absent or unreadable."""
    if not value:
        return DEFAULT_RETRY_AFTER
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


# A phone number in what Twilio says ("The 'To' number whatsapp:+15557654321 is not valid"): the error is logged and
# kept on the reply's row, where a learner's number has no business.
_PHONE_NUMBER = re.compile(r"\+?\d[\d ().-]{5,}\d(?=\d{2}\b)")


def without_numbers(text: str) -> str:
    """`text` with each phone number in it masked but for its last two digits ("whatsapp:+…21")."""
    return _PHONE_NUMBER.sub("+…", text)


def _send_error(exc: TwilioRestException | TwilioServiceException) -> SendError:
    """What the dispatcher should do about a refusal from Twilio's API."""
    status, code = exc.status, exc.code
    said = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
    detail = f"Twilio error {code} (HTTP {status}): {without_numbers(said or '')}"
    if code in ERROR_HINTS:
        detail += f" — {ERROR_HINTS[code]}"
    if status == 429 or code == 20429:
        return RateLimited(DEFAULT_RETRY_AFTER, detail)
    if code == 63016:
        return WaitForInbound(f"Twilio says WhatsApp's 24-hour window is closed ({detail}): it waits for the "
                              "person's next message")
    if status >= 500:
        return TransientSendError(detail)
    refusal = str(code) if code else None
    if code in UNREACHABLE:
        return Unreachable(detail, opted_out=code == UNSUBSCRIBED, refusal=refusal)
    return PermanentSendError(detail, refusal=refusal)


def _media_type(document: Document) -> str:
    """The document's type as declared, or, where it declares none, as its file name says ("notes.pdf")."""
    if document.media_type != "application/octet-stream":
        return document.media_type
    return mimetypes.guess_type(document.filename)[0] or document.media_type
