"""The web chat's open event streams: how many may be open, and what wakes them.

Anyone can mint a session, so the streams one address may hold open, and the streams of the whole process, are
capped (`StreamGate`): one stream more is refused with 429 and a message saying why. An IPv6 address counts as its
/64 (`client_network`): a subscriber is handed a whole /64, 2^64 addresses, and could otherwise take every stream of
the process, an address a stream.

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

What a stream sends (`reply_events`): each reply as an event `reply` whose id is the reply's (a page reconnecting
resumes after it), the reply being written as `draft` (no id: never replayed), and a comment line after
SSE_KEEPALIVE_SECONDS of silence, so proxies keep the connection. Its first read comes before anything is sent: a
stream that cannot read its replies as it opens (the database away) raises CannotRecord before its first chunk, for
the page to be refused (a 503) rather than shown a stream that ends at once; one that cannot read them later ends.

A server that stops ends every open stream (`Wakeups.end`), and any opened after: a stream is open for as long as
the page is, so a server waiting for its connections to close would otherwise wait for ever. The page reconnects
(to another server, or to this one once it is back) and resumes after the last reply it was shown.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter, defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bot.channel import CannotRecord, RequestRejected, SentReply

log = logging.getLogger(__name__)

FALLBACK_POLL_SECONDS = 30.0
SSE_KEEPALIVE_SECONDS = 15.0
REPLIES_A_READ = 100  # replies an event stream reads from the database at a time (until it has caught up)
# How far back each of the watcher's polls looks past the one before, for replies marked sent by another machine
# whose clock runs behind ours.
CLOCK_MARGIN = timedelta(seconds=2)

# Replies handed over to one stream and not yet shown, at most: past that (a page that does not read what it is
# sent), the stream reads them from the database when it looks again.
MAX_HANDED = 100

SentSince = Callable[[datetime], Awaitable[Mapping[str, int]]]


IPV6_NETWORK_PREFIX = 64  # what one subscriber (a home, a phone) is handed


def client_network(address: str) -> str:
    """Where a client's streams are counted: its IPv4 address (an IPv6 one that maps an IPv4 address included), or
    its IPv6 address's /64; what is no address (a Unix socket's peer, "unknown") as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_NETWORK_PREFIX), strict=False))
    return str(ip)


class StreamGate:
    """At most `per_address` open streams from one client address (an IPv6 address's /64), and `total` in all."""

    def __init__(self, *, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self._open: Counter[str] = Counter()

    @property
    def open_count(self) -> int:
        return sum(self._open.values())

    def enter(self, address: str) -> None:
        """Count one more stream from `address`, or refuse it (429)."""
        address = client_network(address)
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
        address = client_network(address)
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


@dataclass(frozen=True, slots=True)
class Feed:
    """What one session's stream shows, as the page shows it, and how it learns that the page left."""

    read: Callable[[int], Awaitable[list[dict[str, Any]]]]  # the replies sent after a reply id (REPLIES_A_READ)
    show: Callable[[SentReply], dict[str, Any]]  # a reply handed over as it was sent
    draft: Callable[[], str | None]  # the reply being written, if any
    show_draft: Callable[[str], dict[str, str]]
    gone: Callable[[], Awaitable[bool]]


async def reply_events(listening: AbstractContextManager[Listener], feed: Feed) -> AsyncGenerator[str, None]:
    """The event stream of one page: what it has not shown yet, then each reply as it is sent, until the page leaves
    or the server stops. The database is read when the listener says a reply may be there that it was not handed
    (or every FALLBACK_POLL_SECONDS); a page far behind is sent the rest at once, a read after another. Its first
    chunk comes after its first read, which raises CannotRecord when it fails; a read failing later ends it."""
    loop = asyncio.get_running_loop()
    with listening as listener:
        shown_draft, read, opened = None, True, False
        handed: list[SentReply] = []
        next_poll = last_said = loop.time()
        while True:
            said = more = False
            if read or loop.time() >= next_poll:
                next_poll = loop.time() + FALLBACK_POLL_SECONDS
                try:
                    replies = await feed.read(listener.cursor)
                except CannotRecord:
                    if not opened:  # the database away as the stream opens: raised, for the page to be told (503)
                        raise
                    return  # away since: the page reconnects, and resumes after the cursor
                more = len(replies) == REPLIES_A_READ  # a page far behind: the rest at once, not at a bell
            else:  # handed over by this process's dispatcher as it sent them: nothing to read back
                replies = [feed.show(sent) for sent in handed]
            if not opened:
                opened = True
                yield "retry: 2000\n\n"
            for reply in replies:
                listener.cursor, said = reply["id"], True
                last_said = loop.time()
                yield f"id: {reply['id']}\nevent: reply\ndata: {orjson.dumps(reply).decode()}\n\n"
            draft = feed.draft()
            if draft is not None and draft != shown_draft:
                last_said, said = loop.time(), True
                yield f"event: draft\ndata: {orjson.dumps(feed.show_draft(draft)).decode()}\n\n"
            shown_draft = draft
            if loop.time() - last_said >= SSE_KEEPALIVE_SECONDS:
                last_said, said = loop.time(), True
                yield ": keep-alive\n\n"
            # A page that left ends the stream: Starlette listens for the disconnect beside it (before ASGI 2.4; from
            # 2.4 on, sending to it raises). Asking costs more than rendering a reply, so it is asked only in a pass
            # that sent nothing.
            if not said and await feed.gone():
                return
            if more:
                read = True
                continue
            if listener.ended:  # the server is stopping: the page reconnects and resumes after the cursor
                return
            await listener.wait(max(0.0, min(next_poll, last_said + SSE_KEEPALIVE_SECONDS) - loop.time()))
            handed, read = listener.take()


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
            except CannotRecord:  # the database away: the host says so in the log, once a minute
                continue  # `since` stays: the next poll covers this one's time too
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
