"""The channel contract: what every channel gives the core, what the core offers a channel, and what a channel may
also do.

Every channel has a name, a way to send a stored reply, and its rate limits (`Channel`). Outbound sending goes
through `send`, called only by the dispatcher, which interprets the errors below. Inbound parsing and verification
live in each channel's webhook routes (`HasRoutes`; the steps are channels/webhook.py), which hand verified messages
to the core through `ChannelHost`.

What only some channels do is declared here as a capability, and the core asks `isinstance(channel, Capability)`:
`HasRoutes` (webhooks), `ShowsTyping`, `ShowsDrafts`, `WatchesSentReplies` and `SentByMarking` (the web chat),
`Closable` (an SDK client's connections), `SendsUnpromptedWithin` (WhatsApp's 24-hour window), `ServesOneChat` (the
terminal), `OpensPrivateChats` (an address that opens a private chat with the bot: Telegram's t.me link),
`TakesStars` (Telegram's own payments) and `ListsMembers` (who is in a group chat: a Slack channel). A
channel has a capability by having its method; it names no class of ours.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from starlette.routing import BaseRoute

from bot.messages import InboundMessage, Reply


class SendError(Exception):
    """A send failed; the dispatcher decides what happens next from the subclass."""


class TransientSendError(SendError):
    """Worth retrying later with backoff: a timeout, a 5xx, a dropped connection."""


class RateLimited(TransientSendError):
    """The platform said to wait (HTTP 429 and its retry-after); not counted against the retry budget."""

    def __init__(self, retry_after: float, message: str = "rate limited") -> None:
        super().__init__(f"{message} (retry after {retry_after:g} s)")
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """Will never succeed as it is (blocked by the user, chat gone, bad request): dead-lettered at once.

    `refusal`: the platform's own word for why, where it gives one (Slack's `is_archived`, Twilio's `21211`): kept on
    the dead letter (`OutboxMessage.refusal`), for what decides by it (dialogs.teams), never read back from the text."""

    def __init__(self, message: str, *, refusal: str | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal or None


class NotShown(PermanentSendError):
    """The platform will not describe this person (Slack's users.info: `user_not_found`, `user_not_visible`): a
    deactivated account, or one of another organisation hidden from this one. A read of a chat's members leaves
    them out and goes on with the others; they are read again with the chat's members the next time."""


class Unreachable(PermanentSendError):
    """The platform will deliver nothing to this chat (the person blocked the bot, deleted their account; the number
    is not one): dead-lettered, and nothing more is sent to the chat until the person writes again
    (`storage.outbox.refused_for_good`). `opted_out`: they unsubscribed at the platform (Twilio's STOP), which only
    their START ends, as ours."""

    def __init__(self, message: str, *, opted_out: bool = False, refusal: str | None = None) -> None:
        super().__init__(message, refusal=refusal)
        self.opted_out = opted_out


class WaitForInbound(SendError):
    """May only go out after the person writes again (WhatsApp's 24-hour customer-service window).

    The dispatcher sets the row aside as `waiting`, with this message as the reason; the person's next message puts
    it back in line.
    """


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` sends per `seconds`, shared by every send with the same `key`.

    `shared`: the limit covers many chats (a bot's global limit, a sender's). A 429 pauses only the limits that
    are not shared, the chat's own, unless a send has none."""

    key: str
    count: int
    seconds: float
    shared: bool = False


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored reply on its way out, with what a channel may need to decide how to send it."""

    outbox_id: int
    chat_id: str
    reply: Reply
    attempt: int = 1
    last_inbound_at: datetime | None = None  # the learner's last message here (WhatsApp's 24-hour window)
    parts: PartsSent = field(default_factory=lambda: PartsSent())  # of a reply sent as several messages
    # The platform's address for answering the message this replies to (Slack's response_url), if it gave one.
    reply_address: str | None = None
    # When the platform refused this reply until the person writes, though it went while `last_inbound_at` said the
    # window open (WhatsApp's clock ahead of ours), for a channel that can send it otherwise (`sends_otherwise`): it
    # does so while the person has not written since (`window_closed`).
    window_closed_at: datetime | None = None

    @property
    def window_closed(self) -> bool:
        """The platform refused this reply until the person writes, and they have not written since."""
        return self.window_closed_at is not None and (
            self.last_inbound_at is None or self.last_inbound_at <= self.window_closed_at
        )


@dataclass(slots=True)
class PartsSent:
    """The parts of one reply already sent, as the platform's message ids, in order.

    A reply too long for one message goes out as several. When a later part fails, the dispatcher retries the reply,
    and the retry resumes after the parts in `ids`, in whichever process it runs: each part's id is written to the
    reply's outbox row (`save`, handed in by the dispatcher) as soon as the platform took it. A channel sends
    `parts_to_send[len(ids):]` and calls `add` after each.
    """

    ids: list[str] = field(default_factory=list)
    save: Callable[[list[str]], Awaitable[None]] | None = None

    async def add(self, platform_id: str, *, more_to_come: bool) -> None:
        """One more part went out. Saved only if `more_to_come`: after the last part the reply is marked sent."""
        self.ids.append(platform_id)
        if more_to_come and self.save is not None:
            await self.save(list(self.ids))


class Received(Protocol):
    """What recording an inbound message came to: its row, or the row of the same platform id recorded before."""

    @property
    def inbound_id(self) -> int | None: ...
    @property
    def duplicate(self) -> bool: ...


class ChannelHost(Protocol):
    """What the core offers a channel's webhook routes."""

    async def receive(self, message: InboundMessage) -> Received:
        """Record a verified message durably; acknowledge the platform only after this returns."""
        ...

    async def record_delivery(
        self, channel: str, platform_message_id: str, status: str, *, error: str | None = None,
        waits_for_inbound: bool = False, sends_otherwise: bool = False, unreachable: bool = False,
        opted_out: bool = False,
    ) -> bool:
        """Note a platform's delivery report (delivered, read, failed …) on the outbox row it sent; False if unknown.
        `waits_for_inbound`: refused until the person writes (WhatsApp's closed window): it goes again then; with
        `sends_otherwise` (the channel can send it before, as WhatsApp's approved template), at once, its Delivery
        saying when it was refused (`window_closed_at`).
        `unreachable`: the platform will not deliver to the person (as `Unreachable` says of a send): nothing more
        goes to the chat until a message from it arrives; `opted_out` with it: they unsubscribed at the platform
        (Twilio's STOP), which only their START ends, as `Unreachable.opted_out` says."""
        ...

    async def sent_replies(
        self, channel: str, chat_id: str, *, after: int, limit: int = 100
    ) -> Sequence[tuple[int, dict[str, Any]]]:
        """The replies sent to this chat after outbox id `after`, oldest first, as (outbox id, payload): for a
        channel whose page reads its replies from us (the web chat)."""
        ...

    async def chats_sent_to(self, channel: str, *, since: datetime) -> Mapping[str, int]:
        """The chats of this channel sent a reply at or after `since`, by whichever process, each with the outbox id
        of the newest of those replies: what a channel's open pages wait for (the web chat's event streams; a page
        that has shown that reply has nothing to read)."""
        ...

    async def learner_language(self, channel: str, chat_id: str) -> str | None:
        """The language of the learner in this chat (what they chose, or were given), or None if nobody is known
        there yet: for a channel's own pages (the web chat's words)."""
        ...

    async def sender_language(self, channel: str, sender_id: str) -> str | None:
        """The language of the person the platform names `sender_id` (what they chose, or were given), or None if
        they are not known yet: for what a channel says itself before the dialogs answer (a Slack acknowledgement's
        words)."""
        ...

    async def knows(self, channel: str, sender_id: str) -> bool:
        """Whether the person the platform names `sender_id` is someone the bot knows (they wrote to it; not once
        their data was erased): for a platform's report about a person, which a channel records only for someone
        known (a large group's leaves keep nothing of people who never wrote)."""
        ...

    async def stop_sending(self, channel: str, chat_prefix: str, *, workspace: str, reason: str) -> int:
        """The platform removed us from a workspace (a Slack app uninstalled): nothing more goes to the chats whose
        ids start with `chat_prefix`, unsent replies are cancelled, and the workspace's teams stop. The number of
        replies cancelled."""
        ...


class Channel(Protocol):
    """A platform's outbound side; what else it does, it declares with the capabilities below."""

    name: str

    async def send(self, delivery: Delivery) -> str:
        """Deliver one reply; return the platform's id for the sent message."""
        ...

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        """The limits this send counts against (per chat, per sender, global)."""
        ...


class RequestRejected(Exception):
    """An inbound request we refuse: `status` is the HTTP status, `message` tells the sender what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CannotRecord(Exception):
    """The core could not record a message just now (its database is away): nothing was recorded, and the sender
    should try again shortly (a webhook answers 503, which every platform retries). Raised too for what a channel's
    page reads (`ChannelHost.sent_replies`, `learner_language`, `chats_sent_to`), and for `knows`, while the database
    is away: a 503 there as well, and the host has logged it (once, then once a minute)."""


# Capabilities: what some channels do besides sending. ---------------------------------------------------------------


@runtime_checkable
class HasRoutes(Protocol):
    """A channel that receives: its webhook (and other HTTP) routes, which record what they verify into `host`."""

    def routes(self, host: ChannelHost) -> Sequence[BaseRoute]: ...


@runtime_checkable
class ShowsTyping(Protocol):
    """A "typing…" indicator in a chat (see bot.activity, which renews it while a reply is worked out), shown where
    the reply will go: at `reply_address` (a forum topic) when the message being answered gave one."""

    async def show_typing(self, chat_id: str, reply_address: str | None = None) -> None: ...


@runtime_checkable
class ShowsDrafts(Protocol):
    """The reply so far, shown as it is written (a model's streamed answer); "" ends the draft. Shown where the reply
    will go: at `reply_address` (a topic of the chat) when the message being answered gave one."""

    async def show_draft(self, chat_id: str, text: str, reply_address: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class SentReply:
    """A reply just committed as sent, handed to the channel that shows it (`WatchesSentReplies`) so that its open
    pages need not read it back: its outbox id, its payload, and `follows`, the outbox id of the reply sent to the
    same chat before it (0 for none). A page that has shown `follows` shows this one next; one that has not reads the
    replies after what it has shown instead."""

    outbox_id: int
    payload: dict[str, Any]
    follows: int


@runtime_checkable
class WatchesSentReplies(Protocol):
    """A channel that shows replies from our own database (the web chat): told the moment one is committed as sent,
    with the reply itself where the dispatcher has it at hand (`sent`; else None, and the channel reads it)."""

    def after_sent(self, chat_id: str, sent: SentReply | None = None) -> None: ...


@runtime_checkable
class SentByMarking(Protocol):
    """A channel whose send is the reply marked sent in our own outbox, with no platform call (the web chat: its pages
    read the replies marked so), and so no failure, pause or window: the dispatcher marks such a reply sent where it
    would have claimed it, in one statement, as long as the channel gives the chat no rate limits. The platform id
    written is this prefix and the outbox id (what `send` returns too)."""

    def sent_prefix(self) -> str: ...


@runtime_checkable
class ServesOneChat(Protocol):
    """A channel that reaches one chat of its platform only (the terminal reaches the person at its keyboard): the
    dispatcher hands it that chat's replies and leaves every other chat's for the process that reaches it."""

    def served_chat(self) -> str: ...


@runtime_checkable
class Closable(Protocol):
    """A channel holding connections (an SDK client's): closed when the bot stops."""

    async def close(self) -> None: ...


@runtime_checkable
class FinishesAfterAcknowledging(Protocol):
    """A channel with work of its own that follows a request's acknowledgement (Slack's note after a slash command,
    sent through the request's response_url): given `timeout` seconds to finish when the bot stops, beside the sends
    under way, before the channels and the database close; what is still running then is cancelled."""

    async def finish(self, timeout: float) -> None: ...


UnpromptedWindow = Callable[[datetime | None], datetime | None]


@runtime_checkable
class SendsUnpromptedWithin(Protocol):
    """A channel that may send what the person did not ask for (a nudge, a lesson at their hour) only for a while
    after they last wrote: WhatsApp's 24-hour customer-service window, when no template is configured."""

    def may_send_unprompted_until(self, last_inbound_at: datetime | None) -> datetime | None:
        """Until when such a message may go out, given the person's last message here (None: they never wrote);
        None when there is no such limit."""
        ...


def unprompted_windows(channels: Iterable[Channel]) -> Mapping[str, UnpromptedWindow]:
    """Channel name → its rule for unprompted messages, for the channels that have one (the scheduler's view of
    them: it holds no channel objects)."""
    return {
        channel.name: channel.may_send_unprompted_until
        for channel in channels
        if isinstance(channel, SendsUnpromptedWithin)
    }


@runtime_checkable
class OpensPrivateChats(Protocol):
    """A platform whose bot cannot write to a person first: an address anyone opens to start a private chat with it
    (Telegram's https://t.me/<username>), None while it is not known yet (before the bot's first call)."""

    def private_chat_link(self) -> str | None: ...


@runtime_checkable
class TakesStars(Protocol):
    """A platform that sells inside the chat in its own currency (Telegram Stars, XTR): it shows an `Invoice` (paid
    once, or a subscription), runs the last check before charging (a `CheckoutAnswer`) and reports each payment; it
    also refunds one and cancels a subscription."""

    async def refund_stars(self, user_id: str, charge_id: str) -> None:
        """Give back a payment by the platform's charge id; raises PermanentSendError if the platform refuses."""
        ...

    async def cancel_stars_subscription(self, user_id: str, charge_id: str) -> None:
        """Stop a subscription (named by any of its charges) from charging again; what was paid for stays paid."""
        ...


@dataclass(frozen=True, slots=True)
class ChatMember:
    """One person in a group chat, as the platform describes them: `sender_id` as inbound messages name them."""

    sender_id: str
    name: str = ""
    timezone: str | None = None  # an IANA zone name from their profile
    guest: bool = False  # a guest of the workspace (Slack's restricted and single-channel guests)
    bot: bool = False
    admin: bool = False  # an admin or owner of the workspace
    direct_chat: str | None = None  # the chat id of their direct chat with the bot, where the platform can say


@runtime_checkable
class ListsMembers(Protocol):
    """A platform that says who is in a group chat (a Slack channel), paced by its own API limits and Retry-After."""

    async def chat_members(self, chat_id: str) -> list[str]:
        """The sender ids of everyone in the chat (every page of the list)."""
        ...

    async def member_profile(self, sender_id: str) -> ChatMember:
        """What the platform says of one person (name, zone, guest, bot, admin); NotShown for one it will not
        describe."""
        ...
