"""The webhooks Twilio calls for WhatsApp, built from the shared steps (channels/webhook.py), and the media links.

`POST /webhooks/twilio/whatsapp` (messages) and `POST /webhooks/twilio/status` (delivery reports) take the same steps:
a form body (415 otherwise) → size limit (413) → parse the form fields (400) → verify X-Twilio-Signature over
PUBLIC_BASE_URL + path and the fields (401 when missing, 403 when wrong) → record → an empty TwiML <Response/>,
well inside the 15 s Twilio waits. A repeated MessageSid is recognised when recording and acknowledged all the same.
`GET /webhooks/twilio/media/…` serves the files documents link to (channels/whatsapp/media.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.datastructures import MultiDict
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bot.channel import ChannelHost, RequestRejected
from channels.webhook import Ignored, LimitBody, MediaType, Parse, Record, Webhook, WebhookRequest, refusal
from channels.whatsapp.inbound import (
    CHANNEL,
    SIGNATURE_HEADER,
    DeliveryReport,
    delivery_report,
    inbound_message,
    read_form,
    verify,
    webhook_url,
)
from channels.whatsapp.media import MEDIA_PATH

if TYPE_CHECKING:
    from channels.whatsapp.channel import WhatsAppChannel

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/twilio/whatsapp"
STATUS_PATH = "/webhooks/twilio/status"
EMPTY_TWIML = str(MessagingResponse())


class TwilioSignature:
    """Verify: X-Twilio-Signature over the URL Twilio called (rebuilt from PUBLIC_BASE_URL) and the form fields."""

    def __init__(self, auth_token: str, public_base_url: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_base_url = public_base_url

    async def __call__(self, request: WebhookRequest) -> None:
        url = webhook_url(self.public_base_url, request.http.url.path, request.http.url.query)
        verify(self.validator, url, request.payload, request.http.headers.get(SIGNATURE_HEADER))


def webhook_routes(channel: WhatsAppChannel, host: ChannelHost) -> list[Route]:
    async def record_message(form: MultiDict) -> None:
        found = inbound_message(form)
        if isinstance(found, Ignored):
            log.info("whatsapp webhook ignored: %s", found.reason)
        else:
            await host.receive(found)  # a repeated MessageSid is recognised there and acknowledged all the same

    async def record_report(form: MultiDict) -> None:
        found = delivery_report(form)
        if isinstance(found, DeliveryReport):
            # (refused as outside the window: with an approved template it goes again at once, as the template)
            await host.record_delivery(CHANNEL, found.message_sid, found.status, error=found.error_code,
                                       waits_for_inbound=found.window_closed,
                                       sends_otherwise=bool(channel.template_content_sid),
                                       unreachable=found.unreachable, opted_out=found.opted_out)
        else:
            log.info("whatsapp status callback ignored: %s", found.reason)

    def twilio_webhook(record: Record) -> Webhook:
        return Webhook(
            MediaType("application/x-www-form-urlencoded", "Twilio webhooks are application/x-www-form-urlencoded."),
            LimitBody(channel.max_body_bytes),
            Parse(read_form),
            TwilioSignature(channel.auth_token, channel.public_base_url),
            record,
            acknowledge=empty_twiml,
            refuse=refused,
        )

    return [
        twilio_webhook(Record(record_message)).route(INBOUND_PATH),
        twilio_webhook(Record(record_report)).route(STATUS_PATH),
        Route(MEDIA_PATH, channel.media.serve, methods=["GET"]),
    ]


def empty_twiml(request: WebhookRequest) -> Response:
    """200 with an empty TwiML <Response/>: nothing for Twilio to do (replies go out through the API)."""
    return Response(EMPTY_TWIML, media_type="text/xml")


def refused(exc: RequestRejected) -> Response:
    """The shared refusal (a 503 says when to try again); a signature that does not match is logged here, the
    database away by the core, once for the outage."""
    if exc.status in (401, 403):
        log.warning("whatsapp webhook refused (%s): %s", exc.status, exc.message)
    return refusal(exc)
