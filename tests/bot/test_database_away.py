"""The database away while messages come in: each is refused with a 503 that says to try again (every platform
retries one), nothing half-recorded, a few lines in the log rather than a traceback a request; and back again."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, select, text

from bench.processes import DatabaseUnreachable, postgres_database
from bot.app import create_app
from bot.config import load_settings
from bot.messages import InboundMessage
from bot.pipeline import record
from channels.telegram.routes import SECRET_HEADER, WEBHOOK_PATH
from channels.webchat.sessions import SessionSigner
from standins.slack import BOT_TOKEN, CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET, SlackStandIn, dm_event, signed
from standins.telegram import TelegramStandIn, person, text_update
from standins.twilio import PUBLIC_BASE_URL, SENDER, TwilioStandIn, TwilioWebhooks
from storage.db import Database
from storage.migrate import upgrade
from storage.models import InboundMessage as InboundRow
from storage.outbox import InboundStatus
from tests.conftest import POSTGRES_ADMIN_URL, missing
from tests.support import SilentProxy, serve, server_env


def _allow_connections(database: str, allowed: bool) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1),
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            connection.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                               {"name": database})
    admin.dispose()


@pytest.fixture
def upgraded_postgres() -> Iterator[str]:
    """A fresh, upgraded PostgreSQL database of its own (its connections can be refused without harm to others)."""
    try:
        made = postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_away")
        url = made.__enter__()
    except DatabaseUnreachable as exc:
        missing(str(exc))
        return
    try:
        upgrade(url)
        yield url
    finally:
        made.__exit__(None, None, None)


async def test_a_message_sent_while_the_database_is_away_gets_a_503_to_try_again(upgraded_postgres, tmp_path: Path,
                                                                                caplog):
    url = upgraded_postgres
    settings = load_settings(_env_file=None, database_url=url, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", log_format="text")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test") as client:
        session = (await client.post("/chat/api/sessions")).json()["session"]
        said = {"session": session, "text": "/help"}
        assert (await client.post("/chat/api/messages", json={**said, "id": "m1"})).status_code == 202
        _allow_connections(make_url(url).database, False)
        try:
            with caplog.at_level(logging.WARNING):
                refused = [await client.post("/chat/api/messages", json={**said, "id": f"away-{n}"})
                           for n in range(5)]
        finally:
            _allow_connections(make_url(url).database, True)
        assert {response.status_code for response in refused} == {503}
        assert refused[0].headers["Retry-After"] == "5"
        assert refused[0].json() == {"error": "the message could not be recorded just now: try again in a few "
                                              "seconds"}
        recording = [record for record in caplog.records if record.getMessage().startswith("recording a message")]
        assert len(recording) == 1 and recording[0].exc_info  # the first failure's traceback; not one a request
        again = await client.post("/chat/api/messages", json={**said, "id": "away-0"})  # the platform retries
        assert again.status_code == 202  # recorded now: nothing of the refused try was kept to make it a duplicate


async def test_a_chat_page_reading_while_the_database_is_away_is_told_to_try_again_not_a_500(
        upgraded_postgres, tmp_path: Path, caplog):
    """A page that loads, reloads or polls its replies while the database is away gets a 503 to try again (one
    traceback in the log, not one a request); its words come in the browser's language; its event stream is refused
    with a 503 too, not opened only to end at once (the page showed itself online, then reconnecting, in turn)."""
    url = upgraded_postgres
    settings = load_settings(_env_file=None, database_url=url, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", log_format="text")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://lessonbot.test",
            timeout=20) as client:
        session = (await client.post("/chat/api/sessions")).json()["session"]
        assert (await client.post("/chat/api/messages", json={"session": session, "text": "/help"})).status_code == 202
        await app.state.lessonbot.settle()
        session_id = session.split(".")[0]
        [reply] = (await client.get("/chat/api/messages", params={"session": session, "after": 0})).json()["replies"]
        signature = SessionSigner(settings.resolved_secret_key, idle_seconds=60).file_signature(session_id, reply["id"])
        _allow_connections(make_url(url).database, False)
        try:
            with caplog.at_level(logging.WARNING):
                read = [await client.get("/chat/api/messages", params={"session": session, "after": 0})
                        for _ in range(5)]
                download = await client.get(f"/chat/files/{session_id}/{reply['id']}/{signature}")
                words = await client.get("/chat/api/words", params={"session": session},
                                         headers={"accept-language": "es-ES,es;q=0.9"})
                stream = await client.get("/chat/api/events", params={"session": session, "after": 0})
        finally:
            _allow_connections(make_url(url).database, True)
        assert {response.status_code for response in read} == {503}, read[0].text
        assert read[0].headers["Retry-After"] == "5"
        assert read[0].json() == {"error": "the chat could not be read just now: try again in a few seconds"}
        assert download.status_code == 503 and download.headers["Retry-After"] == "5"
        assert words.status_code == 200 and words.json()["language"] == "es"
        assert stream.status_code == 503 and stream.headers["Retry-After"] == "5", stream.text
        assert stream.json() == read[0].json()
        reading = [record for record in caplog.records if record.getMessage().startswith("reading a chat")]
        assert len(reading) == 1 and reading[0].exc_info  # the first failure's traceback; not one a request
        back = await client.get("/chat/api/messages", params={"session": session, "after": 0})
        assert back.status_code == 200 and back.json()["replies"]


async def test_an_open_chat_page_while_the_database_is_away_costs_the_log_a_line_a_minute_not_a_traceback_a_second(
        upgraded_postgres, tmp_path: Path):
    """`lessonbot serve` with a web chat page's event stream open: its watcher asks the database every second, and
    while the database is away that is one traceback, then a line a minute, as for every other poll."""
    url = upgraded_postgres
    server = serve(server_env(url, tmp_path / "var", WEB_CHAT_POLL_SECONDS="0.2"))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            session = (await client.post("/chat/api/sessions")).json()["session"]
            async with client.stream("GET", "/chat/api/events", params={"session": session, "after": 0}) as stream:
                assert stream.status_code == 200
                _allow_connections(make_url(url).database, False)
                try:
                    await asyncio.sleep(3)  # some fifteen of the watcher's polls
                finally:
                    _allow_connections(make_url(url).database, True)
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert log.count("reading a chat for its page failed") == 1, log[-3000:]  # with its traceback; then a line a minute
    assert "could not look for replies sent by other processes" not in log  # a traceback every poll


TELEGRAM_SECRET = "away-test-secret-0123456789"


async def _answer(request: Awaitable[httpx.Response]) -> tuple[int | str, str | None, float]:
    """A request's status and Retry-After, and how long it took; "no answer" if there was none in time."""
    began = time.monotonic()
    try:
        response = await request
    except httpx.TimeoutException:
        return "no answer", None, time.monotonic() - began
    return response.status_code, response.headers.get("Retry-After"), time.monotonic() - began


async def test_a_server_that_stops_answering_an_open_connection_gets_a_503_in_time_and_the_turn_is_retried(
        upgraded_postgres, tmp_path: Path):
    """A PostgreSQL that goes silent on connections already open (frozen, or behind a proxy whose far side is gone:
    nothing refused, nothing answered): a message is refused with the outage's 503 within the answer bound, not held
    for ever; and a turn under way then fails as a database hiccup, its message left pending, and is taken up again
    once the server answers."""
    bound = 1.0
    async with SilentProxy.to(upgraded_postgres) as proxy:
        url = proxy.url(upgraded_postgres, answer_timeout=f"{bound:g}", connect_timeout="2")
        settings = load_settings(_env_file=None, database_url=url, data_dir=tmp_path / "var",
                                 secret_key="test-secret-key-0123456789", log_format="text", worker_poll_seconds=0.2)
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test", timeout=30) as client:
            bot = app.state.lessonbot
            session = (await client.post("/chat/api/sessions")).json()["session"]
            chat = session.split(".")[0]
            said = {"session": session, "text": "/help"}
            assert (await client.post("/chat/api/messages", json={**said, "id": "m1"})).status_code == 202
            await bot.settle()  # the pools' connections, open
            proxy.silence()
            began = time.monotonic()
            refused = await client.post("/chat/api/messages", json={**said, "id": "silent"})
            assert time.monotonic() - began < bound + 4
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"

            # a message recorded by another process, whose turn this one takes up while the server is silent
            elsewhere = Database(upgraded_postgres)
            try:
                recorded = await record(elsewhere, InboundMessage(channel="web", platform_id=f"{chat}:m2",
                                                                  chat_id=chat, sender_id=chat, text="/help"))
                bot.worker.notify(recorded.conversation_id, recorded.inbound_id)
                await asyncio.sleep(bound + 1)
                async with elsewhere.sessions() as looked:
                    status = await looked.scalar(select(InboundRow.status).where(InboundRow.id == recorded.inbound_id))
                assert status == InboundStatus.PENDING.value  # the turn failed; the message waits
            finally:
                await elsewhere.dispose()
            proxy.resume()
            async with asyncio.timeout(20):
                while len((await client.get("/chat/api/messages",
                                            params={"session": session, "after": 0})).json().get("replies", [])) < 2:
                    await asyncio.sleep(0.2)


async def test_every_request_to_a_server_while_the_database_is_away_is_answered_at_once(upgraded_postgres, tmp_path):
    """`lessonbot serve` (on uvloop) with the database's connections cut: the first web chat read, and the first
    Telegram, WhatsApp and Slack message, each took a pooled connection the server had ended and waited for ever (a
    page stayed on "Connecting…", a platform's request timed out instead of being refused). Every one is now refused
    at once with a 503 to try again, as those after them were."""
    url = upgraded_postgres
    async with TelegramStandIn() as telegram, TwilioStandIn() as twilio, SlackStandIn() as slack:
        env = server_env(
            url, tmp_path / "var", TELEGRAM_BOT_TOKEN=telegram.token, TELEGRAM_WEBHOOK_SECRET=TELEGRAM_SECRET,
            TELEGRAM_API_BASE_URL=telegram.base_url, TWILIO_ACCOUNT_SID=twilio.account_sid,
            TWILIO_AUTH_TOKEN=twilio.auth_token, TWILIO_WHATSAPP_FROM=SENDER, TWILIO_API_BASE_URL=twilio.base_url,
            PUBLIC_BASE_URL=PUBLIC_BASE_URL, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_API_BASE_URL=slack.base_url,
        )
        server = await asyncio.to_thread(serve, env)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
                whatsapp = TwilioWebhooks(client, auth_token=twilio.auth_token)
                session = (await client.post("/chat/api/sessions")).json()["session"]

                def read() -> Awaitable[httpx.Response]:
                    return client.get("/chat/api/messages", params={"session": session, "after": 0})

                def messages(n: int) -> list[Awaitable[httpx.Response]]:
                    body = json.dumps(dm_event("hello", event_id=f"EvAway{n}")).encode()
                    return [
                        client.post(WEBHOOK_PATH, json=text_update("hello", chat_id=555 + n, user=person(555 + n)),
                                    headers={SECRET_HEADER: TELEGRAM_SECRET}),
                        whatsapp.message(f"+1555000{n:04d}", "hello"),
                        client.post("/slack/events", content=body, headers=signed(body)),
                    ]

                # connections kept in the pools: the reads', the recordings'
                before = await asyncio.gather(*(_answer(request) for request in [read(), read(), *messages(0)]))
                assert [status for status, _, _ in before] == [200, 200, 200, 200, 200]
                _allow_connections(make_url(url).database, False)
                try:
                    away = await asyncio.gather(*(_answer(request) for request in [read(), read(), *messages(1)]))
                finally:
                    _allow_connections(make_url(url).database, True)
        finally:
            await asyncio.to_thread(server.stop)
    assert [(status, retry) for status, retry, _ in away] == [(503, "5")] * 5, away
    assert max(took for _, _, took in away) < 10, away


def test_only_a_database_away_is_called_so_not_a_wrong_statement_or_schema():
    import sqlite3

    import psycopg
    from sqlalchemy.exc import OperationalError

    from storage.db import unreachable

    connection = sqlite3.connect(":memory:")
    for statement in ("SELEC 1", "SELECT * FROM no_such_table"):
        try:
            connection.execute(statement)
        except sqlite3.OperationalError as wrong:  # SQLITE_ERROR: no retry mends it, so no 503 says to retry
            assert not unreachable(wrong) and not unreachable(OperationalError(statement, {}, wrong))
    assert unreachable(sqlite3.OperationalError("database is locked"))
    assert unreachable(OperationalError("SELECT 1", {}, psycopg.OperationalError("connection refused")))
    assert unreachable(ConnectionRefusedError())


async def test_an_installable_slack_app_answers_503_when_it_cannot_look_the_workspace_up(upgraded_postgres,
                                                                                        tmp_path, caplog):
    """Bolt looks each request's workspace up in our installations before any listener runs, and takes a lookup that
    fails for a workspace without the app: it would acknowledge the request, and Slack would not send it again."""
    async with SlackStandIn() as standin:
        settings = load_settings(
            _env_file=None, database_url=upgraded_postgres, data_dir=tmp_path / "var", log_format="text",
            secret_key="test-secret-key-0123456789", web_chat_enabled=False, slack_signing_secret=SIGNING_SECRET,
            slack_api_base_url=standin.base_url, slack_client_id=CLIENT_ID, slack_client_secret=CLIENT_SECRET,
            public_base_url="https://bot.example.com",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test") as client:
            _allow_connections(make_url(upgraded_postgres).database, False)
            try:
                with caplog.at_level(logging.WARNING):
                    refused = []
                    for n in range(3):
                        body = json.dumps(dm_event("hello", event_id=f"EvAway{n}")).encode()
                        refused.append(await client.post("/slack/events", content=body, headers=signed(body)))
            finally:
                _allow_connections(make_url(upgraded_postgres).database, True)
    assert [response.status_code for response in refused] == [503] * 3  # Slack delivers it again later
    assert refused[0].headers["Retry-After"] == "5"
    assert "try again in a few seconds" in refused[0].json()["error"]
    assert not [record for record in caplog.records if "slack request failed" in record.getMessage()]
    recording = [record for record in caplog.records if record.getMessage().startswith("recording a message")]
    assert len(recording) <= 1  # the first failure's traceback, if it got that far; not one a request


def _samples(exposition: str, metric: str) -> list[str]:
    return [line for line in exposition.splitlines() if line.startswith(metric)]


async def test_metrics_read_from_the_database_are_left_out_while_it_is_away_not_shown_at_their_last_value(
        upgraded_postgres, tmp_path, caplog):
    """An alert or a dashboard on the outbox's depth would otherwise see the queues as they were before the outage,
    steady, for as long as it lasts."""
    settings = load_settings(_env_file=None, database_url=upgraded_postgres, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", log_format="text")
    app = create_app(settings, process=False, dispatch=False)  # (the message stays pending: a depth to show)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test") as client:
        session = (await client.post("/chat/api/sessions")).json()["session"]
        said = {"session": session, "text": "/help", "id": "m1"}
        assert (await client.post("/chat/api/messages", json=said)).status_code == 202
        assert _samples((await client.get("/metrics")).text, "lessonbot_inbound_pending ") == [
            "lessonbot_inbound_pending 1.0"]
        _allow_connections(make_url(upgraded_postgres).database, False)
        try:
            with caplog.at_level(logging.WARNING):
                away = [await client.get("/metrics") for _ in range(3)]
        finally:
            _allow_connections(make_url(upgraded_postgres).database, True)
        back = (await client.get("/metrics")).text
    assert {response.status_code for response in away} == {200}
    for metric in ("lessonbot_inbound_pending", "lessonbot_outbox_depth", "lessonbot_model_calls_today",
                   "lessonbot_model_tokens_today"):
        assert _samples(away[-1].text, f"{metric} ") + _samples(away[-1].text, f"{metric}{{") == []
    assert _samples(away[-1].text, "lessonbot_messages_in_total{")  # what the process counts itself stays
    said = [record for record in caplog.records if record.name == "bot.app" and record.levelno >= logging.WARNING
            and record.getMessage().startswith("metrics")]
    assert len(said) == 2 and said[0].exc_info  # the first scrape's traceback, not one a scrape; then its end
    assert "works again" in said[1].getMessage()
    assert _samples(back, "lessonbot_inbound_pending ") == ["lessonbot_inbound_pending 1.0"]


async def test_a_standby_campaigning_while_the_database_is_away_logs_it_once_not_at_every_try(upgraded_postgres,
                                                                                            caplog):
    """Leader election tries every LEADER_CHECK_SECONDS: while the database is away that is one traceback, then a
    line a minute, then one line when it works again, as for every other poll."""
    import asyncio

    from scheduler.leader import Leadership
    from storage.db import Database

    url = upgraded_postgres
    db = Database(url)
    elected = asyncio.Event()

    async def work() -> None:
        elected.set()
        await asyncio.Event().wait()

    leadership = Leadership(db, "test-role", owner="away", check_seconds=0.05)
    _allow_connections(make_url(url).database, False)
    task = asyncio.create_task(leadership.hold(work))
    try:
        with caplog.at_level(logging.INFO, logger="scheduler.leader"):
            await asyncio.sleep(1.5)  # some twenty tries
            _allow_connections(make_url(url).database, True)
            async with asyncio.timeout(10):
                await elected.wait()
    finally:
        _allow_connections(make_url(url).database, True)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.dispose()
    said = [record for record in caplog.records if record.name == "scheduler.leader"
            and record.levelno >= logging.WARNING]
    assert len(said) == 2, [record.getMessage() for record in said]
    assert said[0].exc_info and "election" in said[0].getMessage()  # the first failure, with its traceback
    assert "works again" in said[1].getMessage()


async def test_whatsapp_is_told_when_to_try_again_and_the_log_says_it_once(upgraded_postgres, tmp_path, caplog):
    """Twilio's webhook while the database is away: a 503 with Retry-After, as every webhook's (README), and the
    outage in the log once, not a warning a message."""
    async with TwilioStandIn() as twilio:
        settings = load_settings(
            _env_file=None, database_url=upgraded_postgres, data_dir=tmp_path / "var", log_format="text",
            secret_key="test-secret-key-0123456789", web_chat_enabled=False, twilio_account_sid=twilio.account_sid,
            twilio_auth_token=twilio.auth_token, twilio_whatsapp_from=SENDER, twilio_api_base_url=twilio.base_url,
            public_base_url=PUBLIC_BASE_URL,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=PUBLIC_BASE_URL) as client:
            whatsapp = TwilioWebhooks(client, auth_token=twilio.auth_token)
            _allow_connections(make_url(upgraded_postgres).database, False)
            try:
                with caplog.at_level(logging.WARNING):
                    refused = [await whatsapp.message("+15550001111", f"hello {n}") for n in range(3)]
            finally:
                _allow_connections(make_url(upgraded_postgres).database, True)
    assert [response.status_code for response in refused] == [503] * 3  # Twilio may send it again
    assert refused[0].headers["Retry-After"] == "5"
    assert "try again in a few seconds" in refused[0].json()["error"]
    assert not [record for record in caplog.records if "whatsapp webhook refused" in record.getMessage()]
    recording = [record for record in caplog.records if record.getMessage().startswith("recording a message")]
    assert len(recording) == 1 and recording[0].exc_info  # the first failure's traceback; not one a message
