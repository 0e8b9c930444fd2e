"""The web chat's open event streams: how many may be open, and what wakes them.

Anyone can mint a session, so the streams one address may hold open, and the streams of the whole process, are
capped (`StreamGate`): one stream more is refused with 429 and a message saying why.

An open stream reads the database only when there may be something for it (`Wakeups`):
- at once, when this process's dispatcher commits a reply to its session as sent (`after_sent`), or a draft of one
  changes;
- when this process's one watcher, polling every `poll_seconds` for all its open streams together, finds a reply
  to its session sent by another process (a separate dispatcher); that is one query per process per poll, whatever
  the number of streams;
- and, as a slow fallback, every FALLBACK_POLL_SECONDS on its own (a watcher query that failed, clocks of two
  machines further apart than CLOCK_MARGIN).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.channel import RequestRejected

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 30.0
# How far back each of the watcher's polls looks past the one before, for replies marked sent by another machine
# whose clock runs behind ours.
CLOCK_MARGIN = timedelta(seconds=2)

SentSince = Callable[[datetime], Awaitable[Collection[str]]]


class StreamGate:
    """At most `per_address` open streams from one client address, and `total` in all."""

    def __init__(self, *, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._open: Counter[str] = Counter()

    @property
    def open_count(self) -> int:
        return sum(self._open.values())

    def enter(self, address: str) -> None:
        """Count one more stream from `address`, or refuse it (429)."""
        if self._open[address] >= self.per_address:
            raise RequestRejected(
                429,
                f"Too many open chat pages from your address (the limit is {self.per_address}); "
                "close some tabs and reload this one.",
            )
        if self.open_count >= self.total:
            raise RequestRejected(
                429, "The chat is very busy right now and can take no more open pages; please try again in a minute."
            )
        self._open[address] += 1

    def leave(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


@dataclass(eq=False, slots=True)
class Waiter:
    """One open stream's bell: `reply` says whether a reply may have been sent (else only a draft changed)."""

    event: asyncio.Event
    reply: bool = False


class Wakeups:
    """The open streams of this process, by session, and the watcher that wakes them for other processes' sends."""

    def __init__(self, *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        self._watcher: asyncio.Task[None] | None = None

    def wake(self, session_id: str, *, reply: bool) -> None:
        for waiter in self._waiters.get(session_id, ()):
            waiter.reply = waiter.reply or reply
            waiter.event.set()

    async def wait(self, session_id: str, timeout: float, *, sent_since: SentSince) -> bool:
        """Return when this session's stream is woken, or after `timeout`; True if a reply may have been sent."""
        waiter = Waiter(asyncio.Event())
        self._waiters[session_id].add(waiter)
        self._start_watcher(sent_since)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: that starts a task for every wait
                await waiter.event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters[session_id].discard(waiter)
            if not self._waiters[session_id]:
                del self._waiters[session_id]
        return waiter.reply

    def _start_watcher(self, sent_since: SentSince) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(sent_since), name="web-chat-watcher")

    async def _watch(self, sent_since: SentSince) -> None:
        """While any stream is open: every `poll_seconds`, one query for the sessions sent a reply since the last."""
        since = datetime.now(UTC) - CLOCK_MARGIN
        while self._waiters:
            await asyncio.sleep(self.poll_seconds)
            asked = datetime.now(UTC)
            try:
                sessions = await sent_since(since)
            except Exception:
                log.exception("web chat: could not look for replies sent by other processes; trying again")
                continue  # `since` stays: the next poll covers this one's time too
            since = asked - CLOCK_MARGIN
            for session_id in sessions:
                self.wake(session_id, reply=True)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
