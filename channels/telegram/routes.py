"""Telegram's webhook, `POST /webhooks/telegram`, built from the shared steps (channels/webhook.py).

Verify: the `X-Telegram-Bot-Api-Secret-Token` header is compared in constant time with TELEGRAM_WEBHOOK_SECRET (401
when missing, 403 when wrong) before anything is read. Size limit and parse: the body is read within the limit (413)
and must be a JSON object with an integer update_id (400). Record: the update becomes an InboundMessage and is
recorded, or is ignored with a logged reason (`TelegramChannel.accept`). Acknowledge: 200. Telegram redelivers until
it gets a 2xx, so a failure to record answers 500 and the update comes again; a redelivery is recognised by its
update_id.

A pressed button is answered (so its spinner stops) in the acknowledgement itself: Telegram lets a webhook's response
carry one Bot API call, here `answerCallbackQuery`. That costs no request, cannot delay the acknowledgement, and
cannot be lost with a background task at shutdown; its result is unknown, which for a spinner does not matter.
Polling (channels/telegram/polling.py) has no response to carry it and answers with a call of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.channel import ChannelHost, RequestRejected
from channels.webhook import HeaderSecret, LimitBody, Parse, Record, Webhook, WebhookRequest, parse_json

if TYPE_CHECKING:
    from channels.telegram.channel import TelegramChannel

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_routes(channel: TelegramChannel, host: ChannelHost) -> list[Route]:
    if not channel.webhook_secret:
        # Anyone who finds the URL could post updates as any learner.
        raise ValueError(
            "TELEGRAM_WEBHOOK_SECRET is empty: refusing to serve an unsigned Telegram webhook. Set it to a random "
            "string (letters, digits, _ and -, e.g. `openssl rand -hex 32`) and run `lessonbot telegram "
            "set-webhook URL`."
        )

    async def record(update: dict[str, Any]) -> Any:
        return await channel.accept(update, host)

    webhook = Webhook(
        HeaderSecret(
            SECRET_HEADER,
            channel.webhook_secret,
            missing=f"Missing {SECRET_HEADER}: register the webhook with `lessonbot telegram set-webhook URL`, "
            "which sets it.",
            wrong=f"{SECRET_HEADER} does not match.",
            hint="if Telegram sent it, check TELEGRAM_WEBHOOK_SECRET and register the webhook again with "
            "`lessonbot telegram set-webhook URL`",
        ),
        LimitBody(channel.max_body_bytes),
        Parse(parse_body),
        Record(record),
        acknowledge=acknowledge,
    )
    return [webhook.route(WEBHOOK_PATH)]


def parse_body(body: bytes) -> dict[str, Any]:
    """A webhook body as a JSON object with an integer update_id; 400 otherwise."""
    data = parse_json(body)
    if not isinstance(data, dict) or type(data.get("update_id")) is not int:
        raise RequestRejected(400, "The body is not a Telegram update (a JSON object with an integer update_id).")
    return data


def acknowledge(request: WebhookRequest) -> Response:
    """200, carrying `answerCallbackQuery` for a pressed button."""
    callback_query_id = request.outcome.callback_query_id
    if callback_query_id is not None:
        return JSONResponse({"method": "answerCallbackQuery", "callback_query_id": callback_query_id})
    return Response(status_code=200)
