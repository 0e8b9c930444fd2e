"""What every channel gives the core: a name, a way to send a stored reply, and its rate limits.

Inbound parsing and verification live in each channel's web endpoint; outbound sending goes through `send`, called
only by the dispatcher, which interprets the three errors below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

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
    """Will never succeed as it is (blocked by the user, chat gone, bad request): dead-lettered at once."""


class WaitForInbound(SendError):
    """May only go out after the person writes again (WhatsApp's 24-hour customer-service window).

    The dispatcher sets the row aside as `waiting`, with this message as the reason; the person's next message puts
    it back in line.
    """


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `count` sends per `seconds`, shared by every send with the same `key`."""

    key: str
    count: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stored reply on its way out, with what a channel may need to decide how to send it."""

    outbox_id: int
    chat_id: str
    reply: Reply
    attempt: int = 1
    last_inbound_at: datetime | None = None  # the learner's last message here (WhatsApp's 24-hour window)


class Received(Protocol):
    duplicate: bool


class ChannelHost(Protocol):
    """What the core offers a channel's webhook routes."""

    async def receive(self, message: InboundMessage) -> Received:
        """Record a verified message durably; acknowledge the platform only after this returns."""
        ...

    async def record_delivery(
        self, channel: str, platform_message_id: str, status: str, *, error: str | None = None
    ) -> bool:
        """Note a platform's delivery report (delivered, read, failed …) on the outbox row it sent; False if unknown."""
        ...


class Channel(Protocol):
    """A platform's outbound side. A channel with webhooks also has `routes(host: ChannelHost) -> list[Route]`."""

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
