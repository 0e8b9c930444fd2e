"""Telegram, through python-telegram-bot: the Bot, what an update comes to, and the sender of replies.

Inbound, an update (from the webhook, channels/telegram/routes.py, or from polling, channels/telegram/polling.py)
goes through `accept`: it becomes an InboundMessage or is ignored with a logged reason (channels/telegram/updates.py),
and a message is recorded; a redelivery is recognised by its update_id.

Outbound, `send`: a Text's light Markdown becomes Telegram HTML (escaped, channels/markdown.py), split at 4,096
characters (UTF-16 units; on paragraphs, lines, sentences, words, a code block whole where it fits: channels/text.py),
its choices an inline keyboard under the last part (each part's
sendMessage through the Bot's request, only the new message's id read from the answer); a Document goes
through sendDocument (a file on disk is uploaded, a URL is fetched by Telegram) with a caption of at most 1,024
characters and any overflow following as messages; an Invoice through sendInvoice (Telegram Stars; a
subscription through createInvoiceLink and a button that opens it), a CheckoutAnswer
through answerPreCheckoutQuery. The Bot API's errors become the dispatcher's: 429 →
RateLimited(retry_after); timeouts, connection errors and 5xx → TransientSendError; blocked by the user, chat not
found and no rights to send in a group (the bot muted there) → Unreachable, until the chat writes or Telegram reports
the bot's membership changed (channels/telegram/updates.py); a rejected token and other 4xx → PermanentSendError. A
reply to a forum topic deleted or closed meanwhile goes to the group itself, and a reply to a group that became a
supergroup to the supergroup.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from starlette.routing import Route
from telegram import Bot, InlineKeyboardMarkup, LabeledPrice, Message, Update
from telegram.constants import ChatAction, MessageLimit, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter
from telegram.warnings import PTBDeprecationWarning

from bot.channel import (
    ChannelHost,
    Delivery,
    PermanentSendError,
    RateLimit,
    RateLimited,
    RequestRejected,
    TransientSendError,
    Unreachable,
)
from bot.messages import MEMBERSHIP, CheckoutAnswer, Document, InboundMessage, Invoice, Link, Reply, Text
from channels.markdown import PLAIN, TELEGRAM_HTML, render
from channels.telegram.buttons import keyboard
from channels.telegram.request import AiohttpRequest
from channels.telegram.routes import webhook_routes
from channels.telegram.updates import (
    CHANNEL,
    CHECKOUT_CHAT,
    BotIdentity,
    backfill_legacy_fields,
    buyer_chat,
    interpret,
    needs_identity,
    plain_text,
    topic_of,
    update_kind,
)
from channels.text import split_utf16
from channels.webhook import Ignored

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"
# The update kinds the bot handles; set-webhook and polling ask Telegram for these only.
ALLOWED_UPDATES = ("message", "callback_query", "pre_checkout_query", "my_chat_member")
STARS = "XTR"  # Telegram Stars: the currency digital goods are sold in inside Telegram, in whole Stars
MAX_TEXT_CHARS = MessageLimit.MAX_TEXT_LENGTH  # 4,096
MAX_CAPTION_CHARS = MessageLimit.CAPTION_LENGTH  # 1,024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # the Bot API's limit for files a bot uploads
TOKEN_REJECTED = "Telegram rejected TELEGRAM_BOT_TOKEN: copy it again from @BotFather (/mybots → the bot → API Token)."
DRAFT_EVERY_SECONDS = 0.5  # a streamed answer's draft is shown at most this often in one chat

T = TypeVar("T")
Part = Callable[[], Awaitable[str]]  # one Bot API call that sends one message of a reply: the message's id


@dataclass(frozen=True, slots=True)
class Accepted:
    """What became of one update: recorded (perhaps as a duplicate) or ignored, and a button press to answer."""

    update_id: int
    ignored: str | None = None
    duplicate: bool = False
    callback_query_id: str | None = None


class Moved(PermanentSendError):
    """Telegram says the group became a supergroup with another chat id (`to_chat_id`): what is sent to it goes
    there (`TelegramChannel.send`); a call that cannot follow it fails for good."""

    def __init__(self, to_chat_id: str) -> None:
        super().__init__(f"the group became a supergroup with chat id {to_chat_id}; replies go there")
        self.to_chat_id = to_chat_id


class TopicGone(PermanentSendError):
    """Telegram says the forum topic a message was sent to is no more (deleted meanwhile), or `closed` to the bot
    (only admins post in a closed topic, until it is opened again): the reply goes to the group itself
    (`TelegramChannel.send`)."""

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed


# How the Bot API refuses a message to a forum topic that was deleted, and to one that was closed.
TOPIC_GONE = ("message thread not found", "topic_deleted")
TOPIC_CLOSED = "topic_closed"
CHAT_GONE = "chat not found"  # how it refuses a message to a chat that is no more (or never was) one of the bot's
# How it refuses a message to a group where the bot may not send (its admins muted it, or only admins write there);
# not a refusal of one kind of media alone ("not enough rights to send documents to the chat"), which the chat's text
# still reaches: that reply alone is refused
NO_RIGHTS = ("not enough rights to send text messages", "have no rights to send a message")


class TelegramChannel:
    name = "telegram"

    def __init__(
        self,
        *,
        token: str,
        webhook_secret: str = "",
        api_base_url: str = DEFAULT_API_BASE_URL,
        max_body_bytes: int = 64 * 1024,
        timeout: float = 10.0,
    ) -> None:
        """`webhook_secret` may be empty only where no webhook is served (polling, a dispatcher-only process)."""
        self.webhook_secret = webhook_secret
        self.max_body_bytes = max_body_bytes
        request = AiohttpRequest(
            connection_pool_size=64, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout,
            pool_timeout=timeout,
        )
        # Long polling holds its one connection open: getUpdates adds its own timeout to this read timeout.
        updates_request = AiohttpRequest(connection_pool_size=1, read_timeout=timeout, connect_timeout=timeout)
        self.bot = Bot(token, base_url=api_base_url, request=request, get_updates_request=updates_request)
        self._ready_lock = asyncio.Lock()
        self._initialized = False
        self._drafts: dict[str, tuple[int, float]] = {}  # chat → (draft id, when last shown) of the answer streaming
        self._moved: dict[str, str] = {}  # a group's old chat id → its supergroup's (Telegram's ChatMigrated)
        self._gone_topics: set[tuple[str, int]] = set()  # (chat, forum topic) Telegram said no longer exists
        self._draft_ids = itertools.count(1)

    # the Bot's life ---------------------------------------------------------------------------------------------

    async def ready(self) -> Bot:
        """The Bot, initialized once (getMe: checks the token and learns the bot's username)."""
        if not self._initialized:
            async with self._ready_lock:
                if not self._initialized:
                    await self.bot.initialize()
                    self._initialized = True
        return self.bot

    async def identity(self) -> BotIdentity:
        bot = await self.ready()
        return BotIdentity(id=bot.id, username=bot.username)

    def private_chat_link(self) -> str | None:
        """https://t.me/<the bot's username>: opens a private chat with the bot (OpensPrivateChats); None before
        getMe."""
        return f"https://t.me/{self.bot.username}" if self._initialized else None

    async def close(self) -> None:
        """Close the Bot's HTTP connections (the app calls this at shutdown); a later send opens them again."""
        async with self._ready_lock:
            await self.bot.shutdown()
            self._initialized = False

    # inbound ----------------------------------------------------------------------------------------------------

    def routes(self, host: ChannelHost) -> list[Route]:
        """`POST /webhooks/telegram` (channels/telegram/routes.py)."""
        return webhook_routes(self, host)

    async def accept(self, data: dict[str, Any] | Update, host: ChannelHost) -> Accepted:
        """Turn one update (a webhook's JSON or a polled Update) into a recorded message, or ignore it with a reason."""
        if isinstance(data, Update):
            update = data
        elif (plain := plain_text(data)) is not None:
            return Accepted(data["update_id"], duplicate=(await host.receive(plain)).duplicate)
        else:
            try:
                update = Update.de_json(backfill_legacy_fields(data), self.bot)
            except Exception as exc:  # PTB raises TypeError/KeyError/AttributeError on shapes it cannot read
                reason = f"not readable as a Bot API update ({type(exc).__name__}: {exc})"
                return self._ignored(data["update_id"], reason)
        callback_query_id = update.callback_query.id if update.callback_query is not None else None
        me = None
        if needs_identity(update):
            try:
                me = await self.identity()
            except TelegramError as exc:
                log.warning("telegram getMe failed; the update will come again", extra={"error": str(exc)})
                raise RequestRejected(503, "Could not reach Telegram to learn the bot's name; try again.") from None
        try:
            outcome = interpret(update, me=me)
        except (AttributeError, TypeError) as exc:  # a field of a shape the Bot API never sends
            outcome = Ignored(f"not readable as a Bot API update ({type(exc).__name__}: {exc})")
        if not isinstance(outcome, Ignored) and await self._of_a_stranger(outcome, host):
            outcome = Ignored("someone the bot does not know left a group: nothing is kept of them")
        if isinstance(outcome, Ignored):
            return self._ignored(update.update_id, outcome.reason, kind=update_kind(update),
                                 callback_query_id=callback_query_id)
        recorded = await host.receive(outcome)
        return Accepted(update.update_id, duplicate=recorded.duplicate, callback_query_id=callback_query_id)

    @staticmethod
    async def _of_a_stranger(message: InboundMessage, host: ChannelHost) -> bool:
        """A group's report that someone left it, about a person who never wrote to the bot: a large group's leaves
        store nothing of them (`ChannelHost.knows`)."""
        return message.meta.get(MEMBERSHIP) == "left" and not await host.knows(CHANNEL, message.sender_id)

    def _ignored(
        self, update_id: int, reason: str, *, kind: str = "", callback_query_id: str | None = None
    ) -> Accepted:
        log.info("telegram update ignored: %s", reason, extra={"update_id": update_id, "kind": kind})
        return Accepted(update_id, ignored=reason, callback_query_id=callback_query_id)

    async def answer_button(self, callback_query_id: str) -> None:
        """Stop a pressed button's spinner (polling only; the webhook answers in its response)."""
        try:
            await (await self.ready()).answer_callback_query(callback_query_id)
        except TelegramError as exc:  # e.g. "query is too old": the spinner has stopped by itself
            log.info("could not answer a button press", extra={"error": str(exc)})

    # outbound ---------------------------------------------------------------------------------------------------

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        """~30 messages/s across chats, ~1/s in one chat, 20/min in a group (negative chat ids are groups); a group
        that became a supergroup is paced as the supergroup, where its messages go. The answer to a check before
        charging (from the chat of a buyer's checks) is no message in a chat: it goes at once, paced by nothing, as
        Telegram cancels the payment if it comes after 10 s."""
        if chat_id.startswith(CHECKOUT_CHAT):
            return ()
        chat_id = self._moved.get(chat_id, chat_id)
        limits = [RateLimit("telegram:global", 30, 1.0, shared=True), RateLimit(f"telegram:chat:{chat_id}", 1, 1.0)]
        if chat_id.startswith("-"):
            limits.append(RateLimit(f"telegram:group:{chat_id}", 20, 60.0))
        return tuple(limits)

    async def send(self, delivery: Delivery) -> str:
        """Send every part of one reply in order; returns the id of the last message sent.

        If a later part fails after earlier ones went out, the error goes to the dispatcher, which retries, and the
        retry (same outbox row, in any process) resumes after the parts already sent (`delivery.parts`).
        """
        await self._api(self.ready())
        if isinstance(delivery.reply, CheckoutAnswer):
            return await self._answer_checkout(delivery.reply)
        chat_id = buyer_chat(delivery.chat_id)
        chat_id = self._moved.get(chat_id, chat_id)
        topic = self._topic(chat_id, delivery.reply_address)  # the forum topic the message answered was written in
        parts = self._parts(chat_id, delivery.reply, topic)
        sent = delivery.parts.ids
        for index in range(len(sent), len(parts)):
            try:
                message_id = await self._api(parts[index]())
            except Moved as moved:  # a group became a supergroup: its replies go there (once more, for this part)
                if chat_id == moved.to_chat_id:
                    raise
                chat_id = self._moved[delivery.chat_id] = moved.to_chat_id
                parts = self._parts(chat_id, delivery.reply, topic)
                message_id = await self._api(parts[index]())
            except TopicGone as gone:  # the reply goes to the group itself (once more, for this part)
                if topic is None:
                    raise
                self._topic_gone(chat_id, topic, closed=gone.closed)
                topic = None
                parts = self._parts(chat_id, delivery.reply)
                message_id = await self._api(parts[index]())
            await delivery.parts.add(message_id, more_to_come=index + 1 < len(parts))
        return sent[-1]

    def _topic(self, chat_id: str, reply_address: str | None) -> int | None:
        """The forum topic a reply address names in this chat, unless Telegram said it is gone."""
        topic = topic_of(reply_address)
        return None if topic is None or (chat_id, topic) in self._gone_topics else topic

    def _topic_gone(self, chat_id: str, topic: int, *, closed: bool = False) -> None:
        """Remember (for this process) that a forum topic was deleted: what is sent to it goes to the group. A closed
        topic may be opened again: the next reply tries it."""
        if closed:
            log.warning("telegram: a forum topic is closed; this reply goes to the group itself",
                        extra={"chat_id": chat_id, "topic": topic})
            return
        self._gone_topics.add((chat_id, topic))
        log.warning("telegram: a forum topic was deleted; its replies go to the group itself",
                    extra={"chat_id": chat_id, "topic": topic})

    async def show_typing(self, chat_id: str, reply_address: str | None = None) -> None:
        """"typing…" at the top of the chat, for 5 seconds or until our next message (see bot.activity); in a forum
        supergroup, in the topic the reply goes to (its reply address), not in the group's General topic."""
        bot = await self.ready()
        chat_id = self._moved.get(chat_id, chat_id)  # a group become a supergroup (learned by `send`)
        await bot.send_chat_action(
            chat_id=chat_id, action=ChatAction.TYPING, message_thread_id=self._topic(chat_id, reply_address))

    async def show_draft(self, chat_id: str, text: str, reply_address: str | None = None) -> None:
        """The answer as it streams, in a private chat (`sendMessageDraft`, an ephemeral preview that the answer's
        own message, sent through the outbox, replaces), in a chat with topics in the topic the question was asked in
        (its reply address), where the answer goes. At most one update per DRAFT_EVERY_SECONDS; "" ends it."""
        if not text:
            self._drafts.pop(chat_id, None)
            return
        if chat_id.startswith("-"):
            return  # groups get no drafts from the Bot API
        now = time.monotonic()
        draft_id, shown_at = self._drafts.get(chat_id, (0, 0.0))
        if draft_id and now - shown_at < DRAFT_EVERY_SECONDS:
            return
        draft_id = draft_id or next(self._draft_ids)
        self._drafts[chat_id] = (draft_id, now)
        bot = await self.ready()
        await bot.send_message_draft(
            chat_id=int(chat_id),
            draft_id=draft_id,
            text=render(fit(text, MAX_TEXT_CHARS)[0], TELEGRAM_HTML),
            message_thread_id=self._topic(chat_id, reply_address),
            parse_mode=ParseMode.HTML,
        )

    def _parts(self, chat_id: str, reply: Reply, topic: int | None = None) -> list[Part]:
        """The calls that send `reply` to the chat, in a forum supergroup to `topic` (None: the chat itself)."""
        if isinstance(reply, Text):
            if not reply.text.strip():
                raise PermanentSendError("the reply has no text; Telegram refuses empty messages")
            return self._texts(chat_id, fit(reply.text, MAX_TEXT_CHARS), reply, topic)
        if isinstance(reply, Document):
            return self._document(chat_id, reply, topic)
        if isinstance(reply, Invoice) and reply.period_days:
            return [lambda: self._subscription_offer(chat_id, reply, topic)]
        if isinstance(reply, Invoice):
            return [lambda: _message_id(self.bot.send_invoice(
                chat_id=chat_id, title=reply.title[:32], description=render(reply.description, PLAIN)[:255],
                payload=reply.payload,
                currency=reply.currency, prices=[LabeledPrice(reply.label, reply.amount)],
                provider_token="" if reply.currency == STARS else None, message_thread_id=topic,
            ))]
        raise PermanentSendError(f"Telegram cannot send a {type(reply).__name__}")

    def _texts(self, chat_id: str, texts: list[str], reply: Text | None = None, topic: int | None = None) -> list[Part]:
        markup = keyboard(reply.choices, reply.links) if reply is not None else None

        def part(text: str, last: bool) -> Part:
            return lambda: self._send_text(chat_id, render(text, TELEGRAM_HTML), markup if last else None, topic)

        return [part(text, index == len(texts) - 1) for index, text in enumerate(texts)]

    async def _send_text(
        self, chat_id: str, html: str, markup: InlineKeyboardMarkup | None, topic: int | None = None
    ) -> str:
        """sendMessage, keeping only the new message's id from Telegram's answer.

        The call goes through the Bot's own request, which reads the answer and turns its errors into
        python-telegram-bot's (RetryAfter, Forbidden, BadRequest, NetworkError …) as `Bot.send_message` would; only
        the `Message` that `send_message` builds from the answer, a tree of objects of which a reply needs one
        number, is not made."""
        parameters: dict[str, Any] = {"chat_id": chat_id, "text": html, "parse_mode": ParseMode.HTML.value}
        if markup is not None:
            parameters["reply_markup"] = markup
        if topic is not None:
            parameters["message_thread_id"] = topic
        result = await self.bot.request.post(
            f"{self.bot.base_url}/sendMessage",
            RequestData([
                RequestParameter(name, value, None) if type(value) is str  # as from_input makes it, for less
                else RequestParameter.from_input(name, value)
                for name, value in parameters.items()
            ]),
        )
        if not isinstance(result, dict) or "message_id" not in result:
            raise TelegramError(f"sendMessage answered without a message: {result!r}")
        return str(result["message_id"])

    def _document(self, chat_id: str, document: Document, topic: int | None = None) -> list[Part]:
        # the caption, and what does not fit in one continued in messages, each piece joined as the text had it
        captions = fit(document.caption, MAX_TEXT_CHARS, first=MAX_CAPTION_CHARS) if document.caption.strip() else [""]
        overflow = captions[1:]

        async def upload() -> str:
            return await _message_id(self.bot.send_document(
                chat_id=chat_id,
                document=await _file(document),
                filename=document.filename,
                caption=render(captions[0], TELEGRAM_HTML) or None,
                parse_mode=ParseMode.HTML,
                message_thread_id=topic,
            ))

        return [upload, *self._texts(chat_id, overflow, topic=topic)]

    async def _subscription_offer(self, chat_id: str, invoice: Invoice, topic: int | None = None) -> str:
        """A Stars subscription is paid through an invoice link (sendInvoice has no period): the offer's text with a
        button that opens it. A retried send makes a new link; an unused one costs nothing."""
        link = await self.bot.create_invoice_link(
            title=invoice.title[:32], description=render(invoice.description, PLAIN)[:255], payload=invoice.payload,
            currency=invoice.currency, prices=[LabeledPrice(invoice.label, invoice.amount)],
            subscription_period=timedelta(days=invoice.period_days),
        )
        return await self._send_text(
            chat_id, render(invoice.description, TELEGRAM_HTML), keyboard((), (Link(invoice.button, link),)), topic
        )

    async def _answer_checkout(self, answer: CheckoutAnswer) -> str:
        """answerPreCheckoutQuery: Telegram waits 10 s for it after the person presses Pay, then cancels."""
        await self._api(self.bot.answer_pre_checkout_query(
            answer.query_id, answer.ok, error_message=None if answer.ok else answer.error[:255] or None,
        ))
        return f"pre_checkout_query:{answer.query_id}"

    async def refund_stars(self, user_id: str, charge_id: str) -> None:
        """refundStarPayment: the Stars go back to the person (TakesStars)."""
        bot = await self._api(self.ready())
        await self._api(bot.refund_star_payment(int(user_id), charge_id))

    async def cancel_stars_subscription(self, user_id: str, charge_id: str) -> None:
        """editUserStarSubscription: the subscription is not renewed (TakesStars)."""
        bot = await self._api(self.ready())
        await self._api(bot.edit_user_star_subscription(int(user_id), charge_id, is_canceled=True))

    async def _api(self, call: Awaitable[T]) -> T:
        """Await a Bot API call, turning its errors into the dispatcher's three kinds."""
        try:
            return await call
        except RetryAfter as exc:
            raise RateLimited(retry_after_seconds(exc), "Telegram asked to slow down") from None
        except ChatMigrated as exc:
            raise Moved(str(exc.new_chat_id)) from None
        except InvalidToken:
            # PTB's message repeats the token; say which setting is wrong instead.
            log.error(TOKEN_REJECTED)
            raise PermanentSendError("Telegram rejected the bot token (TELEGRAM_BOT_TOKEN)") from None
        except Forbidden as exc:  # blocked by the person, their account deleted, the bot out of the group
            raise Unreachable(f"Telegram refused: {exc.message}") from None
        except BadRequest as exc:
            if any(words in exc.message.lower() for words in TOPIC_GONE):
                raise TopicGone(f"Telegram refused the message: {exc.message}") from None
            if TOPIC_CLOSED in exc.message.lower():
                raise TopicGone(f"Telegram refused the message: {exc.message}", closed=True) from None
            if CHAT_GONE in exc.message.lower():  # as unreachable as a block: a deleted group, an id of no chat
                raise Unreachable(f"Telegram refused: {exc.message}") from None
            if any(words in exc.message.lower() for words in NO_RIGHTS):  # muted: until its rights change
                raise Unreachable(f"Telegram refused: {exc.message}") from None
            raise PermanentSendError(f"Telegram refused the message: {exc.message}") from None
        except NetworkError as exc:  # timeouts, connection errors and 5xx; a timed-out send may have arrived
            raise TransientSendError(f"Telegram did not answer properly: {exc.message}") from None
        except TelegramError as exc:
            raise TransientSendError(f"Telegram error: {exc.message}") from None

    # webhook registration -----------------------------------------------------------------------------------------

    async def set_webhook(self, url: str, *, drop_pending_updates: bool = False) -> None:
        """Ask Telegram to POST updates to `url` with our secret (setWebhook); raises TelegramError if it refuses."""
        if not self.webhook_secret:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET is empty: set it before registering the webhook")
        bot = await self.ready()
        await bot.set_webhook(
            url,
            secret_token=self.webhook_secret,
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=drop_pending_updates,
        )


async def _message_id(call: Awaitable[Message]) -> str:
    return str((await call).message_id)


def retry_after_seconds(exc: RetryAfter) -> float:
    """RetryAfter.retry_after is an int, a float or (with PTB_TIMEDELTA set) a timedelta in PTB 22."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def fit(text: str, limit: int, *, first: int | None = None) -> list[str]:
    """Split `text` into parts Telegram accepts under `limit` (the first under `first`, where given: a caption),
    counting UTF-16 code units.

    Telegram states its limits in characters and measures entities in UTF-16; reports differ on which counts for
    the length, so a part stays within `limit` by either measure (an emoji outside the BMP counts twice).
    """
    return split_utf16(text, limit, first=first)


async def _file(document: Document) -> bytes | str:
    """The document's bytes to upload, or its URL for Telegram to fetch."""
    if document.path:
        path = Path(document.path)
        try:
            size = path.stat().st_size
            if size > MAX_UPLOAD_BYTES:
                raise PermanentSendError(f"{path} is {size:,} bytes; a bot may upload at most {MAX_UPLOAD_BYTES:,}")
            return await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise PermanentSendError(f"the document {path} cannot be read: {exc.strerror}") from None
    if document.url:
        return document.url
    raise PermanentSendError("the document has neither a path nor a URL")
