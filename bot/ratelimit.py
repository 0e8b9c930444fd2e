"""Send pacing for the dispatcher: each `RateLimit` key is a generic cell rate (GCRA) schedule.

A limit of `count` per `seconds` allows a burst of `count` and then one send every `seconds / count`. A 429 pauses a
key for the platform's retry-after, so every chat behind the same global limit waits with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from channels.base import RateLimit


class RateLimiter:
    def __init__(self) -> None:
        self._theoretical_arrival: dict[str, float] = {}
        self._paused_until: dict[str, float] = {}
        self._lock = asyncio.Lock()

    def _reserve(self, limit: RateLimit, now: float) -> float:
        interval = limit.seconds / limit.count
        arrival = max(self._theoretical_arrival.get(limit.key, now), now)
        allowed_at = arrival - limit.seconds + interval
        self._theoretical_arrival[limit.key] = arrival + interval
        return max(0.0, allowed_at - now)

    async def acquire(self, limits: Iterable[RateLimit]) -> None:
        """Wait until a send that counts against every one of `limits` may go."""
        limits = tuple(limits)
        if not limits:
            return
        async with self._lock:
            now = time.monotonic()
            wait = max(self._reserve(limit, now) for limit in limits)
            wait = max(wait, *(self._paused_until.get(limit.key, 0.0) - now for limit in limits))
        if wait > 0:
            await asyncio.sleep(wait)

    def pause(self, key: str, seconds: float) -> None:
        """Nothing under `key` goes for `seconds` (the platform's retry-after)."""
        until = time.monotonic() + seconds
        self._paused_until[key] = max(self._paused_until.get(key, 0.0), until)
