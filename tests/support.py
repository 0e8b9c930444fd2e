"""Test helpers: a platform stand-in that records what it is asked to send, and a transcript driver.

`RecordingChannel` plays an outside platform at its edge (it is handed rendered replies, as a platform API would
be); everything between `Transcript.say` and the recorded reply is the real pipeline.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from bot.core import Lessonbot
from bot.messages import InboundMessage, Reply, Text
from bot.channel import Delivery, RateLimit


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
        return [reply.text for reply in self.sent[chat_id] if isinstance(reply, Text)]


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

    async def say(self, text: str, *, choice: str | None = None) -> list[str]:
        before = len(self.channel.sent[self.chat])
        await self.bot.receive(message(text, chat=self.chat, channel=self.channel.name, choice=choice))
        await self.bot.settle()
        return [r.text for r in self.channel.sent[self.chat][before:] if isinstance(r, Text)]


# Real server processes ---------------------------------------------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402

LESSONBOT = [sys.executable, "-m", "bot.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "TWILIO_", "SLACK_", "OPENAI_"))}
    env.update(
        DATABASE_URL=database_url, DATA_DIR=str(data_dir), SECRET_KEY="test-secret-key-0123456789",
        LOG_FORMAT="text", WORKER_POLL_SECONDS="0.2", **extra,
    )
    return env


class ServerProcess:
    """`lessonbot serve` in a child process, ready when /readyz answers 200."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(env["DATA_DIR"]) / f"server-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [*LESSONBOT, "serve", "--port", str(self.port), *args],
            env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in 30 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, as in a crash."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log_file.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log_file.close()


# The app in-process --------------------------------------------------------------------------------------------------

from collections.abc import AsyncIterator  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402


@asynccontextmanager
async def running(settings, channels=None) -> AsyncIterator[tuple[httpx.AsyncClient, Lessonbot]]:
    """The app as `lessonbot serve` builds it (channels from the settings unless given), and a client to post with."""
    from bot.app import create_app

    app = create_app(settings, channels=channels)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test") as client:
            yield client, app.state.lessonbot
