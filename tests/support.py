"""Test helpers: a platform stand-in that records what it is asked to send, and a transcript driver; real server
processes (bench/processes.py); the app in-process; fixtures that run the platform stand-ins (standins/).

`RecordingChannel` plays an outside platform at its edge (it is handed rendered replies, as a platform API would
be, and reads their text as the terminal shows it); everything between `Transcript.say` and the recorded reply is the
real pipeline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from bot.channel import Delivery, RateLimit
from bot.core import Lessonbot
from bot.messages import InboundMessage, Reply, Text
from channels.markdown import PLAIN, render, with_links


@dataclass
class RecordingChannel:
    name: str = "test"
    limits: tuple[RateLimit, ...] = ()
    sent: dict[str, list[Reply]] = field(default_factory=lambda: defaultdict(list))
    # scripted failures: each send pops the next one (an exception to raise) until the list is empty
    failures: list[Exception] = field(default_factory=list)

    async def send(self, delivery: Delivery) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent[delivery.chat_id].append(delivery.reply)
        return f"{self.name}-{delivery.outbox_id}"

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return self.limits

    def texts(self, chat_id: str) -> list[str]:
        """The text replies sent to a chat, as a person reads them (the light Markdown rendered as plain text)."""
        return [shown(reply) for reply in self.sent[chat_id] if isinstance(reply, Text)]


def shown(reply: Text) -> str:
    return render(with_links(reply.text, reply.links), PLAIN)


def message(text: str, *, chat: str = "ann", sender: str | None = None, channel: str = "test",
            platform_id: str | None = None, choice: str | None = None) -> InboundMessage:
    return InboundMessage(
        channel=channel,
        platform_id=platform_id or uuid.uuid4().hex,
        chat_id=chat,
        sender_id=sender or chat,
        text=text,
        choice=choice,
    )


@dataclass
class Transcript:
    """Say something as one person and get back exactly the replies it caused."""

    bot: Lessonbot
    channel: RecordingChannel
    chat: str = "ann"
    sender: str | None = None  # a member of the group chat `chat`; None: the chat's own person

    async def say(self, text: str, *, choice: str | None = None) -> list[str]:
        before = len(self.channel.sent[self.chat])
        await self.bot.receive(message(text, chat=self.chat, sender=self.sender, channel=self.channel.name,
                                       choice=choice))
        await self.bot.settle()
        return [shown(r) for r in self.channel.sent[self.chat][before:] if isinstance(r, Text)]


# Real server processes ---------------------------------------------------------------------------------------------

import os  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

from bench.processes import (  # noqa: E402
    LESSONBOT,
    STARTUP_SECONDS,
    ServerFailed,
    ServerProcess,
    free_port,
    start_process,
)


def server_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TWILIO_", "SLACK_", "OPENAI_"))}
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY="test-secret-key-0123456789",
        LOG_FORMAT="text", WORKER_POLL_SECONDS="0.2", **extra,
    )
    return env


def serve(env: dict[str, str], *args: str) -> ServerProcess:
    """`lessonbot serve` in a child process (its log in DATA_DIR), returned once /readyz answers 200. A free port is
    only looked up, so another socket may take it before the child binds it (on a busy machine, one of the many
    outgoing connections): the child is started again on another port then."""
    data_dir = Path(env["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        port = free_port()
        server = start_process(
            "lessonbot serve", [*LESSONBOT, "serve", *args], data_dir, env, port=port,
            log_path=data_dir / f"server-{port}.log",
        )
        try:
            server.wait_ready_blocking("/readyz", timeout=STARTUP_SECONDS)  # a cold start on a busy machine is slow
            return server
        except ServerFailed as failed:
            server.stop()
            if "address already in use" not in str(failed) or attempt == 2:
                raise
    raise AssertionError("unreachable")


# The app in-process --------------------------------------------------------------------------------------------------

from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def running(settings, channels=None, *, clock: bool = True) -> AsyncIterator[tuple[httpx.AsyncClient, Lessonbot]]:
    """The app as `lessonbot serve` builds it (channels from the settings unless given), and a client to post with.
    `clock=False`: without the scheduler's clock, for a test that runs the jobs itself at the times it chooses."""
    from bot.app import create_app

    app = create_app(settings, channels=channels)
    if not clock:
        app.state.lessonbot.leader_work.clear()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test") as client:
            yield client, app.state.lessonbot


# The platform stand-ins: each running for one test (import the fixture into a test module or conftest), and the
# app driven by Twilio's webhooks ------------------------------------------------------------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from standins.openai import OpenAIStandIn  # noqa: E402
from standins.telegram import TelegramStandIn  # noqa: E402
from standins.twilio import PUBLIC_BASE_URL, SENDER, TwilioStandIn, TwilioWebhooks  # noqa: E402


@pytest.fixture
async def standin() -> AsyncIterator[TelegramStandIn]:
    """The Telegram Bot API stand-in, running for one test."""
    async with TelegramStandIn() as server:
        yield server


@pytest.fixture
def openai() -> Iterator[OpenAIStandIn]:
    """The OpenAI-compatible server stand-in, running for one test."""
    server = OpenAIStandIn().start()
    yield server
    server.stop()


@asynccontextmanager
async def whatsapp_app(
    settings, api: TwilioStandIn, **overrides: object
) -> AsyncIterator[tuple[object, TwilioWebhooks]]:
    """The real app with the WhatsApp channel on, its Twilio client pointed at `api`; Twilio's webhooks drive it."""
    from bot.app import create_app

    configured = settings.model_copy(
        update={
            "twilio_account_sid": api.account_sid,
            "twilio_auth_token": api.auth_token,
            "twilio_whatsapp_from": SENDER,
            "twilio_api_base_url": api.base_url,
            "public_base_url": PUBLIC_BASE_URL,
            **overrides,
        }
    )
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_BASE_URL) as client:
            yield app, TwilioWebhooks(client, auth_token=api.auth_token)


class SilentProxy:
    """A TCP proxy to PostgreSQL that goes silent on demand (`silence()`): from then on nothing goes either way, and
    every socket stays open (a new connection too: it is taken, and never answered), as a frozen server or a proxy
    whose far side is gone; `resume()` lets new connections through again. `async with SilentProxy.to(url)`."""

    def __init__(self, host: str, port: int) -> None:
        self._to = (host, port)
        self.silent = False
        self._held = asyncio.Event()  # where a silent pipe waits (set on `resume`)
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @classmethod
    @asynccontextmanager
    async def to(cls, url: str) -> AsyncIterator[SilentProxy]:
        parsed = make_url(url)
        proxy = cls(parsed.host or "127.0.0.1", parsed.port or 5432)
        proxy._server = await asyncio.start_server(proxy._pair, "127.0.0.1", 0)
        proxy.port = proxy._server.sockets[0].getsockname()[1]
        try:
            yield proxy
        finally:
            await proxy._close()

    def url(self, url: str, **query: str) -> str:
        """`url` through this proxy, with these parameters added to its query."""
        through = make_url(url).set(host="127.0.0.1", port=self.port).update_query_dict(query)
        return through.render_as_string(hide_password=False)

    def silence(self) -> None:
        self.silent = True
        self._held = asyncio.Event() if self._held.is_set() else self._held

    def resume(self) -> None:
        """New connections go through; the silent ones take up what they held (their far end has mostly let go)."""
        self.silent = False
        self._held.set()

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far_reader, far_writer = await asyncio.open_connection(*self._to)
        self._writers += [writer, far_writer]
        for source, sink in ((reader, far_writer), (far_reader, writer)):
            pipe = asyncio.get_running_loop().create_task(self._pipe(source, sink))
            self._pipes.add(pipe)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if self.silent:
                await self._held.wait()
            sink.write(data)
            await sink.drain()

    async def _close(self) -> None:
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()


# Statements at the database's edge ------------------------------------------------------------------------------------

import sqlite3  # noqa: E402
import struct  # noqa: E402

_SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST = 80877103, 80877104, 80877102


@dataclass
class Sent:
    """What a database was sent, counted where it arrives: `statements` run (on PostgreSQL each Execute and each
    simple Query, BEGIN and COMMIT among them; on SQLite each statement its library ran) and, on PostgreSQL,
    `round_trips` (each Sync and each simple Query: a write the client then waits for the answer to)."""

    statements: int = 0
    round_trips: int = 0

    def taken(self) -> tuple[int, int]:
        """The counts so far, and both back to zero."""
        counted = (self.statements, self.round_trips)
        self.statements = self.round_trips = 0
        return counted


class _Frontend:
    """Reads one PostgreSQL client's side of the protocol as it passes: the untyped opening messages (SSL and GSS
    requests, the startup message), then typed messages (one byte of type, four of length)."""

    def __init__(self, sent: Sent) -> None:
        self._sent = sent
        self._buffer = b""
        self._started = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            header = 4 if not self._started else 5
            if len(self._buffer) < header:
                return
            if not self._started:
                (length,) = struct.unpack("!I", self._buffer[:4])
                if len(self._buffer) < length:
                    return
                code = struct.unpack("!I", self._buffer[4:8])[0] if length >= 8 else 0
                self._started = code not in (_SSL_REQUEST, _GSS_REQUEST, _CANCEL_REQUEST)
                self._buffer = self._buffer[length:]
                continue
            kind = self._buffer[:1]
            (length,) = struct.unpack("!I", self._buffer[1:5])
            if len(self._buffer) < 1 + length:
                return
            self._buffer = self._buffer[1 + length:]
            if kind in (b"E", b"Q"):
                self._sent.statements += 1
            if kind in (b"S", b"Q"):
                self._sent.round_trips += 1


class CountingProxy(SilentProxy):
    """A SilentProxy that counts what its clients send (`sent`): statements and round trips, at the wire. A URL
    through it asks for no encryption, so what passes can be read."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.sent = Sent()

    def url(self, url: str, **query: str) -> str:
        return super().url(url, sslmode="disable", gssencmode="disable", **query)

    async def _pair(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        far_reader, far_writer = await asyncio.open_connection(*self._to)
        self._writers += [writer, far_writer]
        frontend = _Frontend(self.sent)
        loop = asyncio.get_running_loop()
        for pipe in (loop.create_task(self._read_out(reader, far_writer, frontend)),
                     loop.create_task(self._pipe(far_reader, writer))):
            self._pipes.add(pipe)

    async def _read_out(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, frontend: _Frontend) -> None:
        while data := await source.read(65536):
            frontend.feed(data)
            sink.write(data)
            await sink.drain()


@asynccontextmanager
async def counted(database_url: str) -> AsyncIterator[tuple[str, Sent]]:
    """`database_url` to use instead, and what the database is sent through it: on PostgreSQL through a
    CountingProxy; on SQLite, every connection opened meanwhile traced by sqlite3 itself (its trace callback)."""
    if make_url(database_url).get_backend_name() != "sqlite":
        async with CountingProxy.to(database_url) as proxy:
            yield proxy.url(database_url), proxy.sent
        return
    sent = Sent()
    opened = sqlite3.connect

    def on_statement(statement: str) -> None:
        if not statement.startswith("PRAGMA"):  # a connection's settings, the WAL's checkpoints: not a message's
            sent.statements += 1

    def traced(*args, **kwargs):
        connection = opened(*args, **kwargs)
        connection.set_trace_callback(on_statement)
        return connection

    sqlite3.connect = traced
    try:
        yield database_url, sent
    finally:
        sqlite3.connect = opened
