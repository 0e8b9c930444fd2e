"""Send pacing for the dispatcher: a sliding window per `RateLimit` key.

A limit of `count` per `seconds` means what the platforms publish: in no window of `seconds` do more than `count`
sends under that key go out (Telegram's 30 per second, 20 per minute in a group). The limiter remembers, per key,
the times of the last `count` sends it allowed; the next may go once the oldest of those is `seconds` old. A 429
pauses the chat it was about for the platform's retry-after (see `keys_to_pause`).

The platform counts sends when they arrive, and a send's trip can take a few milliseconds more or less than the one
before it: two sends started exactly one window apart can land closer than that. So every window is kept 5 % longer
than published (1.05 s for "1 per second"); `lessonbot bench channels` counts what arrives at the stand-ins.
For the same reason a per-second limit is spread evenly over its window (30 a second: one every 35 ms) instead of
going out in a burst: thirty sends started at once arrive over tens of milliseconds, and a window counted at the
platform then catches one more. Longer windows (Telegram's 20 a minute in a group) keep their burst: a lesson's
three messages to a group go out at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from bot.channel import RateLimit

GUARD = 0.05  # each window is kept this share longer than the platform's, for the jitter of the trip
SPREAD_UP_TO_SECONDS = 1.0  # limits with windows up to this long are spread evenly over the window


class RateLimiter:
    def __init__(self) -> None:
        self._sent: dict[str, deque[float]] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def _earliest(self, limit: RateLimit, now: float) -> float:
        """When the next send under `limit` may go, from the sends already reserved."""
        sent = self._sent.get(limit.key)
        allowed = self._paused_until.get(limit.key, now)
        window = limit.seconds * (1 + GUARD)
        if sent and limit.seconds <= SPREAD_UP_TO_SECONDS:
            allowed = max(allowed, sent[-1] + window / limit.count)
        if sent is not None and len(sent) >= limit.count:
            allowed = max(allowed, sent[-limit.count] + window)
        return max(allowed, now)

    async def acquire(self, limits: Iterable[RateLimit]) -> Booking:
        """Wait until a send that counts against every one of `limits` may go, and count it.

        Call `done` with the booking when the send has finished: from then on the send counts from when it
        finished, not from when it was booked, so a slow trip cannot put two sends closer than a window apart at
        the platform's end."""
        limits = tuple(limits)
        if not limits:
            return Booking((), 0.0, waited=0.0)
        async with self._lock:
            now = time.monotonic()
            at = max(self._earliest(limit, now) for limit in limits)
            self._book(limits, at)
        if at > now:
            await asyncio.sleep(at - now)
        return Booking(tuple(limit.key for limit in limits), at, waited=at - now)

    def try_acquire(self, limits: Iterable[RateLimit]) -> Booking | None:
        """Count a send against every one of `limits` if it may go now; None (nothing counted) if it would wait.
        Call `done` with the booking as after `acquire`."""
        limits = tuple(limits)
        if not limits:
            return Booking((), 0.0, waited=0.0)
        if self._lock.locked():
            return None  # others are booking: take a place in line with `acquire`
        now = time.monotonic()
        if any(self._earliest(limit, now) > now for limit in limits):
            return None
        self._book(limits, now)
        return Booking(tuple(limit.key for limit in limits), now, waited=0.0)

    def _book(self, limits: tuple[RateLimit, ...], at: float) -> None:
        for limit in limits:
            sent = self._sent.setdefault(limit.key, deque())
            sent.append(at)
            while len(sent) > limit.count:
                sent.popleft()

    def done(self, booking: Booking) -> None:
        """The send booked as `booking` has finished (or failed): count it from now."""
        finished = time.monotonic()
        for key in booking.keys:
            sent = self._sent.get(key)
            if not sent:
                continue
            for index in range(len(sent) - 1, -1, -1):
                if sent[index] == booking.at:
                    sent[index] = max(finished, booking.at)
                    break
            # Later bookings were made from the booked time; keep the times in order for `_earliest`.
            ordered = sorted(sent)
            if list(sent) != ordered:
                sent.clear()
                sent.extend(ordered)

    def pause(self, key: str, seconds: float) -> None:
        """Nothing under `key` goes for `seconds` (the platform's retry-after)."""
        until = time.monotonic() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)


@dataclass(frozen=True, slots=True)
class Booking:
    """One send counted against `keys`, booked to start at `at` (monotonic seconds)."""

    keys: tuple[str, ...]
    at: float
    waited: float  # seconds the send waited for its turn


def keys_to_pause(limits: Iterable[RateLimit]) -> list[str]:
    """What a 429 pauses: the limits of the one chat it was about (its per-chat and per-group windows); only a send
    whose limits are all shared (a WhatsApp sender's) pauses those. Other chats behind a shared limit go on."""
    limits = tuple(limits)
    own = [limit.key for limit in limits if not limit.shared]
    return own or [limit.key for limit in limits]
