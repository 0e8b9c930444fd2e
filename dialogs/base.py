"""What a dialog sees of one incoming message, and how it answers.

A dialog reads `turn.message`, `turn.user` and its persisted `turn.state`, queries storage through `turn.session`
(the pipeline's transaction), and answers with `turn.say(...)`. The pipeline commits the state and the replies (as
outbox rows) together, so a crash never leaves one without the other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Choice, InboundMessage, Reply, Text
from storage.models import ChannelIdentity, Conversation, User


class OutsideTransaction(Exception):
    """Raised by `Turn.call_outside_transaction` the first time: the pipeline rolls back, runs `call`, replays."""

    def __init__(self, key: str, call: Callable[[], Awaitable[Any]]) -> None:
        super().__init__(key)
        self.key = key
        self.call = call


@dataclass
class Turn:
    session: AsyncSession
    message: InboundMessage
    conversation: Conversation
    identity: ChannelIdentity
    user: User
    is_admin: bool
    state: dict[str, Any]
    replies: list[Reply] = field(default_factory=list)
    prepared: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """What the person sent: the pressed choice's value, or their typed text."""
        return self.message.choice if self.message.choice is not None else self.message.text.strip()

    def say(self, text: str, choices: Sequence[Choice | tuple[str, str]] = ()) -> None:
        self.replies.append(
            Text(text, tuple(c if isinstance(c, Choice) else Choice(*c) for c in choices))
        )

    def send(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def call_outside_transaction(self, key: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run slow work (a model call, an HTTP request) without holding the database transaction open.

        The first time, the turn is rolled back, `call` runs with the conversation still leased to this process,
        and the turn is replayed from the start with the result available here under `key`. So everything a
        dialog does before this call must be deterministic (it is done twice, committed once).
        """
        if key not in self.prepared:
            raise OutsideTransaction(key, call)
        return self.prepared[key]


CommandHandler = Callable[[Turn, str], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    """A slash command: `/name args`. `admin` commands live under /admin and are permission-checked there."""

    name: str
    handler: CommandHandler
    summary: str
    synonyms: tuple[str, ...] = ()
