"""What a dialog sees of one incoming message, and how it answers.

A dialog reads `turn.message`, `turn.user` and its persisted `turn.state`, queries storage through `turn.session`
(an ORM session in the pipeline's transaction, made the first time a dialog asks for it: a turn that never does
makes none) or runs prepared statements in `turn.transaction`, and answers with `turn.say(...)`. The pipeline
commits the state and the replies (as outbox rows) together, so a crash never leaves one without the other.

`Exchange` is the part of a Turn that a message the bot starts on its own needs too (the scheduler's daily lesson):
a session, the learner, the conversation's state and the replies. Dialog code that can run either way takes an
Exchange; code that needs what the person sent takes a Turn.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import REPLY_ADDRESS, Choice, InboundMessage, Link, Reply, Text
from storage.db import SessionOnDemand
from storage.models import ChannelIdentity, Conversation, User, utcnow

if TYPE_CHECKING:  # each module imports this one
    from dialogs.ask import QuestionAnswerer
    from dialogs.payments import PaymentDesk


class OutsideTransaction(Exception):
    """Raised by `Turn.call_outside_transaction` the first time: the pipeline rolls back, runs `call`, replays."""

    def __init__(
        self,
        key: str,
        call: Callable[[], Awaitable[Any]],
        *,
        channel: str = "",
        chat_id: str = "",
        reply_address: str | None = None,
        inbound_id: int | None = None,
    ) -> None:
        super().__init__(key)
        self.key = key
        self.call = call
        self.channel = channel  # where the person waits: the pipeline shows them "typing…" meanwhile
        self.chat_id = chat_id
        self.reply_address = reply_address  # where in the chat the replies go (a forum topic): "typing…" shows there
        self.inbound_id = inbound_id  # the message whose turn asked: the result is for its replay only


@dataclass(kw_only=True)
class Exchange:
    """A moment of conversation with one learner: where to read and write, and what to send back.

    `data_dir` is where generated files (certificates) are kept; `site_url` is where people reach the bot's own pages
    (a certificate's verification page), None where unknown; `now` is fixed for the whole exchange so that a
    replayed turn and every date shown in it agree.
    """

    transaction: SessionOnDemand  # where to read and write: prepared statements here, the ORM in `session`
    conversation: Conversation | None
    user: User
    state: dict[str, Any]
    replies: list[Reply] = field(default_factory=list)
    data_dir: Path | None = None
    site_url: str | None = None
    now: datetime = field(default_factory=utcnow)
    # Whom of the chat the bot speaks to when it starts this on its own for one learner (a lesson at their hour):
    # their sender id there, so that what it starts (a quiz) is theirs in a group, as a flow a message starts is its
    # sender's (dialogs/flow.py). None: the chat as a whole. A Turn's is its message's sender.
    member: str | None = None

    @property
    def session(self) -> AsyncSession:
        """The ORM session in the exchange's transaction, made on first use (with the turn's loaded rows in it)."""
        return self.transaction.session

    @property
    def shared(self) -> bool:
        """Whether the chat is one of many (a group, a channel), where everyone reads what is said: as its last
        message said (`Conversation.shared`)."""
        return bool(self.conversation is not None and self.conversation.shared)

    def say(self, text: str, choices: Sequence[Choice | tuple[str, str]] = (), *, links: Sequence[Link] = ()) -> None:
        """Send text with optional choices (buttons, or numbered options where a platform has no buttons) and links
        to open (link buttons, or links under the text).

        Keep `text` under about 1,000 characters: every channel shows that as one message.
        """
        self.replies.append(Text(text, tuple(c if isinstance(c, Choice) else Choice(*c) for c in choices),
                                 tuple(links)))

    def send(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def call_outside_transaction(self, key: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Without a message being processed there is no transaction to step out of: run `call` now."""
        return await call()


@dataclass(kw_only=True)
class Turn(Exchange):
    """One received message being processed, inside the pipeline's transaction."""

    message: InboundMessage
    identity: ChannelIdentity
    listed_admin: bool  # in the ADMINS setting: an owner by configuration (dialogs/roles.py adds stored roles)
    owners: frozenset[str] = frozenset()  # the ADMINS setting's addresses ("telegram:12345"): owners by configuration
    prepared: dict[str, Any] = field(default_factory=dict)
    answerer: QuestionAnswerer | None = None  # None: no knowledge configured in this process
    payments: PaymentDesk | None = None  # how this bot takes payments; None: no way to pay here
    inbound_id: int | None = None  # the row of `message`, kept when a learner's data is deleted mid-turn
    # Shows the reply so far where the channel can (bot.activity); for calls outside the transaction to use.
    draft: Callable[[str], Awaitable[None]] | None = None
    # The clock's jobs to run as soon as this turn has committed, by name, rather than at their next fire time (a
    # broadcast confirmed: storage.broadcasts.FAN_OUT). The leader runs them, here or in another process.
    jobs_to_start: set[str] = field(default_factory=set)
    # The person's other chats this turn answered in (their private chat, for a command typed in a group): the
    # dispatcher sends what it queued there as replies someone waits for, once the turn has committed.
    answered_elsewhere: set[int] = field(default_factory=set)
    # What may only happen once the turn has committed, in order (an erased person's files removed: removed before,
    # a turn rolled back or replayed would leave rows naming files that are gone). Dropped with a turn that does not
    # commit; a process that dies between the commit and these leaves them undone.
    after_commit: list[Callable[[], None]] = field(default_factory=list)

    @property
    def shared(self) -> bool:
        """Whether the chat is one of many, as this message says; where it does not say (a platform's report, a
        payment: `InboundMessage.tells_chat_kind`), as the chat's last message said."""
        if not self.message.tells_chat_kind:
            return super().shared
        return not self.message.private

    @property
    def text(self) -> str:
        """What the person sent: the pressed choice's value, or their typed text."""
        return self.message.choice if self.message.choice is not None else self.message.text.strip()

    async def call_outside_transaction(self, key: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run slow work (a model call, an HTTP request) without holding the database transaction open.

        The first time, the turn is rolled back, `call` runs with the conversation still leased to this process,
        and the turn is replayed from the start with the result available here under `key`. So everything a
        dialog does before this call must be deterministic (it is done twice, committed once). A person the turn
        met for the first time is stored before the call, so that `turn.user.id` is the same in the replay.
        """
        if key not in self.prepared:
            raise OutsideTransaction(
                key, call, channel=self.message.channel, chat_id=self.message.chat_id,
                reply_address=self.message.meta.get(REPLY_ADDRESS), inbound_id=self.inbound_id,
            )
        return self.prepared[key]


CommandHandler = Callable[[Turn, str], Awaitable[None]]


class UsageError(Exception):
    """A command typed wrong; the message says how to type it (the admin commands raise it, /admin says it)."""


@dataclass(frozen=True)
class Command:
    """A slash command: `/name args`, or one of its plain-word `synonyms` typed alone ("next", "siguiente"), or
    followed by words its `plain_args` pattern matches in full ("pause 3 days": anything else after a plain word,
    "pause the video?", stays a message for the dialog in progress or the question answerer).

    `summary` is an English message id, translated where it is shown (mark it with `N_`). `admin` commands live
    under /admin and are permission-checked there. A dialog in progress stays where it was while a command runs:
    its buttons still work and its next answer still goes to it.
    """

    name: str
    handler: CommandHandler
    summary: str
    synonyms: tuple[str, ...] = ()
    plain_args: re.Pattern[str] | None = None  # matched against the folded words after a synonym
    listed: bool = True  # shown by /help
