"""Send pacing for the dispatcher: a sliding window per `RateLimit` key, strict at the platform's end.

A limit of `count` per `seconds` means what the platforms publish: in no window of `seconds` do more than `count`
sends under that key arrive (Telegram's 30 per second, 20 per minute in a group). The platform counts a send when it
arrives, which is some time between the moment we start it and the moment its answer is back. So a send is counted
from when it starts until `seconds` after it *finished*: a send may start only while fewer than `count` others under
its key are still going or finished less than `seconds` ago (`start`). Whatever the trips' lengths and jitter, no
window at the platform's end can then hold more than `count` arrivals: of the sends arriving in one window, the one
started last started when every other had already started, and each of those finished after its arrival, within the
window, so was counted then. No margin is added to the windows.

Sends are paced in two steps. `acquire` books a send its place (the schedule): per-second limits are spread evenly
over the window (80 a second: one every 12.5 ms) instead of going out in a burst; once `count` places are booked
within a window, a place is worked out from when the send `count` places earlier finished (or is expected to: its
start and the usual trip), so the sends keep the spacing of the window before and one slow send delays only the
one a window after it. Longer windows
(Telegram's 20 a minute in a group) keep their burst: a lesson's three messages to a group go out at once. A send
is booked under all its keys at once, at the latest of their places, but only once its place under its own chat's
keys (those not `shared`) is within `ahead`: booked earlier, a group's 21st message in a minute would hold a place
under the bot's shared 30 a second some 40 s ahead, and every send after it under that limit, other chats' included,
would be placed after it. The dispatcher is handed the booking a little before its place (`ahead`), claims the reply
meanwhile, then waits at `start`, which enforces the bound above, and calls `done` when the platform has answered.
A 429 pauses the chat it was about for the platform's retry-after (see `keys_to_pause`).

Two lanes on a shared limit (a WhatsApp sender's, a bot's global one): a send someone is waiting for (`INTERACTIVE`,
a reply to what a person just wrote) is booked at once, in the next free place; a `BULK` send (a broadcast, a lesson
at the learner's hour) waits in line, first come first served, and is booked only once the next place is within its
`ahead` of now. So bulk sends hold at most `ahead` seconds of places, a reply asked for behind a broadcast's backlog
takes the place after those, and a place once booked is never taken back. A send waiting for its own chat's place
waits outside the line, so it holds up no one. A bulk send asked under a `key` (the dispatcher's: its conversation)
and not booked yet moves to the reply lane when its person writes (`promote`): it leaves the line and is booked at
once, in the next free place, as a reply is; the others keep their order. Lanes choose the order of the places only:
the bound at `start` is the same for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from bisect import insort
from collections import deque
from collections.abc import AsyncIterator, Hashable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from bot.channel import RateLimit

log = logging.getLogger(__name__)

SPREAD_UP_TO_SECONDS = 1.0  # limits with windows up to this long are spread evenly over the window
# A send started this long ago and never reported finished (`done`) is taken to have ended then: a caller that lost
# its booking must not hold a key's place for ever. Far beyond any platform call's timeout.
STALE_SECONDS = 300.0
_TRIP_WEIGHT = 0.2  # the weight of the latest trip in the usual trip (an exponential moving average)
_SWEEP_EVERY = 4096  # sends between sweeps of the keys nothing is going on under (a key per chat adds up)


class Lane(IntEnum):
    """Which line a send waits in: a person waiting for it goes before what the bot sends on its own."""

    INTERACTIVE = 0  # a reply to a message a person just sent
    BULK = 1  # the bot speaking on its own: broadcasts, lessons at the learner's hour, nudges


@dataclass(eq=False, slots=True)
class _Slot:
    """One send's place under one key."""

    due: float  # when the schedule put its start
    started: float | None = None
    ended: float | None = None


@dataclass(eq=False, slots=True)
class _Key:
    """The sends under one key: the schedule's last places, and what the bound counts."""

    places: deque[_Slot] = field(default_factory=deque)  # the last `count` booked, in booking order
    going: set[_Slot] = field(default_factory=set)  # started, not finished
    ends: list[float] = field(default_factory=list)  # when the latest finished sends finished (the last `count`)
    trip: float = 0.0  # the usual time from start to finish
    paused_until: float = 0.0
    window: float = 0.0  # the limit's `seconds`


@dataclass(eq=False, slots=True)
class Booking:
    """One send counted against `limits`; its start scheduled at `at` (monotonic seconds)."""

    limits: tuple[RateLimit, ...]
    places: tuple[_Slot, ...]
    at: float
    waited: float  # seconds the send waited for its place
    lane: Lane = Lane.INTERACTIVE
    started: bool = False
    finished: bool = False


class RateLimiter:
    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._ended = asyncio.Event()  # set (and replaced) when a send finishes: `start` may be waiting for one
        self._finished = 0
        # BULK sends waiting to be booked, per shared key, first come first served; the first one watches the clock
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}
        self._promotable: dict[Hashable, asyncio.Future[None]] = {}  # BULK sends not booked yet, by key: set by promote

    def _key(self, key: str, window: float = 0.0) -> _Key:
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key(window=window)
        return state

    # the schedule -----------------------------------------------------------------------------------------------------

    def _place(self, limit: RateLimit, now: float) -> float:
        """When the next send under `limit` is expected to be able to start, from the places already booked."""
        state = self._keys.get(limit.key)
        if state is None:
            return now
        at = max(now, state.paused_until)
        places = state.places
        if len(places) >= limit.count:
            window = min(self._expected_end(place, state) for place in places) + limit.seconds
            if window > at:
                # The window is full: each send follows the one `count` places earlier, so the sends keep the
                # spacing of the window before. (Spaced from the place before as well, one send's delay would be
                # passed on to every send after it.)
                return window
        if places and limit.seconds <= SPREAD_UP_TO_SECONDS:
            at = max(at, places[-1].due + limit.seconds / limit.count)
        return at

    @staticmethod
    def _expected_end(place: _Slot, state: _Key) -> float:
        if place.ended is not None:
            return place.ended
        return max(place.due, place.started or place.due) + state.trip

    def _next_place(self, limits: Iterable[RateLimit], now: float) -> float:
        """The next place under all of `limits` at once: the latest of theirs."""
        return max((self._place(limit, now) for limit in limits), default=now)

    def _book(self, limits: tuple[RateLimit, ...], at: float, asked: float, lane: Lane) -> Booking:
        places = []
        for limit in limits:
            state = self._key(limit.key, limit.seconds)
            state.window = limit.seconds
            place = _Slot(at)
            state.places.append(place)
            while len(state.places) > limit.count:
                state.places.popleft()
            places.append(place)
        return Booking(limits, tuple(places), at, waited=max(0.0, at - asked), lane=lane)

    # the bound --------------------------------------------------------------------------------------------------------

    def _may_start(self, limit: RateLimit, now: float) -> float:
        """The earliest time a send under `limit` may start without breaking the bound: `math.inf` while `count`
        sends are still going (one of them must finish first)."""
        state = self._keys.get(limit.key)
        if state is None:
            return now
        at = max(now, state.paused_until)
        going = state.going
        if going:
            stale = [place for place in going if place.started is not None and place.started < now - STALE_SECONDS]
            for place in stale:
                log.warning("a send under %s never reported finishing; counted as finished", limit.key)
                self._finish(state, place, limit, (place.started or now) + STALE_SECONDS)
        room = limit.count - len(going)  # finished sends that may still lie within one window
        if room <= 0:
            return math.inf
        ends = state.ends
        if len(ends) >= room:
            at = max(at, ends[-room] + limit.seconds)
        return at

    async def start(self, booking: Booking) -> None:
        """Wait for the booking's place and for the bound (fewer than `count` sends under each key going, or finished
        within the last `seconds`), then count the send as going. Call it right before the send; once per booking."""
        if booking.started:
            return
        while True:
            now = time.monotonic()
            at = max([booking.at, *(self._may_start(limit, now) for limit in booking.limits)])
            if at <= now:
                break
            if at == math.inf:
                await self._ended.wait()
            else:
                await asyncio.sleep(at - now)  # a pause meanwhile can only make it later: looked at again
        self._begin(booking, now)

    def _begin(self, booking: Booking, now: float) -> None:
        for limit, place in zip(booking.limits, booking.places, strict=True):
            place.started = now
            self._key(limit.key, limit.seconds).going.add(place)
        booking.started = True

    # booking ----------------------------------------------------------------------------------------------------------

    async def acquire(
        self,
        limits: Iterable[RateLimit],
        *,
        ahead: float = 0.0,
        lane: Lane = Lane.INTERACTIVE,
        key: Hashable | None = None,
    ) -> Booking:
        """Book a send that counts against every one of `limits`, and wait for its place.

        With `ahead` 0 the send is counted as started when this returns (the bound is met): send it at once. With
        `ahead` > 0 this returns up to that many seconds before the place comes, the send not yet counted: prepare
        it (claim its row), then `await start(booking)` right before it goes. Either way, call `done` with the
        booking once the send has finished, failed, or will not happen. Nothing is booked before the next place
        under the send's own chat's limits (those not `shared`) is within `ahead`, so a chat that must wait holds no
        place under a shared limit meanwhile. A `BULK` send under a shared limit is then booked only once its place
        is within `ahead` (in line behind the bulk sends asked before it), so an `INTERACTIVE` one asked meanwhile
        is booked before it; asked under a `key`, `promote(key)` books it as `INTERACTIVE` while it waits."""
        limits = tuple(limits)
        asked = time.monotonic()
        if not limits:
            return Booking((), (), asked, waited=0.0, started=True, lane=lane)
        own = tuple(limit for limit in limits if not limit.shared)
        line = _line_of(limits) if lane is Lane.BULK else None
        promoted: asyncio.Future[None] | None = None
        if line is not None and key is not None:
            promoted = self._promotable[key] = asyncio.get_running_loop().create_future()
        try:
            while True:
                await self._near(own, ahead)
                if promoted is not None and promoted.done():
                    line, lane = None, Lane.INTERACTIVE
                if line is None:
                    booking = self._book(limits, self._next_place(limits, time.monotonic()), asked, lane)
                    break
                async with self._in_line(line, limits, ahead, promoted) as first:
                    now = time.monotonic()
                    # (its chat paused meanwhile: back to waiting for it; promoted: booked as a reply)
                    if first and not self._within(own, ahead, now):
                        booking = self._book(limits, self._next_place(limits, now), asked, lane)
                        break
        finally:
            if promoted is not None and self._promotable.get(key) is promoted:
                del self._promotable[key]
        now = time.monotonic()
        if booking.at - ahead > now:
            await asyncio.sleep(booking.at - ahead - now)
        if not ahead:
            await self.start(booking)
        return booking

    def promote(self, key: Hashable) -> None:
        """The `BULK` send asked under `key` and not booked yet, if any, is booked as `INTERACTIVE`: at once, in the
        next free place (its person wrote while it waited in the bulk line). A place already booked stays as it is."""
        promoted = self._promotable.get(key)
        if promoted is not None and not promoted.done():
            promoted.set_result(None)

    def _within(self, limits: Iterable[RateLimit], ahead: float, now: float) -> float:
        """0 if the next place under each of `limits` is within `ahead` of `now`; else how long until it is."""
        return max(0.0, self._next_place(limits, now) - ahead - now)

    async def _near(self, limits: tuple[RateLimit, ...], ahead: float) -> None:
        """Wait until the next place under each of `limits` is within `ahead` of now."""
        while wait := self._within(limits, ahead, time.monotonic()):
            await asyncio.sleep(wait)  # places booked or a pause meanwhile make it later: looked at again

    @contextlib.asynccontextmanager
    async def _in_line(
        self, line: str, limits: tuple[RateLimit, ...], ahead: float, promoted: asyncio.Future[None] | None
    ) -> AsyncIterator[bool]:
        """Wait in the bulk line of `line` until first in it and the next place under the shared limits is within
        `ahead` (True: the caller books in the body, then the next in line takes over), or until `promoted` is set
        (False: the send has left the line)."""
        waiting = self._lines.setdefault(line, deque())
        me = asyncio.get_running_loop().create_future()
        waiting.append(me)
        shared = tuple(limit for limit in limits if limit.shared)
        try:
            if waiting[0] is not me:
                await _first_of(me, promoted)  # `me` is set when the one before leaves the line
            while not (promoted is not None and promoted.done()):
                wait = self._within(shared, ahead, time.monotonic())
                if not wait:
                    break
                await _first_of(promoted, timeout=wait)  # places booked or a pause meanwhile: looked at again
            yield not (promoted is not None and promoted.done())
        finally:
            waiting.remove(me)
            if waiting:
                if not waiting[0].done():
                    waiting[0].set_result(None)
            else:
                del self._lines[line]

    def try_acquire(
        self,
        limits: Iterable[RateLimit],
        *,
        ahead: float = 0.0,
        lane: Lane = Lane.INTERACTIVE,
        start: bool = True,
    ) -> Booking | None:
        """Book a send against every one of `limits` if its place comes within `ahead` seconds (and, for a `BULK`
        send, no other waits in its line); None (nothing booked) if it would wait longer. If it may go now (its
        place has come, the bound met) it is counted as started, unless `start` is False (with `ahead` > 0: booked
        before it is known there is anything to send, and `done` then gives the place back); otherwise `await
        start(booking)` right before it goes. Call `done` as after `acquire`."""
        limits = tuple(limits)
        now = time.monotonic()
        if not limits:
            return Booking((), (), now, waited=0.0, started=True, lane=lane)
        if lane is Lane.BULK and (line := _line_of(limits)) is not None and line in self._lines:
            return None
        at = self._next_place(limits, now)
        if at > now + ahead:
            return None
        booking = self._book(limits, at, now, lane)
        if at <= now and all(self._may_start(limit, now) <= now for limit in limits):
            if start or not ahead:
                self._begin(booking, now)
        elif not ahead:
            self.done(booking)  # the bound would make it wait: nothing booked
            return None
        return booking

    def done(self, booking: Booking) -> None:
        """The send booked as `booking` has finished (or failed): counted from now until a window has passed. A
        booking never started gives its place back."""
        if booking.finished:
            return
        booking.finished = True
        now = time.monotonic()
        for limit, place in zip(booking.limits, booking.places, strict=True):
            state = self._keys.get(limit.key)
            if state is None:
                continue
            if not booking.started:
                if place in state.places:
                    state.places.remove(place)
                continue
            self._finish(state, place, limit, now)
        if booking.started and booking.limits:
            self._ended.set()
            self._ended = asyncio.Event()
            self._finished += 1
            if self._finished % _SWEEP_EVERY == 0:
                self._sweep(now)

    def _finish(self, state: _Key, place: _Slot, limit: RateLimit, at: float) -> None:
        place.ended = at
        state.going.discard(place)
        insort(state.ends, at)
        del state.ends[: -limit.count]
        if place.started is not None:
            state.trip += _TRIP_WEIGHT * (at - place.started - state.trip)

    def _sweep(self, now: float) -> None:
        """Forget the keys nothing is going under: none started or booked ahead, no pause, none finished within the
        key's window (a key per chat adds up)."""
        idle = [
            key
            for key, state in self._keys.items()
            if not state.going
            and state.paused_until <= now
            and all(place.due + state.trip < now - state.window for place in state.places)
            and (not state.ends or state.ends[-1] < now - state.window)
        ]
        for key in idle:
            del self._keys[key]

    def pause(self, key: str, seconds: float) -> None:
        """Nothing under `key` goes for `seconds` (the platform's retry-after)."""
        state = self._key(key)
        state.paused_until = max(state.paused_until, time.monotonic() + seconds)


class Slots:
    """At most `count` holders at once (the dispatcher's sends in flight). A waiting `INTERACTIVE` holder gets the
    next free place before the waiting `BULK` ones, and `kept` places are for `INTERACTIVE` ones only, so a reply
    finds one at once however many bulk sends are under way. Each lane first come first served. A holder waiting
    under a `key` can be moved up to the `INTERACTIVE` lane while it waits (`promote`)."""

    def __init__(self, count: int, *, kept: int = 0) -> None:
        self._free = count
        self._kept = min(kept, count - 1)
        self._waiting: dict[Lane, deque[asyncio.Future[None]]] = {lane: deque() for lane in Lane}
        self._keyed: dict[Hashable, tuple[Lane, asyncio.Future[None]]] = {}  # waiting holders by key, with their lane

    def _may_take(self, lane: Lane) -> bool:
        return self._free > (0 if lane is Lane.INTERACTIVE else self._kept)

    @contextlib.asynccontextmanager
    async def held(self, lane: Lane, *, key: Hashable | None = None) -> AsyncIterator[None]:
        if self._may_take(lane) and not any(self._waiting[earlier] for earlier in Lane if earlier <= lane):
            self._free -= 1
        else:
            handed = asyncio.get_running_loop().create_future()
            self._waiting[lane].append(handed)
            if key is not None:
                self._keyed[key] = (lane, handed)
            try:
                await handed
            except BaseException:
                if handed.done() and not handed.cancelled():
                    self._release()  # handed a place as it was cancelled: the next one gets it
                else:
                    for waiting in self._waiting.values():
                        if handed in waiting:
                            waiting.remove(handed)
                raise
            finally:
                if key is not None and self._keyed.get(key, (None, None))[1] is handed:
                    del self._keyed[key]
        try:
            yield
        finally:
            self._release()

    def promote(self, key: Hashable) -> None:
        """The holder waiting under `key`, if any, moves to the `INTERACTIVE` lane (behind those already there): a
        person wrote while their conversation waited as bulk."""
        found = self._keyed.get(key)
        if found is None or found[0] is Lane.INTERACTIVE or found[1].done():
            return
        lane, handed = found
        self._waiting[lane].remove(handed)
        self._waiting[Lane.INTERACTIVE].append(handed)
        self._keyed[key] = (Lane.INTERACTIVE, handed)
        self._hand_out()

    def _release(self) -> None:
        self._free += 1
        self._hand_out()

    def _hand_out(self) -> None:
        for lane in Lane:  # INTERACTIVE first
            waiting = self._waiting[lane]
            while waiting and self._may_take(lane):
                handed = waiting.popleft()
                if not handed.done():
                    self._free -= 1
                    handed.set_result(None)


async def _first_of(*futures: asyncio.Future[None] | None, timeout: float | None = None) -> None:
    """Wait until one of `futures` (None: none) is done, or `timeout` seconds have passed."""
    waiting = [future for future in futures if future is not None]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    elif timeout is not None:
        await asyncio.sleep(timeout)


def _line_of(limits: tuple[RateLimit, ...]) -> str | None:
    """The bulk line a send waits in: its shared limits' (None: under its own chat's limits only, it has no one to
    make way for)."""
    shared = [limit.key for limit in limits if limit.shared]
    return " ".join(shared) if shared else None


def keys_to_pause(limits: Iterable[RateLimit]) -> list[str]:
    """What a 429 pauses: the limits of the one chat it was about (its per-chat and per-group windows); only a send
    whose limits are all shared (a WhatsApp sender's) pauses those. Other chats behind a shared limit go on."""
    limits = tuple(limits)
    own = [limit.key for limit in limits if not limit.shared]
    return own or [limit.key for limit in limits]
