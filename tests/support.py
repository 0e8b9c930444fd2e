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
