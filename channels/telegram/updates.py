"""Telegram updates in the core's terms: which become an InboundMessage, and why the others are ignored.

Telegram redelivers an update until it gets a 2xx, so an update the bot does not handle is acknowledged with a
logged reason rather than refused. What becomes a message:
- a message in a private chat: its text, or a photo/document/voice/… with its file id in `meta[MEDIA]` and its
  caption as the text;
- a message in a group only when it is meant for the bot: a command (`/cmd`, or `/cmd@thisbot` but not
  `/cmd@otherbot`), a mention of the bot, or a reply to one of the bot's messages (what Telegram's privacy mode
  delivers). The mention is taken out of the text; replies go to the group (in a forum supergroup, to the topic the
  message was written in: `meta[REPLY_ADDRESS]`), the sender is the person;
- a pressed inline-keyboard button (`callback_query`): the choice is its callback data (see
  channels/telegram/buttons.py);
- a payment in Telegram Stars: the last check before charging (`pre_checkout_query`, which must be answered within
  10 s: it arrives in a chat of the buyer's checks, `checkout_chat`, beside their private chat, marked `meta[URGENT]`
  so that it waits for no worker's place either) and the payment
  itself (a message with `successful_payment`), each with the choice `PAYMENT_CHECK` or `PAYMENT_DONE` and
  Telegram's fields in `meta[PRE_CHECKOUT]` / `meta[SUCCESSFUL_PAYMENT]`; and a refund of one (a message with
  `refunded_payment`: the bot's own, or Telegram's after a dispute), `PAYMENT_DONE` with `meta[REFUNDED_PAYMENT]`;
- the bot's membership of a group changed so that it may send there (`my_chat_member`: made an admin, let speak
  again after being muted): a platform's report with `meta[MAY_SEND]`, which lifts a refusal of the chat (a muted
  bot's sends, `channels.telegram.channel.NO_RIGHTS`); or so that it may not (removed from the group, blocked in a
  private chat: "left", "kicked"), `meta[MAY_SEND]` False, which marks the chat refused at once; other members'
  changes (`chat_member`) are not asked for, so
  the joins and leaves of a large group store nothing of people who never wrote to the bot (nor does the admin who
  made this change, or the move below, become someone the bot knows: `InboundMessage.about_the_chat`);
- a group become a supergroup: the service message that opens the supergroup (`migrate_from_chat_id`), a platform's
  report in the new chat with the old chat's id in `meta[MOVED_FROM]`, so its learners and what waits for it follow;
- someone left a group or was removed from it: the group's service message (`left_chat_member`, which reaches the
  bot though it asks for no member's changes), a platform's report from that person with `meta[MEMBERSHIP]`
  "left", so a home they had there ends (the channel records it only for someone the bot knows). It is the only word
  of it the bot gets: a large supergroup, where Telegram may post fewer of these, or one whose service messages another
  bot deletes, may send none (docs/channels/telegram.md, "Groups and privacy mode").
Edited messages, channel posts (and their copies in a discussion group, sent on behalf of the channel), inline
queries and every other kind are ignored.

The platform id is the update_id, so a redelivered update is recognised as a duplicate; the items of an album share
one (`_one_per_album`), so an album is answered once, captioned or not. A plain text message in a
private chat, most of what arrives, is read straight from the update's JSON (`plain_text`); every other update
through python-telegram-bot's `Update`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from telegram import (
    CallbackQuery,
    ChatMember,
    ChatMemberRestricted,
    ChatMemberUpdated,
    Message,
    PreCheckoutQuery,
    Update,
    User,
)
from telegram.constants import ChatType, MessageEntityType, UpdateType

from bot.messages import (
    CALLBACK_QUERY_ID,
    CAPTION,
    CHAT_TYPE,
    FORWARDED,
    LANGUAGE,
    MAY_SEND,
    MEDIA,
    MEMBERSHIP,
    MESSAGE_ID,
    MOVED_FROM,
    PLATFORM_REPORT,
    PRE_CHECKOUT,
    REFUNDED_PAYMENT,
    REPLY_ADDRESS,
    SUCCESSFUL_PAYMENT,
    URGENT,
    USERNAME,
    InboundMessage,
    InboundMeta,
)
from channels.telegram.buttons import pressed
from channels.webhook import Ignored

CHANNEL = "telegram"
# The chat of a buyer's checks before charging ("checkout:<their user id>"): a conversation of its own beside their
# private chat, so that a check waits neither for a turn under way there (a model's answer) nor for the replies in
# line there (sent one a second); its answer is no message in a chat, so it goes at no chat's pace.
CHECKOUT_CHAT = "checkout:"
GROUP_CHATS = (ChatType.GROUP, ChatType.SUPERGROUP)
# What a learner may send besides text, in the order a message is searched for it (one message carries one): each
# reaches the dialogs, which read the words of a caption and tell a message with none that they read words.
MEDIA_KINDS = (
    "photo", "document", "audio", "voice", "video", "video_note", "animation", "sticker",
    "contact", "location", "venue", "dice", "poll", "story", "paid_media",
)
IGNORED_KINDS: dict[str, str] = {  # update_kind() gives a plain str
    UpdateType.EDITED_MESSAGE: "an edited message: the bot answered what was first sent",
    UpdateType.EDITED_CHANNEL_POST: "an edited channel post: the bot talks with people, not channels",
    UpdateType.CHANNEL_POST: "a channel post: the bot talks with people, not channels",
    UpdateType.INLINE_QUERY: "an inline query: the bot does not offer inline mode",
    UpdateType.CHOSEN_INLINE_RESULT: "a chosen inline result: the bot does not offer inline mode",
    UpdateType.CHAT_MEMBER: "a member's change in a chat: the bot keeps nothing of people who never wrote to it",
}
# The choices a payment arrives as, for the dialogs (which read its fields from `meta`).
PAYMENT_CHECK, PAYMENT_DONE = "payment:check", "payment:stars"
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,32}(?:@(?P<target>[A-Za-z0-9_]+))?(?:\s|$)")


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is (getMe): needed to tell which group messages are meant for it."""

    id: int
    username: str


def update_kind(update: Update) -> str:
    """The update's kind as the Bot API names it (`message`, `callback_query`, …), also for kinds newer than PTB."""
    for kind in UpdateType:
        if getattr(update, kind.value, None) is not None:
            return kind.value
    return next(iter(update.api_kwargs), "empty")


def backfill_legacy_fields(data: Any) -> Any:
    """Fill, in place, fields the Bot API made required after 2015, so older or hand-written updates still parse.

    Telegram itself always sends them; updates recorded from the API's early days (such as the examples in its
    webhook guide) lack `User.is_bot`, `Chat.type`, `file_unique_id` and `CallbackQuery.chat_instance`, and
    python-telegram-bot refuses a whole update over one of them. The values filled in are the neutral ones: a person,
    not a bot; a chat typed by its id (positive ids are people, negative ones groups); the file id as its own unique
    id; an empty chat instance.
    """
    _backfill(data, key=None)
    return data


def _backfill(value: Any, key: str | None) -> None:
    if isinstance(value, list):
        for item in value:
            _backfill(item, key)
        return
    if not isinstance(value, dict):
        return
    if key in ("from", "user", "via_bot", "new_chat_members", "left_chat_member") and "id" in value:
        value.setdefault("is_bot", False)
        value.setdefault("first_name", value.get("title", ""))
    if key in ("chat", "sender_chat") and isinstance(value.get("id"), int) and "type" not in value:
        value["type"] = ChatType.PRIVATE.value if value["id"] > 0 else ChatType.GROUP.value
    if "file_id" in value:
        value.setdefault("file_unique_id", value["file_id"])
    if key == "callback_query":
        value.setdefault("chat_instance", "")
    for child_key, child in value.items():
        _backfill(child, child_key)


# What a plain text message in a private chat may hold to be read without python-telegram-bot's objects (`plain_text`).
_PLAIN_MESSAGE_KEYS = frozenset({"message_id", "date", "chat", "from", "text", "entities"})
_PLAIN_ENTITY_KEYS = frozenset({"type", "offset", "length"})
_LAST_TIMESTAMP = 253_402_300_799  # 9999-12-31: a later date is beyond what python-telegram-bot can read


def plain_text(data: dict[str, Any]) -> InboundMessage | None:
    """The message a plain update brings, read straight from its JSON, or None when the update is not plain.

    Plain: a text message from a person in their private chat with the bot, with nothing else the bot reads and
    every field python-telegram-bot requires present and well-typed, which is most of what a bot receives. Its
    message is the one `interpret` gives for the update read as python-telegram-bot's `Update` (the tests compare
    the two); building that tree of objects costs more than the rest of reading the webhook. Any other update (a
    group, a button, media, a forward, a payment, an older shape) is None here and goes the whole way.
    """
    message = data.get("message")
    if len(data) != 2 or type(data.get("update_id")) is not int or type(message) is not dict:
        return None
    chat, user, text, date = message.get("chat"), message.get("from"), message.get("text"), message.get("date")
    if (
        not _PLAIN_MESSAGE_KEYS.issuperset(message)
        or type(message.get("message_id")) is not int
        or type(date) is not int
        or not 0 <= date <= _LAST_TIMESTAMP
        or type(text) is not str
        or type(chat) is not dict
        or type(chat.get("id")) is not int
        or chat.get("type") != ChatType.PRIVATE.value
        or type(user) is not dict
        or type(user.get("id")) is not int
        or user.get("is_bot") is not False
        or type(user.get("first_name")) is not str
        or not _plain_entities(message.get("entities", []))
    ):
        return None
    meta: InboundMeta = {MESSAGE_ID: message["message_id"], CHAT_TYPE: ChatType.PRIVATE.value}
    if user.get("username"):
        meta[USERNAME] = user["username"]
    if user.get("language_code"):
        meta[LANGUAGE] = user["language_code"]
    return InboundMessage(
        channel=CHANNEL,
        platform_id=str(data["update_id"]),
        chat_id=str(chat["id"]),
        sender_id=str(user["id"]),
        text=text,
        sender_name=user["first_name"] or None,
        meta=meta,
    )


def _plain_entities(entities: Any) -> bool:
    """Formatting of the text only (a command, bold …: no user, link or emoji in it), each entity well-typed."""
    return type(entities) is list and all(
        type(entity) is dict
        and _PLAIN_ENTITY_KEYS.issuperset(entity)
        and type(entity.get("type")) is str
        and type(entity.get("offset")) is int
        and type(entity.get("length")) is int
        for entity in entities
    )


def needs_identity(update: Update) -> bool:
    """Whether telling if this update is meant for the bot takes the bot's own id and username (group messages)."""
    message = update.message
    return message is not None and message.chat.type in GROUP_CHATS


def interpret(update: Update, *, me: BotIdentity | None = None) -> InboundMessage | Ignored:
    """The message this update brings, or why it is ignored. `me` is required when `needs_identity(update)`."""
    if update.message is not None:
        return _from_message(str(update.update_id), update.message, me)
    if update.callback_query is not None:
        return _from_button(str(update.update_id), update.callback_query)
    if update.pre_checkout_query is not None:
        return _from_pre_checkout(str(update.update_id), update.pre_checkout_query)
    if update.my_chat_member is not None:
        return _from_membership(str(update.update_id), update.my_chat_member)
    kind = update_kind(update)
    return Ignored(IGNORED_KINDS.get(kind, f"a {kind} update: the bot does not handle this kind"))


def _from_message(platform_id: str, message: Message, me: BotIdentity | None) -> InboundMessage | Ignored:
    user, chat = message.from_user, message.chat
    if user is None:
        return Ignored("a message without a sender")
    malformed = _mistyped(message.text, message.caption, user.first_name, user.username, user.language_code)
    if malformed:
        return Ignored(f"a message whose {malformed}")
    if message.migrate_from_chat_id is not None:  # (whoever made the change, an anonymous admin too)
        return InboundMessage(
            channel=CHANNEL, platform_id=platform_id, chat_id=str(chat.id), sender_id=str(user.id), text="",
            meta={PLATFORM_REPORT: True, MOVED_FROM: str(message.migrate_from_chat_id), CHAT_TYPE: str(chat.type)},
        )
    if message.left_chat_member is not None:  # (whoever removed them, an anonymous admin too)
        return _left(platform_id, message, message.left_chat_member)
    if message.sender_chat is not None or message.is_automatic_forward:
        return Ignored("a message on behalf of a chat (a channel's post copied into its discussion group, a member "
                       "posting as a channel, an anonymous group admin): the bot talks with people")
    if user.is_bot:
        return Ignored("a message from a bot (an anonymous group admin or another bot)")
    if message.successful_payment is not None:  # Telegram's report, in whatever chat the invoice was sent to
        paid = message.successful_payment
        return InboundMessage(
            channel=CHANNEL, platform_id=platform_id, chat_id=str(chat.id), sender_id=str(user.id),
            choice=PAYMENT_DONE, sender_name=user.first_name or None,
            meta={PLATFORM_REPORT: True, SUCCESSFUL_PAYMENT: {
                "currency": paid.currency, "total_amount": paid.total_amount, "invoice_payload": paid.invoice_payload,
                "telegram_payment_charge_id": paid.telegram_payment_charge_id,
                "provider_payment_charge_id": paid.provider_payment_charge_id,
                # a subscription's payments: the first, then one each period, until the date given
                "is_recurring": bool(paid.is_recurring), "is_first_recurring": bool(paid.is_first_recurring),
                "subscription_expiration_date": (int(paid.subscription_expiration_date.timestamp())
                                                 if paid.subscription_expiration_date else None),
            }},
        )
    if message.refunded_payment is not None:  # Telegram's report of a Stars refund (the bot's, or its own)
        refunded = message.refunded_payment
        return InboundMessage(
            channel=CHANNEL, platform_id=platform_id, chat_id=str(chat.id), sender_id=str(user.id),
            choice=PAYMENT_DONE, sender_name=user.first_name or None,
            meta={PLATFORM_REPORT: True, REFUNDED_PAYMENT: {
                "currency": refunded.currency, "total_amount": refunded.total_amount,
                "invoice_payload": refunded.invoice_payload,
                "telegram_payment_charge_id": refunded.telegram_payment_charge_id,
            }},
        )
    media = _media(message)
    if message.text is None and media is None:
        return Ignored("a message with no text, caption or media the bot reads (a service message, a game, …)")
    text = message.text if message.text is not None else (message.caption or "")
    if chat.type in GROUP_CHATS:
        if me is None:
            raise ValueError("a group message needs the bot's identity to be interpreted")
        if not _meant_for(message, text, me):
            return Ignored("a group message not meant for the bot (it answers commands, mentions and replies)")
        text = re.sub(rf"(?<![\w@])@{re.escape(me.username)}\b", "", text, flags=re.IGNORECASE).strip()
    elif chat.type != ChatType.PRIVATE:
        return Ignored(f"a message in a {chat.type} chat")
    meta: InboundMeta = {MESSAGE_ID: message.message_id, CHAT_TYPE: str(chat.type)}
    if media is not None:
        meta[MEDIA] = media
    if message.caption:
        meta[CAPTION] = message.caption
    if message.forward_origin is not None or "forward_date" in message.api_kwargs:
        meta[FORWARDED] = True
    meta.update(_about(user))
    meta.update(_in_topic(message))
    return InboundMessage(
        channel=CHANNEL,
        platform_id=_one_per_album(platform_id, message),
        chat_id=str(chat.id),
        sender_id=str(user.id),
        text=text,
        sender_name=user.first_name or None,
        meta=meta,
    )


def _left(platform_id: str, message: Message, member: User) -> InboundMessage | Ignored:
    """Someone left the group, or was removed: a report from them (they wrote nothing; their name is not kept)."""
    if member.is_bot:
        return Ignored("a bot left a group (the bot's own membership comes as my_chat_member)")
    chat = message.chat
    return InboundMessage(
        channel=CHANNEL, platform_id=platform_id, chat_id=str(chat.id), sender_id=str(member.id),
        meta={PLATFORM_REPORT: True, MEMBERSHIP: "left", CHAT_TYPE: str(chat.type)},
    )


ALBUM = "album:"  # the platform id every item of one album is recorded under


def _one_per_album(platform_id: str, message: Message) -> str:
    """An album (photos or videos sent together) arrives as one message each, sharing a media_group_id: its items are
    recorded as one message, the first to arrive with its caption as the text (Telegram's apps put an album's
    caption on its first item, whose update comes first); the others and their redeliveries are duplicates of it. So
    the bot answers an album once, not once an item, nor once for its caption and once for the rest."""
    if message.media_group_id and message.text is None:
        return f"{ALBUM}{message.chat.id}:{message.media_group_id}"
    return platform_id


def _about(user: User) -> InboundMeta:
    """What a message or a press says of its sender: their @username, and their app's language (the dialogs' first
    guess at the learner's, also where a button press is the first the bot gets of them)."""
    meta: InboundMeta = {}
    if user.username:
        meta[USERNAME] = user.username
    if user.language_code:
        meta[LANGUAGE] = user.language_code
    return meta


TOPIC = "topic:"  # a reply address (`meta[REPLY_ADDRESS]`): the forum topic the message was written in


def _in_topic(message: object) -> InboundMeta:
    """Where the answers to a message written in a forum topic go: that topic (Telegram would put them in the group's
    General topic). An inaccessible message (an old button's) says nothing of it."""
    thread = getattr(message, "message_thread_id", None)
    if getattr(message, "is_topic_message", False) and type(thread) is int:
        return {REPLY_ADDRESS: f"{TOPIC}{thread}"}
    return {}


def topic_of(address: str | None) -> int | None:
    """The forum topic a reply address names (`_in_topic`), or None."""
    if address is None or not address.startswith(TOPIC) or not address[len(TOPIC):].isdigit():
        return None
    return int(address[len(TOPIC):])


def _meant_for(message: Message, text: str, me: BotIdentity) -> bool:
    """A command for any bot or for this one, a mention of this bot, or a reply to one of its messages."""
    command = _COMMAND.match(text)
    if command is not None:
        target = command["target"]
        return target is None or target.lower() == me.username.lower()
    if re.search(rf"(?<![\w@])@{re.escape(me.username)}\b", text, flags=re.IGNORECASE):
        return True
    for entity in (*message.entities, *message.caption_entities):
        if entity.type == MessageEntityType.TEXT_MENTION and entity.user is not None and entity.user.id == me.id:
            return True
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == me.id


def _media(message: Message) -> dict[str, Any] | None:
    """The file (or contact, location …) a message carries: its kind and Telegram's fields, file_id included."""
    for kind in MEDIA_KINDS:
        value = getattr(message, kind, None)
        if not value:
            continue
        if isinstance(value, tuple):  # a photo comes in several sizes, the largest last
            value = value[-1]
        fields = value.to_dict()
        fields.pop("thumbnail", None)
        return {"kind": kind, **fields}
    return None


def _mistyped(*values: object) -> str | None:
    """What is not text among fields the Bot API sends as strings (or leaves out): python-telegram-bot reads an update
    without checking its fields' types, and a number or a list where text belongs would reach the dialogs."""
    for value in values:
        if value is not None and type(value) is not str:
            return f"text field holds {type(value).__name__} {str(value)[:40]!r}, not a string"
    return None


def _from_button(platform_id: str, query: CallbackQuery) -> InboundMessage | Ignored:
    if query.data is None:
        return Ignored("a button press without data (a game button)")
    malformed = _mistyped(query.data, query.from_user.first_name, query.from_user.username,
                          query.from_user.language_code)
    if malformed:
        return Ignored(f"a button press whose {malformed}")
    if query.message is None:
        return Ignored("a button on an inline-mode message: the bot sends none")
    choice, label = pressed(query.data, getattr(query.message, "reply_markup", None))
    if choice is None and label is None:
        # A reference under a message Telegram no longer shows the bot (its keyboard left out): pressed as the
        # reference, which no question takes, so the person hears that the button is from an earlier message.
        choice = query.data
    return InboundMessage(
        channel=CHANNEL,
        platform_id=platform_id,
        chat_id=str(query.message.chat.id),
        sender_id=str(query.from_user.id),
        text=label or "",
        choice=choice,
        sender_name=query.from_user.first_name or None,
        meta={CALLBACK_QUERY_ID: query.id, MESSAGE_ID: query.message.message_id, **_about(query.from_user),
              **_in_topic(query.message)},
    )


def checkout_chat(user_id: int | str) -> str:
    """The chat of a buyer's checks before charging (`CHECKOUT_CHAT`)."""
    return f"{CHECKOUT_CHAT}{user_id}"


def buyer_chat(chat_id: str) -> str:
    """The chat a reply to `chat_id` goes to: for the chat of a buyer's checks, their private chat with the bot (whose
    id is theirs), where anything but a check's answer (an apology, should the check fail) is said."""
    return chat_id.removeprefix(CHECKOUT_CHAT)


def _from_pre_checkout(platform_id: str, query: PreCheckoutQuery) -> InboundMessage:
    """The last check before Telegram charges: answered through the outbox (a CheckoutAnswer), from the chat of the
    buyer's checks (`checkout_chat`), not their private chat, whose turns and paced replies it would wait behind."""
    return InboundMessage(
        channel=CHANNEL,
        platform_id=platform_id,
        chat_id=checkout_chat(query.from_user.id),
        sender_id=str(query.from_user.id),
        choice=PAYMENT_CHECK,
        sender_name=query.from_user.first_name or None,
        meta={PRE_CHECKOUT: {"id": query.id, "currency": query.currency, "total_amount": query.total_amount,
                             "invoice_payload": query.invoice_payload},
              URGENT: True},  # Telegram gives up after 10 s: it waits for no other conversation's turn to end
    )


SPEAKING = (ChatMember.MEMBER, ChatMember.ADMINISTRATOR, ChatMember.OWNER)  # may send, unless restricted


GONE = (ChatMember.LEFT, ChatMember.BANNED)  # removed from a group, or blocked in a private chat ("kicked")


def _from_membership(platform_id: str, changed: ChatMemberUpdated) -> InboundMessage | Ignored:
    """The bot's own membership of a chat changed: a report that it may send there again, or that it may not any
    more (removed, blocked); a change that leaves it where it was (muted) is ignored."""
    member = changed.new_chat_member
    if member.status in SPEAKING or isinstance(member, ChatMemberRestricted) and member.can_send_messages:
        return _may_send(platform_id, changed, True)
    if member.status in GONE:
        return _may_send(platform_id, changed, False)
    return Ignored(f"the bot's membership of a chat changed to {member.status}: it may not send there")


def _may_send(platform_id: str, changed: ChatMemberUpdated, may: bool) -> InboundMessage:
    return InboundMessage(
        channel=CHANNEL, platform_id=platform_id, chat_id=str(changed.chat.id), sender_id=str(changed.from_user.id),
        meta={PLATFORM_REPORT: True, MAY_SEND: may, CHAT_TYPE: str(changed.chat.type)},
    )
