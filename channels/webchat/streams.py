"""The web chat's open event streams: how many may be open, and what wakes them.

Anyone can mint a session, so the streams one address may hold open, and the streams of the whole process, are
capped (`StreamGate`): one stream more is refused with 429 and a message saying why.

An open stream reads the database only when there may be something for it that it was not handed (`Wakeups`):
- a reply this process's dispatcher commits to its session as sent is handed to it with its text (`after_sent`),
  and shown without a read, when it follows on from what the stream has shown; otherwise (one sent before the
  stream opened, or by another process, in between) the stream reads the replies after the last it has shown;
- at once, when a draft of a reply changes;
- when this process's one watcher, polling every `poll_seconds` for all its open streams together, finds a reply
  to its session newer than the last it has shown (sent by another process: a separate dispatcher); that is one
  query per process per poll, whatever the number of streams;
- and, as a slow fallback, every FALLBACK_POLL_SECONDS on its own (a watcher query that failed, clocks of two
  machines further apart than CLOCK_MARGIN).

A server that stops ends every open stream (`Wakeups.end`), and any opened after: a stream is open for as long as
the page is, so a server waiting for its connections to close would otherwise wait for ever. The page reconnects
(to another server, or to this one once it is back) and resumes after the last reply it was shown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.channel import RequestRejected, SentReply

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 30.0
# How far back each of the watcher's polls looks past the one before, for replies marked sent by another machine
# whose clock runs behind ours.
CLOCK_MARGIN = timedelta(seconds=2)

# Replies handed over to one stream and not yet shown, at most: past that (a page that does not read what it is
# sent), the stream reads them from the database when it looks again.
MAX_HANDED = 100

SentSince = Callable[[datetime], Awaitable[Mapping[str, int]]]


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
class Listener:
    """One open stream: the id of the last reply it has shown (`cursor`), and its bell. A reply this process sent
    is handed to it (`handed`, in the order sent); otherwise `read` says that a reply may have been sent that the
    stream must read from the database."""

    cursor: int
    event: asyncio.Event = field(default_factory=asyncio.Event)
    read: bool = False
    handed: list[SentReply] = field(default_factory=list)
    ended: bool = False  # the server is stopping: the stream ends once it has shown what it has

    def end(self) -> None:
        self.ended = True
        self.event.set()

    def ring(self, *, reply: bool, sent: SentReply | None = None) -> None:
        if sent is not None and not self.read and len(self.handed) < MAX_HANDED:
            self.handed.append(sent)
        elif reply:
            self.read, self.handed = True, []  # (the read finds what was handed too: it is committed)
        self.event.set()

    async def wait(self, timeout: float) -> None:
        """Until the stream is rung (at once if it was since it last looked), or `timeout` seconds."""
        if not self.event.is_set():
            try:
                async with asyncio.timeout(timeout):  # not wait_for: that starts a task for every wait
                    await self.event.wait()
            except TimeoutError:
                pass
        self.event.clear()

    def take(self) -> tuple[list[SentReply], bool]:
        """The replies handed over that follow on from what the stream has shown, in order, and whether it must read
        the database instead (a reply sent that was not handed over, or one between the last shown and one handed:
        sent by another process, or before the stream opened). Each handed reply says which one it follows."""
        handed, self.handed = self.handed, []
        if self.read:
            self.read = False
            return [], True
        shown, cursor = [], self.cursor
        for sent in handed:
            if sent.outbox_id <= cursor:
                continue  # shown already (read from the database while it was being handed over)
            if sent.follows > cursor:
                return [], True
            shown.append(sent)
            cursor = sent.outbox_id
        return shown, False


class Wakeups:
    """The open streams of this process, by session, and the watcher that wakes them for other processes' sends."""

    def __init__(self, *, poll_seconds: float) -> None:
        self.poll_seconds = poll_seconds
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._watcher: asyncio.Task[None] | None = None
        self.ended = False

    def wake(self, session_id: str, *, reply: bool, sent: SentReply | None = None) -> None:
        """Ring the session's streams: `reply`, a reply may have been sent (`sent`: this one, handed over), else
        only a draft changed."""
        for listener in self._listeners.get(session_id, ()):
            listener.ring(reply=reply, sent=sent)

    @contextmanager
    def listen(self, session_id: str, cursor: int, *, sent_since: SentSince) -> Iterator[Listener]:
        """A stream of `session_id`'s that has shown the replies up to `cursor`, rung for as long as it is open (so
        a reply sent while it is busy writing is not missed)."""
        listener = Listener(cursor)
        if self.ended:
            listener.end()
        self._listeners[session_id].add(listener)
        self._start_watcher(sent_since)
        try:
            yield listener
        finally:
            self._listeners[session_id].discard(listener)
            if not self._listeners[session_id]:
                del self._listeners[session_id]

    def _start_watcher(self, sent_since: SentSince) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(sent_since), name="web-chat-watcher")

    async def _watch(self, sent_since: SentSince) -> None:
        """While any stream is open: every `poll_seconds`, one query for the sessions sent a reply since the last,
        each with the newest one's id; a stream that has shown that one is left alone."""
        since = datetime.now(UTC) - CLOCK_MARGIN
        while self._listeners:
            await asyncio.sleep(self.poll_seconds)
            asked = datetime.now(UTC)
            try:
                sessions = await sent_since(since)
            except Exception:
                log.exception("web chat: could not look for replies sent by other processes; trying again")
                continue  # `since` stays: the next poll covers this one's time too
            since = asked - CLOCK_MARGIN
            for session_id, newest in sessions.items():
                for listener in self._listeners.get(session_id, ()):
                    if listener.cursor < newest:
                        listener.ring(reply=True)

    def end(self) -> None:
        """The server is stopping: every open stream ends (once it has shown what it has), and every stream opened
        from now on ends after its first look."""
        self.ended = True
        for listeners in self._listeners.values():
            for listener in listeners:
                listener.end()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
