"""Whether a choice was offered: the one owner of that question, for pressed buttons and typed choices alike.

Every reply's choices are recorded when the reply is queued (`storage.outbox.enqueue` writes `OfferedChoice` rows),
for the member whose message it answers, for the learner the bot spoke to on its own (their daily lesson, a reminder:
in a group that is home to several, theirs alone), or for anyone in the chat when it spoke to no one in particular.
So:
- a pressed button is honoured only if its value was offered in this conversation to the person pressing it, however
  long ago ("a button works however late it is pressed", as long as a reply that offered it is kept: the prune lets
  an offer go with its replies, `storage.outbox.choices_offered_before`), or, from a member's private place in a
  group chat (`meta[GROUP_CHAT]`: a Slack member's ephemeral conversation in a channel), offered in that chat, or in a
  direct chat, offered to the person's own address (`meta[DIRECT_ADDRESS]`);
  a value that never was (a forged button, another group member's prompt) gets "that button isn't available" and
  nothing else (`was_offered`, `refuse`);
- an offered button answers a flow's open question only if it is of that question's kind (dialogs/flow.py,
  `Step.takes`): an earlier question's is out of date there;
- a button the person pressed again at once (a double tap: the same button of the same message, `meta[MESSAGE_ID]`,
  with no answered message of theirs between and within DOUBLE_TAP_SECONDS) is not a second choice: the first press was
  answered, and the second gets nothing (`pressed_again`); pressed later, the same button is answered as any spent one;
- a typed choice is read against the choices of the newest replies sent to this person: a label ("Yes, let's
  start") on every channel, a number ("2") where the channel shows choices as numbered lines (its message carries
  `meta[NUMBERED_CHOICES]`: the terminal, WhatsApp), and only as a choice offered to them (`understood`: in a group,
  the words of another learner's button are this person's words);
- a typed option number that names none of them is told the options again (`is_option_number`, `not_an_option`),
  never handed to the question answerer.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Label,
    ScalarSelect,
    Select,
    and_,
    bindparam,
    case,
    exists,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import (
    DIRECT_ADDRESS,
    GROUP_CHAT,
    MESSAGE_ID,
    NUMBERED_CHOICES,
    PLATFORM_REPORT,
    PRE_CHECKOUT,
    QUESTION,
    REPLYING_TO,
    Choice,
    InboundMessage,
)
from bot.text import plain_words
from dialogs.learner import tr
from dialogs.turn import Turn
from storage.db import SessionOnDemand
from storage.models import Conversation, OfferedChoice, OutboxMessage
from storage.models import InboundMessage as InboundRow
from storage.outbox import InboundStatus, OutboxStatus
from storage.prepared import Prepared
from storage.queries import json_rows

EVERYONE = ""  # `OfferedChoice.member` of a choice offered to anyone in the chat
NEWEST_ROWS = 10  # how far back the newest replies are looked for
# What a turn's load reads of them (`newest_sent_column`): the newest reply and the one before decide the choices of
# most turns (a reply alone, or one whose batch ends there or offers its choices), and each row more costs the load
# a heap and an index look-up (the load 188 → 146 µs a run in PostgreSQL with 2 rather than 10). Where they do not
# decide, the turn reads the NEWEST_ROWS when it needs them (`remember_newest_sent`).
NEWEST_IN_LOAD = 2
# Labels are short (a quiz choice at most 120 characters, authoring's CHOICE_CHARS): text twice that long is not a
# typed label, and skips the lookup.
LONGEST_LABEL = 120
# How soon after a press the same person's press of the same button is the same tap again (a double tap, or a tap
# repeated while the first was answered) rather than a spent button pressed later.
DOUBLE_TAP_SECONDS = 30
# "2", "#2", "2.", "2)", or the digit as an emoji keycap ("2️⃣": the digit, U+FE0F, which some keyboards leave out,
# and U+20E3), which WhatsApp's emoji keyboard offers for answering a numbered list
_OPTION_NUMBER = re.compile(r"#?\s*(\d{1,3}|(?:\d\ufe0f?\u20e3){1,3})\s*[.)]?")
_KEYCAP = re.compile("[\ufe0f\u20e3]")


# Chats whose offers count in this one, as the channel marks them: a member's private place in a group chat sees the
# group's (`GROUP_CHAT`), a direct chat what was sent to the person's own address (`DIRECT_ADDRESS`: Slack posts to
# a user id land in their DM with the bot).
ALSO_OFFERED_IN = (GROUP_CHAT, DIRECT_ADDRESS)

# Marks a platform's adapter sets on what the platform itself reports (a payment made, Telegram's last check before
# charging): verified at the platform's edge, never typed or pressed by a person, so no offer is needed.
PLATFORM_REPORTS = (PLATFORM_REPORT, PRE_CHECKOUT)


def member_of(turn: Turn) -> str:
    """Who is choosing: the sender of the message (in a group, one member of it)."""
    return turn.message.sender_id


async def was_offered(turn: Turn, value: str) -> bool:
    """Was `value` offered in this conversation to the person who sent it (to them, or to anyone in the chat)?

    A platform's own report (`PLATFORM_REPORTS`) is not a person's choice and passes."""
    if any(turn.message.meta.get(mark) for mark in PLATFORM_REPORTS):
        return True
    if turn.conversation is None:
        return False
    asked = {"value": value, "member": member_of(turn), "everyone": EVERYONE}
    offered = turn.transaction.info.get((_READ_OFFERED, turn.conversation.id, asked["member"], value))
    if offered is None:
        offered = (await _OFFERED_HERE.run(turn.transaction, {**asked, "conv": turn.conversation.id})).scalar()
    for mark in ALSO_OFFERED_IN:
        elsewhere = turn.message.meta.get(mark)
        if offered or not isinstance(elsewhere, str) or not elsewhere:
            continue
        chat = {**asked, "channel": turn.conversation.channel, "chat": elsewhere}
        offered = (await _OFFERED_IN_CHAT.run(turn.transaction, chat)).scalar()
    return bool(offered)


async def pressed_again(turn: Turn) -> bool:
    """Whether this press repeats the person's previous message (one that had its answer) at once: the same button
    (its value) of the same message (the platform's id of it, `meta[MESSAGE_ID]`), pressed within DOUBLE_TAP_SECONDS
    of it. The first press had its answer; this one needs none. Where a platform names no message, presses cannot be
    told apart from one of an equal button elsewhere, and none is taken for a repeat."""
    message = turn.message
    pressed_on = message.meta.get(MESSAGE_ID)
    if message.choice is None or pressed_on is None or turn.conversation is None or turn.inbound_id is None:
        return False
    read = turn.transaction.info.get((_READ_PRESSED, turn.inbound_id))
    if read is not None:  # what the turn's load read (`pressed_columns`)
        tapped_at, now = read
        return tapped_at is not None and tapped_at >= now - timedelta(seconds=DOUBLE_TAP_SECONDS)
    before = (await _PREVIOUS_OF_SENDER.run(turn.transaction, {"id": turn.inbound_id})).first()
    if before is None or before.received_at < before.now - timedelta(seconds=DOUBLE_TAP_SECONDS):
        return False
    payload = before.payload or {}
    return payload.get("choice") == message.choice and (payload.get("meta") or {}).get(MESSAGE_ID) == pressed_on


def refuse(turn: Turn) -> None:
    """The answer to a choice that was never offered to this person: nothing happens but this."""
    _ = tr(turn)
    turn.say(_("That button isn't available."))


def numbered_choices(turn: Turn) -> bool:
    """Whether this chat shows choices as numbered lines to type (WhatsApp, the terminal) rather than buttons."""
    return bool(turn.message.meta.get(NUMBERED_CHOICES))


async def understood(turn: Turn) -> InboundMessage:
    """The message with a typed choice read as the choice it names (by its label, or its number where numbered), one
    offered to this person (in a group, the words of another learner's button, "next" under their lesson, stay
    words: this person's own /next); a message asked as a question on purpose (`meta[QUESTION]`: Slack's /ask, a
    Rasa assistant's ask action) is its words, whatever a button says."""
    message = turn.message
    if (message.choice is not None or message.meta.get(QUESTION) or not message.text.strip()
            or len(message.text) > LONGEST_LABEL * 2):
        return message
    value = await typed_choice(turn, message.text, numbers=numbered_choices(turn))
    if value is None or not await was_offered(turn, value):
        return message  # (the words of a button offered to another in the chat, a learner's pushed lesson: words)
    return replace(message, choice=value)


async def typed_choice(turn: Turn, text: str, *, numbers: bool) -> str | None:
    """The value of the current choice `text` names by its words ("beta") or, with `numbers`, its number ("2").

    Words win over numbers, so a choice labelled "4" is picked by typing 4.
    """
    choices = await current_choices(turn)
    named = _named(choices, text)
    if named is not None:
        return named.value
    number = option_number(text)
    if numbers and number is not None and 1 <= number <= len(choices):
        return choices[number - 1].value
    return None


def option_number(text: str) -> int | None:
    """The number of a bare option number ("2", "#2", "2.", "2️⃣"), or None if `text` is not one."""
    typed = _OPTION_NUMBER.fullmatch(text.strip())
    return int(_KEYCAP.sub("", typed[1])) if typed else None


def is_option_number(text: str) -> bool:
    """A bare number ("2", "#2", "2.", "2️⃣"): someone picking from a list of options."""
    return option_number(text) is not None


async def not_an_option(turn: Turn) -> None:
    """A typed option that is none of the current choices: say so, and offer them again."""
    _ = tr(turn)
    choices = await current_choices(turn)
    if not choices:
        turn.say(_("There are no options to choose from right now. Send /help to see what I can do."))
        return
    labels = ", ".join(f"“{choice.label}”" for choice in choices)
    turn.say(_("That's not one of the options. Choose one of these: {options}.", options=labels), choices=choices)


def _named(choices: list[Choice], text: str) -> Choice | None:
    """The choice among `choices` whose label `text` is, in its words ("beta" for "Beta"), or None."""
    typed = plain_words(text)
    if not typed:
        return None
    return next((choice for choice in choices if plain_words(choice.label) == typed), None)


async def current_choices(turn: Turn) -> list[Choice]:
    """The choices of the newest replies sent to this person (the replies to one message of theirs, or one message
    the bot sent on its own), so a number typed long after a question does not answer it; or, for a message that
    replies to one of the bot's (`meta[REPLYING_TO]`: swiped to reply on WhatsApp), that one's, where it offered
    some."""
    if turn.conversation is None:
        return []
    return await _current_for(turn.transaction, turn.conversation, turn.message)


async def names_a_current_choice(session: SessionOnDemand, conversation: Conversation, message: InboundMessage) -> bool:
    """Whether the message's text is the label of one of its sender's current choices (`current_choices`), for what
    is read before a turn begins: an opt-out word that is also an offered answer ("Cancel") is that answer."""
    return _named(await _current_for(session, conversation, message), message.text) is not None


async def _current_for(session: SessionOnDemand, conversation: Conversation, message: InboundMessage) -> list[Choice]:
    replied = await _offered_in_reply(session, conversation, message)
    if replied:
        return replied
    return await _newest_offered(session, conversation.id, message.sender_id)


async def _offered_in_reply(
    session: SessionOnDemand, conversation: Conversation, message: InboundMessage
) -> list[Choice]:
    """The choices of the sent reply the message replies to, to its sender or to anyone in the chat; none when it
    replies to none, or to one of ours that offered none."""
    replied = message.meta.get(REPLYING_TO)
    if not isinstance(replied, str) or not replied:
        return []
    asked = {"conv": conversation.id, "channel": conversation.channel, "sid": replied, "member": message.sender_id}
    offered = (await _REPLIED_TO.run(session, asked)).scalar()
    return [Choice(choice["label"], choice["value"]) for choice in offered or ()]


async def _newest_offered(session: SessionOnDemand, conversation_id: int, member: str) -> list[Choice]:
    asked = (conversation_id, member)
    rows = session.info.get((_REMEMBERED, *asked))
    if rows is None:
        ran = await _NEWEST_SENT.run(session, {"conv": conversation_id, "member": member})
        rows = [(row.inbound_message_id, row.choices) for row in ran.rows]
        session.info[(_REMEMBERED, *asked)] = rows  # (the turn may ask again: the options told once more)
    newest = newest_choices(rows)
    return [Choice(choice["label"], choice["value"]) for choice in newest]


def newest_sent_column(conversation_id: ColumnElement[int], member: ColumnElement[str]) -> ScalarSelect[Any]:
    """What `current_choices` reads, as one column of another statement (a turn's load reads it for the person who
    wrote); its value goes to `remember_newest_sent`. The replies sent cannot change within a turn (the turn's own
    are not sent before it commits)."""
    newest = (
        _newest_sent(conversation_id, member, NEWEST_IN_LOAD)
        .add_columns(_OUTBOX.c.id)
        .correlate_except(_OUTBOX, _INBOUND)
        .subquery("newest_sent")
    )
    return (
        select(json_rows(newest.c.id, newest.c.inbound_message_id, newest.c.choices))
        .select_from(newest)
        .scalar_subquery()
    )


def remember_newest_sent(
    session: AsyncSession | SessionOnDemand, conversation_id: int, member: str, column: list[list[Any]] | None
) -> None:
    """Keep what `newest_sent_column` read for this conversation and member for the rest of the transaction, where it
    decides the current choices (else `current_choices` reads the NEWEST_ROWS when asked)."""
    rows = sorted(column or (), key=lambda row: -row[0])  # newest first, as the look-up reads them
    newest = [(inbound_id, offered) for _id, inbound_id, offered in rows]
    if _decided(newest, NEWEST_IN_LOAD):
        session.info[(_REMEMBERED, conversation_id, member)] = newest


def pressed_columns(pressed: FromClause, conversation_id: ColumnElement[int]) -> tuple[Label[Any], Label[Any]]:
    """What `was_offered` and `pressed_again` read for a pressed button, as two columns of another statement whose
    `pressed` is the message's inbound row (a turn's load reads them, a round trip each saved): whether its value was
    offered in the conversation to its sender (`offered`), and when the sender's message before it arrived, if that
    was the same button of the same message (`tapped_at`). Both NULL for a message with no button pressed. Their
    values go to `remember_pressed`."""
    value = pressed.c.payload["choice"].as_string()
    member = pressed.c.sender_id
    offered = exists().where(
        _OFFERS.c.conversation_id == conversation_id,
        _OFFERS.c.value == value,
        or_(_OFFERS.c.member == member, _OFFERS.c.member == EVERYONE),
    )
    before = _INBOUND.alias("tapped_before")
    same_press = and_(
        before.c.payload["choice"].as_string() == value,
        before.c.payload[("meta", MESSAGE_ID)].as_string() == pressed.c.payload[("meta", MESSAGE_ID)].as_string(),
    )
    tapped_at = (
        select(case((same_press, before.c.received_at)))
        .where(
            before.c.conversation_id == pressed.c.conversation_id,
            before.c.status == _ANSWERED,
            before.c.sender_id == member,
            before.c.seq < pressed.c.seq,
        )
        .order_by(before.c.seq.desc())
        .limit(1)
        .correlate(pressed)
        .scalar_subquery()
    )
    return (
        case((value.is_not(None), offered)).label("offered"),
        case((value.is_not(None), tapped_at)).label("tapped_at"),
    )


def remember_pressed(
    session: SessionOnDemand, conversation_id: int, inbound_id: int, payload: dict[str, Any] | None,
    received_at: datetime, member: str, offered: bool | None, tapped_at: datetime | None,
) -> None:
    """Keep what `pressed_columns` read for the message (`inbound_id`, its stored `payload`) for the rest of the
    transaction, where `was_offered` and `pressed_again` find it instead of asking the database."""
    value = (payload or {}).get("choice")
    if not isinstance(value, str):
        return
    session.info[(_READ_OFFERED, conversation_id, member, value)] = bool(offered)
    session.info[(_READ_PRESSED, inbound_id)] = (tapped_at, received_at)


_OFFERS, _CONVERSATIONS = OfferedChoice.__table__, Conversation.__table__
_TO_MEMBER = or_(_OFFERS.c.member == bindparam("member"), _OFFERS.c.member == bindparam("everyone"))
_OFFERED_HERE = Prepared(  # built once, run on the driver: every pressed button asks it
    select(
        exists()
        .where(_OFFERS.c.conversation_id == bindparam("conv"), _OFFERS.c.value == bindparam("value"), _TO_MEMBER)
        .label("offered")
    )
)
_OFFERED_IN_CHAT = Prepared(
    select(
        exists().where(
            _OFFERS.c.conversation_id == _CONVERSATIONS.c.id,
            _CONVERSATIONS.c.channel == bindparam("channel"),
            _CONVERSATIONS.c.chat_id == bindparam("chat"),
            _OFFERS.c.value == bindparam("value"),
            _TO_MEMBER,
        ).label("offered")
    )
)
_OUTBOX = OutboxMessage.__table__
_INBOUND = InboundRow.__table__
# A double tap repeats a message that had its answer: the person's previous one done (one that failed had only an
# apology). Every message before the one a turn is for is done or failed, and asked for the done ones the
# conversation's order index (conversation, status, seq) is read backwards from the press until theirs is found,
# rather than every earlier message of the conversation read and sorted.
_ANSWERED = InboundStatus.DONE.value
_NOW, _BEFORE = _INBOUND.alias("pressed_now"), _INBOUND.alias("said_before")
# The message of the same sender just before this one in its conversation (by arrival), with when each arrived.
_PREVIOUS_OF_SENDER = Prepared(
    select(_BEFORE.c.payload, _BEFORE.c.received_at, _NOW.c.received_at.label("now"))
    .where(
        _NOW.c.id == bindparam("id"),
        _BEFORE.c.conversation_id == _NOW.c.conversation_id,
        _BEFORE.c.status == _ANSWERED,
        _BEFORE.c.sender_id == _NOW.c.sender_id,
        _BEFORE.c.seq < _NOW.c.seq,
    )
    .order_by(_BEFORE.c.seq.desc())
    .limit(1)
)
_READ_OFFERED, _READ_PRESSED = "offered", "pressed again"  # session.info's keys of what `pressed_columns` read
_REMEMBERED = "newest sent"  # session.info's key, with the conversation and member, of what another statement read


def _newest_sent(conversation_id: ColumnElement[int], member: ColumnElement[str], most: int) -> Select[Any]:
    # Only each payload's choices, taken out by the database: a reply's text can be long, and decoding it costs more
    # than the query.
    return (
        select(_OUTBOX.c.inbound_message_id, _OUTBOX.c.payload["choices"].label("choices"))
        .outerjoin(_INBOUND, _INBOUND.c.id == _OUTBOX.c.inbound_message_id)
        .where(
            _OUTBOX.c.conversation_id == conversation_id,
            _OUTBOX.c.status == OutboxStatus.SENT.value,
            or_(_INBOUND.c.id.is_(None), _INBOUND.c.sender_id == member),
        )
        .order_by(_OUTBOX.c.id.desc())
        .limit(most)
    )


# Built once, run on the driver: every typed message the turn's load did not already read it for asks it.
_NEWEST_SENT = Prepared(_newest_sent(bindparam("conv"), bindparam("member"), NEWEST_ROWS))
# The choices of the sent reply a message replies to (found by the platform_message_id index, as a delivery report's).
_REPLIED_TO = Prepared(
    select(_OUTBOX.c.payload["choices"].label("choices"))
    .outerjoin(_INBOUND, _INBOUND.c.id == _OUTBOX.c.inbound_message_id)
    .where(
        _OUTBOX.c.channel == bindparam("channel"),
        _OUTBOX.c.platform_message_id == bindparam("sid"),
        _OUTBOX.c.conversation_id == bindparam("conv"),
        _OUTBOX.c.status == OutboxStatus.SENT.value,
        or_(_INBOUND.c.id.is_(None), _INBOUND.c.sender_id == bindparam("member")),
    )
    .limit(1)
)


def newest_choices(rows: list[tuple[int | None, list[dict[str, str]] | None]]) -> list[dict[str, str]]:
    """The choices in the newest batch of sent replies (`rows` newest first, as (inbound id, the reply's choices)), or
    none."""
    if not rows:
        return []
    batch = rows[0][0]
    for index, (inbound_id, offered) in enumerate(rows):
        if index and (batch is None or inbound_id != batch):
            break
        if offered:
            return list(offered)
    return []


def _decided(rows: list[tuple[int | None, list[dict[str, str]] | None]], most: int) -> bool:
    """Whether `newest_choices` of the newest `most` rows (`rows`, newest first) is that of all of them: fewer were
    found, or the newest batch ends or offers its choices among them."""
    if len(rows) < most:
        return True
    batch = rows[0][0]
    for index, (inbound_id, offered) in enumerate(rows):
        if offered or (index and (batch is None or inbound_id != batch)):
            return True
    return False
