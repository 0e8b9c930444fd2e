"""Notices between the processes that share a PostgreSQL database: LISTEN/NOTIFY, so one process wakes another at
once instead of at its next poll.

A process tells others about work it leaves to them (`tell(topic, item)`: a message recorded that another process
processes, replies queued that another process sends, a reply sent that another process shows); each process listens,
on one connection of its own, to the topics it has a handler for, and calls the handler with each item another
process told. What a process tells itself it learns in-process, so its own notices are skipped.

A notice is a hint, never the record: it is sent after the work it speaks of has committed, batched (the items told
within one pass of the event loop go in one NOTIFY per topic), and may be lost (a process that stops between its
commit and its notice; a listening connection that is down). Whoever listens still looks at the database on its
own now and then (the worker's and the dispatcher's polls), so a lost notice delays, never drops, the work.

On SQLite there is nothing to listen to: the processes of one machine share the file and find each other's work by
those polls; within a process the wake-ups are in-process events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from storage import postgres_statements

log = logging.getLogger(__name__)

PREFIX = "lessonbot_"
MAX_PAYLOAD = 7000  # bytes of one NOTIFY's payload (PostgreSQL takes up to 8000)
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after a lost connection, waits before trying again

Handler = Callable[[str], None]


def conninfo(url: str) -> str:
    """A libpq connection string from a SQLAlchemy URL (postgresql://, postgresql+psycopg://), with the connect
    timeout and the keepalives every connection of ours has (storage.postgres_statements), without our answer bound
    (`answer_bound`), which is no libpq parameter."""
    parsed = make_url(url)
    bounds = {key: str(value) for key, value in postgres_statements.connect_bounds(parsed.query).items()}
    parsed = parsed.difference_update_query([postgres_statements.ANSWER_TIMEOUT]).update_query_dict(bounds)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def answer_bound(url: str) -> float | None:
    """The seconds a round trip of a connection to `url` waits for its answer (storage.postgres_statements)."""
    return postgres_statements.answer_bound(make_url(url).query.get(postgres_statements.ANSWER_TIMEOUT))


class Notices:
    """This process's notices to others and from them (see the module's text). `sender` names this process; `handlers`
    are the topics it listens to, each with what to call for one item."""

    def __init__(
        self,
        url: str,
        *,
        sender: str,
        handlers: Mapping[str, Handler],
        on_listening: Callable[[], None] = lambda: None,
    ) -> None:
        self._conninfo = conninfo(url)
        self._bound = answer_bound(url)
        self._sender = sender
        self._handlers = dict(handlers)
        self._on_listening = on_listening  # called each time this process starts listening (again)
        self._told: dict[str, dict[str, None]] = defaultdict(dict)  # per topic, the items to send (in order, once)
        self._sending: asyncio.Task[None] | None = None
        self._speaker: psycopg.AsyncConnection[Any] | None = None
        self.listening = asyncio.Event()  # set while the listening connection is up

    # telling ------------------------------------------------------------------------------------------------------

    def tell(self, topic: str, item: str) -> None:
        """Tell the other processes about `item` (sent with everything told in this pass of the event loop)."""
        self._told[topic][item] = None
        if self._sending is None or self._sending.done():
            self._sending = asyncio.get_running_loop().create_task(self._send(), name="notices-send")

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the rest of this pass's items join these
        while self._told:
            told, self._told = self._told, defaultdict(dict)
            try:
                speaker = await self._speaking()
                for topic, items in told.items():
                    for payload in _payloads(self._sender, list(items)):
                        await speaker.execute("SELECT pg_notify(%s, %s)", (PREFIX + topic, payload))
            except Exception as exc:  # the others find the work at their next poll
                log.warning("could not notify other processes", extra={"error": str(exc)[:300]})
                await self._drop_speaker()
                return

    async def _speaking(self) -> psycopg.AsyncConnection[Any]:
        if self._speaker is None or self._speaker.closed:
            self._speaker = await self._connect()
        return self._speaker

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await postgres_statements.BoundedAsyncConnection.connect(
            self._conninfo, autocommit=True, answer_timeout=self._bound or 0
        )

    async def _drop_speaker(self) -> None:
        speaker, self._speaker = self._speaker, None
        if speaker is not None:
            with contextlib.suppress(Exception):
                await speaker.close()

    # listening ----------------------------------------------------------------------------------------------------

    async def listen(self) -> None:
        """Listen until cancelled; a lost connection is opened again (after a pause growing to 30 s). A connection
        whose server stops answering is silent as an idle one is: after each answer bound's worth of waiting for
        notices it is asked a `SELECT 1`, which fails within the bound if nobody answers."""
        if not self._handlers:
            return
        failures = 0
        while True:
            try:
                async with await self._connect() as connection:
                    for topic in self._handlers:
                        await connection.execute(f'LISTEN "{PREFIX}{topic}"')  # (our own topic names)
                    self.listening.set()
                    self._on_listening()
                    failures = 0
                    while True:
                        async for notice in connection.notifies(timeout=self._bound):
                            self._heard(notice.channel, notice.payload)
                        await connection.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "listening for other processes' notices failed; polls cover meanwhile",
                    extra={"error": str(exc)[:300]},
                )
            finally:
                self.listening.clear()
            await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
            failures += 1

    def _heard(self, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel.removeprefix(PREFIX))
        try:
            sender, items = json.loads(payload)
        except ValueError:
            return
        if handler is None or sender == self._sender:
            return
        for item in items:
            try:
                handler(str(item))
            except Exception:
                log.exception("handling a notice failed", extra={"topic": channel})

    async def close(self) -> None:
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)
        await self._drop_speaker()


def _payloads(sender: str, items: list[str]) -> list[str]:
    """The items in as few NOTIFY payloads as fit: each `[sender, [item, …]]` in JSON."""
    payloads: list[str] = []
    batch: list[str] = []
    size = len(sender) + 16
    for item in items:
        length = len(json.dumps(item)) + 1
        if batch and size + length > MAX_PAYLOAD:
            payloads.append(json.dumps([sender, batch]))
            batch, size = [], len(sender) + 16
        batch.append(item)
        size += length
    if batch:
        payloads.append(json.dumps([sender, batch]))
    return payloads
