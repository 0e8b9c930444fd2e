"""A local stand-in of the Telegram Bot API that python-telegram-bot talks to through its base URL.

It answers the methods Lessonbot calls (getMe, sendMessage, sendDocument, sendChatAction, sendMessageDraft,
answerCallbackQuery, setWebhook, deleteWebhook, getUpdates, and for Telegram Stars sendInvoice, createInvoiceLink
(a subscription), answerPreCheckoutQuery, refundStarPayment and editUserStarSubscription) the way api.telegram.org
does, records every call (its parameters as strings, however they came: a JSON object, a form, multipart), and can
be scripted to fail the next calls of a method: a 429 with `parameters.retry_after`, a 500, a 403 "bot was blocked
by the user", a 400 "message thread not found" (a forum topic deleted), or no answer at all (so the client times
out).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from standins.serving import serve_locally

TOKEN = "123456:TEST-token_for-the-stand-in"
BOT_ID = 123456
SUBSCRIPTION_PERIOD = 30 * 24 * 3600  # the only period Telegram bills Stars subscriptions at
SUBSCRIPTION_MAX_STARS = 10_000
BOT_USERNAME = "lessonbot_test_bot"


class BadRequest(Exception):
    """A call the real Bot API refuses with 400 (its description is the message)."""


@dataclass(frozen=True)
class Fault:
    """How the stand-in answers one call instead of doing it."""

    status: int
    description: str
    retry_after: int | None = None
    hang: bool = False
    migrate_to_chat_id: int | None = None

    @classmethod
    def too_many_requests(cls, retry_after: int = 1) -> Fault:
        return cls(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        return cls(500, "Internal Server Error")

    @classmethod
    def blocked(cls) -> Fault:
        return cls(403, "Forbidden: bot was blocked by the user")

    @classmethod
    def migrated(cls, to_chat_id: int) -> Fault:
        """The group became a supergroup (Telegram answers a send to its old id so, with the new id)."""
        return cls(400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=to_chat_id)

    @classmethod
    def chat_gone(cls) -> Fault:
        """The chat is no more, or the bot cannot reach it at all (a deleted group, an id no chat has)."""
        return cls(400, "Bad Request: chat not found")

    @classmethod
    def not_started(cls) -> Fault:
        """A person whose private chat with the bot is not open (never started, or deleted): a bot cannot write
        first."""
        return cls(403, "Forbidden: bot can't initiate conversation with a user")

    @classmethod
    def muted(cls) -> Fault:
        """The bot may not send in the group: its admins took its right to send messages (it stays a member)."""
        return cls(400, "Bad Request: not enough rights to send text messages to the chat")

    @classmethod
    def no_documents(cls) -> Fault:
        """The bot may send text in the group, but not documents: its admins took that one right (media kinds are
        each a right of their own)."""
        return cls(400, "Bad Request: not enough rights to send documents to the chat")

    @classmethod
    def no_rights(cls) -> Fault:
        """The bot may not send in the group at all (a restricted member, a group where only admins write)."""
        return cls(400, "Bad Request: have no rights to send a message")

    @classmethod
    def topic_gone(cls) -> Fault:
        """The forum topic a message is sent to was deleted (or closed for good) meanwhile."""
        return cls(400, "Bad Request: message thread not found")

    @classmethod
    def topic_closed(cls) -> Fault:
        """The forum topic a message is sent to was closed by the group's admins (only they may post in it)."""
        return cls(400, "Bad Request: TOPIC_CLOSED")

    @classmethod
    def no_answer(cls) -> Fault:
        return cls(504, "Gateway Timeout", hang=True)


@dataclass
class Call:
    method: str
    params: dict[str, str]
    files: dict[str, tuple[str, bytes]]
    outcome: str  # "ok", or the fault's status
    result: Any = None  # what the stand-in answered
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def reply_markup(self) -> dict[str, Any] | None:
        raw = self.params.get("reply_markup")
        return json.loads(raw) if raw else None


class TelegramStandIn:
    def __init__(self, *, token: str = TOKEN, latency: float = 0.0) -> None:
        self.token = token
        self.latency = latency  # seconds each sendMessage takes to answer: a slow platform
        self.arrived: list[str] = []  # the chat of each sendMessage as it arrives, before it is answered
        self.calls: list[Call] = []
        # Told of every call answered "ok", as it is answered (a bench times replies where they arrive with it).
        self.on_call: Callable[[Call], None] | None = None
        self.faults: dict[str, list[Fault | None]] = {}
        self.refused_chats: dict[str, Fault] = {}  # chat id → how every message to it is refused (`refuse`)
        self.updates: list[dict[str, Any]] = []
        self.webhook: dict[str, str] | None = None
        self._message_ids = itertools.count(1000)
        self.charges: dict[str, dict[str, Any]] = {}  # Stars payments made, by telegram_payment_charge_id
        self._new_update = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle --------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> TelegramStandIn:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What TELEGRAM_API_BASE_URL is set to: the token follows it."""
        return f"http://127.0.0.1:{self.port}/bot"

    # scripting and reading ----------------------------------------------------------------------------------------

    def fail(self, method: str, *faults: Fault | None) -> None:
        """The next calls of `method` get these faults, one each, in order (None: that call succeeds); later calls
        succeed."""
        self.faults.setdefault(method, []).extend(faults)

    def refuse(self, chat_id: int | str, fault: Fault) -> None:
        """Every later message to the chat gets `fault`, whichever method sends it (a person who never opened a private
        chat with the bot)."""
        self.refused_chats[str(chat_id)] = fault

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates."""
        self.updates.append(update)
        self._new_update.set()

    def called(self, method: str, *, ok: bool | None = True) -> list[Call]:
        return [call for call in self.calls if call.method == method and (ok is None or call.ok == ok)]

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """The texts of the messages delivered (to one chat), in order."""
        return [
            call.params["text"] for call in self.called("sendMessage")
            if chat_id is None or call.params["chat_id"] == str(chat_id)
        ]

    async def wait_for(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Wait until `condition()` holds; fail the test if it does not within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the stand-in did not see that within {timeout} s; calls: {self.summary()}")
            await asyncio.sleep(0.02)

    def summary(self) -> list[str]:
        return [f"{call.method}:{call.outcome}" for call in self.calls]

    # the Bot API ----------------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        if request.content_type == "application/json":  # as the Bot API takes it: the values as JSON, not encoded
            body = await request.json()
            params = {name: value if isinstance(value, str) else json.dumps(value) for name, value in body.items()}
        else:  # a form, multipart when files go along: each value JSON-encoded
            for name, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    files[name] = (value.filename, value.file.read())
                else:
                    params[name] = str(value)
        fault = self.faults[method].pop(0) if self.faults.get(method) else None
        if fault is None and method.startswith("send"):
            fault = self.refused_chats.get(params.get("chat_id", ""))
        if fault is not None:
            self.calls.append(Call(method, params, files, str(fault.status)))
            if fault.hang:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), timeout=30)
            return _error(fault.status, fault.description, fault.retry_after, fault.migrate_to_chat_id)
        answer = getattr(self, f"_{method}", None)
        if answer is None:
            return _error(404, "Not Found")
        try:
            result = await answer(params, files)
        except BadRequest as refused:
            self.calls.append(Call(method, params, files, "400"))
            return _error(400, str(refused))
        call = Call(method, params, files, "ok", result)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        return web.json_response({"ok": True, "result": result})

    async def _getMe(self, params: dict[str, str], files: dict) -> dict[str, Any]:
        return {
            "id": BOT_ID, "is_bot": True, "first_name": "Lessonbot", "username": BOT_USERNAME,
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }

    def _message(self, params: dict[str, str]) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "A group"},
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lessonbot", "username": BOT_USERNAME},
        }

    async def _sendMessage(self, params: dict[str, str], files: dict) -> dict[str, Any]:
        self.arrived.append(params.get("chat_id", ""))
        if self.latency:
            await asyncio.sleep(self.latency)
        message = self._message(params) | {"text": params["text"]}
        if "reply_markup" in params:
            message["reply_markup"] = json.loads(params["reply_markup"])
        return message

    async def _sendDocument(self, params: dict[str, str], files: dict) -> dict[str, Any]:
        filename = files["document"][0] if "document" in files else params["document"].rsplit("/", 1)[-1]
        message = self._message(params) | {
            "document": {"file_id": f"DOC{len(self.calls)}", "file_unique_id": f"U{len(self.calls)}",
                         "file_name": filename},
        }
        if "caption" in params:
            message["caption"] = params["caption"]
        return message

    async def _sendChatAction(self, params: dict[str, str], files: dict) -> bool:
        return True

    async def _sendMessageDraft(self, params: dict[str, str], files: dict) -> bool:
        if int(params["chat_id"]) < 0 or not int(params.get("draft_id", 0)):
            raise BadRequest("Bad Request: drafts go to private chats only, with a non-zero draft_id")
        return True

    async def _sendInvoice(self, params: dict[str, str], files: dict) -> dict[str, Any]:
        prices = json.loads(params["prices"])
        if params["currency"] == "XTR" and (len(prices) != 1 or params.get("provider_token")):
            raise BadRequest("Bad Request: Stars invoices take exactly one price and no provider token")
        return self._message(params) | {"invoice": {
            "title": params["title"], "description": params["description"], "start_parameter": "",
            "currency": params["currency"], "total_amount": sum(int(price["amount"]) for price in prices),
        }}

    async def _createInvoiceLink(self, params: dict[str, str], files: dict) -> str:
        prices = json.loads(params["prices"])
        period = params.get("subscription_period")
        if period is not None and (params["currency"] != "XTR" or int(period) != SUBSCRIPTION_PERIOD):
            raise BadRequest("Bad Request: SUBSCRIPTION_PERIOD_INVALID")
        if period is not None and sum(int(price["amount"]) for price in prices) > SUBSCRIPTION_MAX_STARS:
            raise BadRequest("Bad Request: SUBSCRIPTION_PRICE_INVALID")
        return f"https://t.me/$lessonbot{len(self.calls)}"

    async def _editUserStarSubscription(self, params: dict[str, str], files: dict) -> bool:
        charge = self.charges.get(params["telegram_payment_charge_id"])
        if charge is None or charge["user_id"] != int(params["user_id"]) or "period" not in charge:
            raise BadRequest("Bad Request: SUBSCRIPTION_NOT_FOUND")
        charge["canceled"] = params["is_canceled"] == "true"
        return True

    async def _answerPreCheckoutQuery(self, params: dict[str, str], files: dict) -> bool:
        if params["ok"] == "false" and not params.get("error_message"):
            raise BadRequest("Bad Request: error_message is required when ok is false")
        return True

    async def _refundStarPayment(self, params: dict[str, str], files: dict) -> bool:
        charge = self.charges.get(params["telegram_payment_charge_id"])
        if charge is None or charge["user_id"] != int(params["user_id"]):
            raise BadRequest("Bad Request: CHARGE_NOT_FOUND")
        if charge.get("refunded"):
            raise BadRequest("Bad Request: CHARGE_ALREADY_REFUNDED")
        charge["refunded"] = True
        return True

    def pay(self, invoice: Call, user: dict[str, Any]) -> dict[str, Any]:
        """The person pays the invoice `invoice` (a recorded sendInvoice, or createInvoiceLink for a subscription):
        the successful_payment Telegram reports (a subscription's first)."""
        charge_id = f"stxTEST{next(self._message_ids)}"
        self.charges[charge_id] = {"user_id": user["id"], "invoice": invoice}
        paid = {
            "currency": invoice.params["currency"],
            "total_amount": invoice_total(invoice), "invoice_payload": invoice.params["payload"],
            "telegram_payment_charge_id": charge_id,
            "provider_payment_charge_id": "",
        }
        if "subscription_period" not in invoice.params:
            return paid
        period = int(invoice.params["subscription_period"])
        self.charges[charge_id]["period"] = period
        return paid | {"is_recurring": True, "is_first_recurring": True,
                       "subscription_expiration_date": int(time.time()) + period}

    def renew(self, paid: dict[str, Any]) -> dict[str, Any]:
        """The next period of the subscription that `paid` (a report of `pay` or `renew`) began or renewed: charged
        again, a new charge id and an expiration date one period later."""
        first = self.charges[paid["telegram_payment_charge_id"]]
        charge_id = f"stxTEST{next(self._message_ids)}"
        self.charges[charge_id] = {key: first[key] for key in ("user_id", "invoice", "period")}
        return paid | {"telegram_payment_charge_id": charge_id, "is_first_recurring": False,
                       "subscription_expiration_date": paid["subscription_expiration_date"] + first["period"]}

    async def _answerCallbackQuery(self, params: dict[str, str], files: dict) -> bool:
        return True

    async def _setWebhook(self, params: dict[str, str], files: dict) -> bool:
        self.webhook = params
        return True

    async def _deleteWebhook(self, params: dict[str, str], files: dict) -> bool:
        self.webhook = None
        return True

    async def _getUpdates(self, params: dict[str, str], files: dict) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0))
        self.updates = [update for update in self.updates if update["update_id"] >= offset]  # confirmed ones go
        if not self.updates:
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), timeout=float(params.get("timeout", 0)))
        return list(self.updates)


def _error(status: int, description: str, retry_after: int | None = None,
           migrate_to_chat_id: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    if migrate_to_chat_id is not None:
        body["parameters"] = {"migrate_to_chat_id": migrate_to_chat_id}
    return web.json_response(body, status=status)


# updates as Telegram sends them -------------------------------------------------------------------------------------

_update_ids = itertools.count(500_000)


def person(user_id: int = 1111111, first_name: str = "Ann", **more: Any) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": first_name, **more}


def text_update(text: str, *, chat_id: int = 1111111, user: dict[str, Any] | None = None, update_id: int | None = None,
                **message: Any) -> dict[str, Any]:
    """A message update, complete as the current Bot API sends it (private chat unless chat_id is negative)."""
    user = user or person()
    chat = ({"id": chat_id, "type": "private", "first_name": user["first_name"]} if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "Study group"})
    return {
        "update_id": next(_update_ids) if update_id is None else update_id,
        "message": {"message_id": next(_update_ids), "date": int(time.time()), "chat": chat, "from": user,
                    "text": text, **message},
    }


def button_update(sent: Call, data: str, *, user: dict[str, Any] | None = None) -> dict[str, Any]:
    """The callback_query Telegram sends when a button of the message `sent` (a recorded sendMessage) is pressed."""
    chat_id = int(sent.params["chat_id"])
    return {
        "update_id": next(_update_ids),
        "callback_query": {
            "id": f"cq{next(_update_ids)}",
            "from": user or person(chat_id if chat_id > 0 else 1111111),
            "chat_instance": "-42",
            "data": data,
            "message": {
                "message_id": sent.result["message_id"],
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "Study group"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lessonbot", "username": BOT_USERNAME},
                "text": sent.params["text"],
                "reply_markup": sent.reply_markup,
            },
        },
    }


def bot_member_update(chat_id: int, status: str, *, by: dict[str, Any] | None = None, kind: str = "my_chat_member",
                      was: str = "member", **rights: bool) -> dict[str, Any]:
    """The update Telegram sends when the bot's membership of a group changes (`my_chat_member`: made an admin,
    "administrator"; muted, "restricted" with `can_send_messages=False`; let speak again …), `by` an admin of it; a
    `chat_member` one (sent to a bot that is an admin there) when `kind` says so. A positive `chat_id` is a person's
    private chat, `by` that person: blocking the bot makes it "kicked", unblocking it "member" again (`was`: the
    status before)."""
    me = {"id": BOT_ID, "is_bot": True, "first_name": "Lessonbot", "username": BOT_USERNAME}
    new: dict[str, Any] = {"status": status, "user": me, **rights}
    if status == "restricted":
        new = {"is_member": True, "until_date": 0, "can_send_messages": False, "can_send_audios": False,
               "can_send_documents": False, "can_send_photos": False, "can_send_videos": False,
               "can_send_video_notes": False, "can_send_voice_notes": False, "can_send_polls": False,
               "can_send_other_messages": False, "can_add_web_page_previews": False, "can_change_info": False,
               "can_invite_users": False, "can_pin_messages": False, "can_manage_topics": False, **new}
    if status == "administrator":
        new = {"can_be_edited": False, "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
               "can_manage_video_chats": True, "can_restrict_members": True, "can_promote_members": False,
               "can_change_info": True, "can_invite_users": True, "can_post_stories": False,
               "can_edit_stories": False, "can_delete_stories": False, **new}
    by = by or person(chat_id if chat_id > 0 else 1111111)
    chat = ({"id": chat_id, "type": "private", "first_name": by["first_name"]} if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "Study group"})
    old = {"status": was, "user": me} | ({"until_date": 0} if was == "kicked" else {})
    return {
        "update_id": next(_update_ids),
        kind: {"chat": chat, "from": by, "date": int(time.time()), "old_chat_member": old, "new_chat_member": new},
    }


def left_member_update(chat_id: int, member: dict[str, Any], *, by: dict[str, Any] | None = None) -> dict[str, Any]:
    """The service message Telegram posts in a group when `member` leaves it (`by` left out) or is removed from it by
    `by` (an admin): `left_chat_member`, which reaches a bot in the group whatever it asked for (no `chat_member`)."""
    return {
        "update_id": next(_update_ids),
        "message": {"message_id": next(_update_ids), "date": int(time.time()), "from": by or member,
                    "chat": {"id": chat_id, "type": "supergroup", "title": "Study group"},
                    "left_chat_member": member},
    }


def invoice_total(invoice: Call) -> int:
    """What an invoice (a recorded sendInvoice or createInvoiceLink) asks, in the currency's minor unit."""
    return sum(int(price["amount"]) for price in json.loads(invoice.params["prices"]))


def pre_checkout_update(invoice: Call, *, user: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """The pre_checkout_query Telegram sends when the person presses Pay on the invoice `invoice` (a recorded
    sendInvoice, whose chat names the person when `user` does not, or createInvoiceLink); `changes` alter its fields
    (a tampered total, another payload)."""
    return {
        "update_id": next(_update_ids),
        "pre_checkout_query": {
            "id": f"pcq{next(_update_ids)}", "from": user or person(int(invoice.params["chat_id"])),
            "currency": invoice.params["currency"], "total_amount": invoice_total(invoice),
            "invoice_payload": invoice.params["payload"], **changes,
        },
    }


def refund_update(paid: dict[str, Any], *, chat_id: int, user: dict[str, Any] | None = None) -> dict[str, Any]:
    """The service message with `refunded_payment` Telegram sends once a Stars payment was refunded (by the bot, or by
    Telegram itself after a dispute): the payment's currency, amount, payload and charge ids."""
    update = payment_update(paid, chat_id=chat_id, user=user)
    message = update["message"]
    refunded = message.pop("successful_payment")
    message["refunded_payment"] = {key: refunded[key] for key in (
        "currency", "total_amount", "invoice_payload", "telegram_payment_charge_id") if key in refunded}
    return update


def payment_update(successful_payment: dict[str, Any], *, chat_id: int, user: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
    """The service message with `successful_payment` Telegram sends once a payment went through."""
    user = user or person(chat_id)
    return {
        "update_id": next(_update_ids),
        "message": {"message_id": next(_update_ids), "date": int(time.time()), "from": user,
                    "chat": {"id": chat_id, "type": "private", "first_name": user["first_name"]},
                    "successful_payment": successful_payment},
    }
