"""What Twilio posts to the WhatsApp webhooks, verified and read into the core's terms.

Twilio signs every webhook with `X-Twilio-Signature`: base64 HMAC-SHA1, under the account's Auth Token, of the URL
Twilio was given followed by each form parameter's name and value in name order. Behind a proxy or tunnel the URL the
app sees is not that URL, so it is rebuilt from PUBLIC_BASE_URL.

Field names are Twilio's ("Messaging webhook request" and "status callback" pages): MessageSid, AccountSid, From and
To (`whatsapp:+E.164`), Body, NumMedia, MediaUrl{N} / MediaContentType{N}, ProfileName, WaId, ButtonText and
ButtonPayload (a tapped quick reply), Latitude / Longitude / Address / Label (a shared location),
OriginalRepliedMessageSid (the message the person swiped to reply to); MessageStatus and ErrorCode in status
callbacks.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.datastructures import MultiDict
from twilio.request_validator import RequestValidator

from bot.channel import RequestRejected
from bot.messages import LOCATION, MEDIA, NUMBERED_CHOICES, REPLYING_TO, SUBSCRIPTION, InboundMessage, InboundMeta
from bot.text import whole_number
from channels.webhook import Ignored

log = logging.getLogger(__name__)

CHANNEL = "whatsapp"
SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_FIELDS = 200  # Twilio sends a few dozen; a flood of fields is not Twilio
MAX_MEDIA = 10  # WhatsApp messages carry at most 10 media items

# Twilio's default keywords ("Twilio support for opt-out keywords"): the whole message, one word, any case.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
HELP_COMMAND = "/help"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def webhook_url(public_base_url: str, path: str, query: str = "") -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL (scheme, host and any prefix the proxy strips) + path + query."""
    url = public_base_url.rstrip("/") + path
    return f"{url}?{query}" if query else url


def read_form(body: bytes) -> MultiDict:
    """The form fields of a Twilio webhook body (application/x-www-form-urlencoded, UTF-8)."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), errors="strict", max_num_fields=MAX_FIELDS
        )
    except UnicodeDecodeError:
        raise RequestRejected(400, "The body is not UTF-8 form data.") from None
    except ValueError as exc:
        raise RequestRejected(400, f"The body is not valid form data ({exc}).") from None
    return MultiDict(pairs)


def verify(validator: RequestValidator, url: str, form: MultiDict, signature: str | None) -> None:
    """Refuse an unsigned request (401) or one whose signature does not match (403).

    The answer to a bad signature says only that; the log says what an operator should check. The SDK's validator
    compares in constant time and accepts the URL with and without an explicit port, as Twilio
    signs either form.
    """
    if not signature:
        raise RequestRejected(401, f"Missing {SIGNATURE_HEADER}: only Twilio may call this webhook.")
    if not validator.validate(url, form, signature):
        # The caller learns only that the signature did not verify; what to check is for the operator's log.
        log.warning(
            "a WhatsApp webhook's %s did not verify: if Twilio sent it, check that TWILIO_AUTH_TOKEN is the account's "
            "primary Auth Token and that the webhook URL configured at Twilio is exactly %s",
            SIGNATURE_HEADER, url,
        )
        raise RequestRejected(403, f"{SIGNATURE_HEADER} did not verify.")


def whatsapp_number(address: str) -> str:
    """'whatsapp:+15551234567' → '+15551234567' (the chat id and sender id on this channel)."""
    number = address.removeprefix("whatsapp:")
    if not _E164.fullmatch(number):
        raise RequestRejected(400, f"'From' must be whatsapp:+ and an E.164 number, not {address!r}.")
    return number


def inbound_message(form: MultiDict) -> InboundMessage | Ignored:
    """One verified WhatsApp message in the core's terms, or the reason it is not one."""
    sid, sender = form.get("MessageSid", ""), form.get("From", "")
    if not sid:
        raise RequestRejected(400, "'MessageSid' is missing: this is not a Twilio messaging webhook.")
    if not sender.startswith("whatsapp:"):
        return Ignored(f"not a WhatsApp message (From {sender[:40]!r}); point only WhatsApp senders here")
    number = whatsapp_number(sender)
    body = form.get("Body", "")
    meta: InboundMeta = {}
    media = _media(form)
    if media:
        meta[MEDIA] = media
    if form.get("Latitude") and form.get("Longitude"):
        meta[LOCATION] = {
            key.lower(): form[key] for key in ("Latitude", "Longitude", "Address", "Label") if form.get(key)
        }
    replied = form.get("OriginalRepliedMessageSid")
    if replied:
        meta[REPLYING_TO] = replied  # (a typed choice answers that message's question)
    choice = form.get("ButtonPayload") or None
    text = body or form.get("ButtonText", "")
    keyword = body.strip().upper()
    if choice is None:
        meta[NUMBERED_CHOICES] = True  # choices went out as "1. label" lines: the core resolves "2" or "Beta"
        if keyword in OPT_OUT_KEYWORDS:
            meta[SUBSCRIPTION] = "stop"
        elif keyword in OPT_IN_KEYWORDS:
            meta[SUBSCRIPTION] = "start"  # only while opted out; otherwise YES is an ordinary answer
        elif keyword in HELP_KEYWORDS:
            choice = HELP_COMMAND
    if not text.strip() and choice is None and not media and LOCATION not in meta:
        return Ignored(f"nothing to read (MessageType {form.get('MessageType', 'unknown')!r})")
    return InboundMessage(
        channel=CHANNEL,
        platform_id=sid,
        chat_id=number,
        sender_id=number,
        text=text,
        choice=choice,
        sender_name=form.get("ProfileName") or None,
        meta=meta,
    )


def _media(form: MultiDict) -> list[dict[str, str]]:
    """MediaUrl0…, with their content types. The URLs need the account's credentials to fetch (HTTP basic auth)."""
    raw = form.get("NumMedia", "0")
    count = min(whole_number(raw) or 0, MAX_MEDIA)  # (a count of other digits, or past any id: none read)
    items = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if url:
            items.append({"url": url, "content_type": form.get(f"MediaContentType{index}", "")})
    return items


WINDOW_CLOSED = "63016"  # Twilio's error code: outside WhatsApp's 24-hour customer-service window
# What WhatsApp reports, after Twilio took a message, of a number it will not deliver to: an unknown handset (30005),
# a landline or a carrier it cannot reach (30006), not on WhatsApp (63003, "Channel could not find To address"), not
# a valid recipient (63024), or its person unsubscribed (21610). Refused at once, such a number is an API error
# (channels/whatsapp/channel.py, UNREACHABLE). Other failures (30003 a handset off, 30007 filtered, 30008 unknown)
# are the message's alone: noted on its row.
UNSUBSCRIBED = "21610"
RECIPIENT_REFUSED = frozenset({"30005", "30006", "63003", "63024", UNSUBSCRIBED})


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A status callback: where one sent message got to (queued, sent, delivered, read, failed, undelivered)."""

    message_sid: str
    status: str
    error_code: str | None

    @property
    def window_closed(self) -> bool:
        """WhatsApp refused it as outside the 24-hour window (63016), though the send was taken: it may go again
        once the person writes."""
        return self.status in ("failed", "undelivered") and self.error_code == WINDOW_CLOSED

    @property
    def unreachable(self) -> bool:
        """WhatsApp will not deliver to the number (RECIPIENT_REFUSED): nothing more should go until it writes."""
        return self.status in ("failed", "undelivered") and self.error_code in RECIPIENT_REFUSED

    @property
    def opted_out(self) -> bool:
        """The person unsubscribed at Twilio (21610): as by STOP, only their START lifts it."""
        return self.unreachable and self.error_code == UNSUBSCRIBED


def delivery_report(form: MultiDict) -> DeliveryReport | Ignored:
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        return Ignored("a status callback without MessageSid or MessageStatus")
    error = form.get("ErrorCode") or None
    return DeliveryReport(sid, status.lower(), error if error and error != "0" else None)
