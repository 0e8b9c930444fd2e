"""The long-running commands stop cleanly on SIGTERM (`docker stop`, systemd, `kill`), as on Ctrl-C, and the
dispatcher's metrics are served where it runs: real processes on a SQLite file of their own.

- `lessonbot dispatch` finishes the send under way, stops its clock and releases its leadership, and exits 0;
- `lessonbot telegram poll` stops the same way;
- `lessonbot serve` stops within seconds while a web chat page holds its event stream open;
- `lessonbot dispatch --metrics-port` serves /metrics (with the delivery metrics, counted only there) and /healthz.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from bench.processes import free_port
from channels.telegram.routes import SECRET_HEADER, WEBHOOK_PATH
from standins.telegram import TelegramStandIn, person, text_update
from storage.db import make_sync_engine
from storage.migrate import upgrade
from storage.models import LeaderLease, OutboxMessage, utcnow
from tests.support import LESSONBOT, serve, server_env

pytestmark = pytest.mark.slow

TELEGRAM_SECRET = "stopping-test-secret-0123456789"
STARTED = 60.0  # a cold start on a busy 2-core machine imports for several seconds
STOPPED = 15.0  # the dispatcher's grace (5 s) for the send under way, and room for a loaded machine


@pytest.fixture
def database(tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own (no other test's leader lease in it)."""
    url = f"sqlite:///{tmp_path / 'lessonbot.db'}"
    upgrade(url)
    return url


class Command:
    """A `lessonbot …` command in a child process, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen([*LESSONBOT, *args], env=env, cwd=log.parent, stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)

    def said(self, words: str) -> bool:
        return words in self.log.read_text(errors="replace")

    def wait_until_said(self, words: str, timeout: float = STARTED) -> None:
        deadline = time.monotonic() + timeout
        while not self.said(words):
            assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"never said {words!r}:\n{self.log.read_text()}"
            time.sleep(0.1)

    def terminate(self, timeout: float = STOPPED) -> int | None:
        """SIGTERM, then its exit status, or None if it is still running after `timeout` seconds (then killed)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def dispatch(env: dict[str, str], *args: str) -> Command:
    """`lessonbot dispatch`, returned once it is elected and its clock runs."""
    data_dir = Path(env["DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    command = Command(env, data_dir / "dispatch.log", "dispatch", *args)
    try:
        command.wait_until_said("clock started")
    except BaseException:
        command.kill()
        raise
    return command


def released(database: str) -> bool:
    """Whether the dispatcher's leadership is free at once (its lease ended), not only once it runs out."""
    engine = make_sync_engine(database)
    try:
        with engine.connect() as connection:
            until = connection.scalar(select(LeaderLease.until).where(LeaderLease.name == "dispatcher"))
    finally:
        engine.dispose()
    return until is not None and until.replace(tzinfo=None) <= utcnow().replace(tzinfo=None)


def statuses(database: str) -> list[str]:
    engine = make_sync_engine(database)
    try:
        with engine.connect() as connection:
            return list(connection.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))
    finally:
        engine.dispose()


@pytest.fixture
def running() -> Iterator[list[Command]]:
    """The commands a test starts: killed at the end if still running (a failed assertion)."""
    commands: list[Command] = []
    yield commands
    for command in commands:
        command.kill()


async def test_dispatch_stops_on_sigterm_after_the_send_under_way(database, tmp_path, running):
    """SIGTERM while the platform holds a reply: the send finishes within the grace (the reply is `sent`, not left
    `sending` for the next dispatcher to send again), the clock stops, the leadership is released at once (a standby
    takes over within a second, not once the lease runs out), and the process exits 0."""
    chat = 5550001
    async with TelegramStandIn(latency=2.0) as platform:
        env = server_env(database, tmp_path / "var", TELEGRAM_BOT_TOKEN=platform.token,
                         TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET, TELEGRAM_API_BASE_URL=platform.base_url)
        web = await asyncio.to_thread(serve, env, "--no-dispatcher")
        try:
            dispatcher = await asyncio.to_thread(dispatch, env)
            running.append(dispatcher)
            async with httpx.AsyncClient(base_url=web.url, timeout=10) as client:
                update = text_update("/start", chat_id=chat, user=person(chat, "Ann"))
                response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: TELEGRAM_SECRET})
                assert response.status_code == 200
            await platform.wait_for(lambda: len(platform.arrived) >= 1, timeout=30)  # in the platform's hands

            assert await asyncio.to_thread(dispatcher.terminate) == 0, dispatcher.log.read_text()
        finally:
            await asyncio.to_thread(web.stop)
    assert dispatcher.said("SIGTERM received: stopping") and dispatcher.said("clock stopped")
    assert statuses(database)[0] == "sent" and "sending" not in statuses(database)
    assert [call.params["chat_id"] for call in platform.called("sendMessage")] == [str(chat)]
    assert released(database)


async def test_telegram_poll_stops_on_sigterm(database, tmp_path, running):
    async with TelegramStandIn() as platform:
        env = server_env(database, tmp_path / "var", TELEGRAM_BOT_TOKEN=platform.token,
                         TELEGRAM_API_BASE_URL=platform.base_url)
        (tmp_path / "var").mkdir()
        poller = Command(env, tmp_path / "var" / "poll.log", "telegram", "poll")
        running.append(poller)
        platform.push_update(text_update("/start"))
        await platform.wait_for(lambda: bool(platform.called("sendMessage")), timeout=STARTED)

        assert await asyncio.to_thread(poller.terminate) == 0, poller.log.read_text()
    assert poller.said("SIGTERM received: stopping")


def test_serve_stops_on_sigterm_while_a_page_holds_its_event_stream_open(database, tmp_path):
    """uvicorn waits for every connection to close before it stops; a web chat page keeps its stream open for as
    long as it is open. Stopping ends the streams (the page reconnects and resumes), so it does not wait even for
    its graceful-shutdown bound."""
    server = serve(server_env(database, tmp_path / "var"))
    try:
        session = httpx.post(f"{server.url}/chat/api/sessions", timeout=10).json()["session"]
        with httpx.stream("GET", f"{server.url}/chat/api/events", params={"session": session},
                          timeout=httpx.Timeout(10, read=10)) as stream:  # under the 15 s between keep-alives
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"  # the stream is open
            server.process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            list(lines)  # until the server ends the stream (a read timeout otherwise)
        assert server.process.wait(STOPPED) is not None
        took = time.monotonic() - started
    finally:
        server.kill()
    log = server.log_path.read_text()
    assert "timeout graceful shutdown exceeded" not in log and "clock stopped" in log
    assert took < 10, f"stopped after {took:.1f} s"


def test_dispatch_serves_its_delivery_metrics(database, tmp_path, running):
    """The scaled layout: web workers on `serve --no-dispatcher` record, a `dispatch` sends; the delivery metrics
    are counted where the dispatcher runs, and `--metrics-port` serves them there."""
    env = server_env(database, tmp_path / "var")
    web = serve(env, "--no-dispatcher")
    try:
        port = free_port()
        dispatcher = dispatch(env, "--metrics-port", str(port))
        running.append(dispatcher)
        metrics_url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{metrics_url}/healthz", timeout=10).json() == {"status": "ok"}

        session = httpx.post(f"{web.url}/chat/api/sessions", timeout=10).json()["session"]
        body = {"session": session, "text": "/start", "id": "m-1"}
        assert httpx.post(f"{web.url}/chat/api/messages", json=body, timeout=10).status_code == 202

        deadline = time.monotonic() + 30
        while True:
            response = httpx.get(f"{metrics_url}/metrics", timeout=10)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
            samples = {(sample.name, sample.labels.get("channel")): sample.value
                       for family in text_string_to_metric_families(response.text) for sample in family.samples}
            if samples.get(("lessonbot_messages_out_total", "web")):
                break
            assert time.monotonic() < deadline, f"no reply counted as sent:\n{response.text}"
            time.sleep(0.2)
        assert samples[("lessonbot_delivery_seconds_count", "web")] == samples[("lessonbot_messages_out_total", "web")]
        assert "# TYPE lessonbot_send_failures_total counter" in response.text
        assert ("lessonbot_outbox_depth", None) in samples  # the gauges read from the database, as serve's are

        assert dispatcher.terminate() == 0, dispatcher.log.read_text()
    finally:
        web.stop()
