"""The web chat's HTTP API, driven in-process through the real app: sessions, messages, replies, refusals, health.

Requests go through httpx's ASGI transport with the app's lifespan entered (so the worker and the dispatcher run).
That transport hands back a response only once the app has finished it, so the endpoint that never finishes (the
server-sent event stream) is read from the same app served by uvicorn on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from starlette.applications import Starlette

from authoring.format import load_course
from authoring.importer import import_course
from bot.app import create_app
from bot.config import Settings, load_settings
from bot.messages import Choice, Document, Text
from channels.webchat import WebChatChannel
from channels.webchat.channel import MAX_TEXT_CHARS
from channels.webchat.routes import reply_view
from channels.webchat.streams import FALLBACK_POLL_SECONDS, REPLIES_A_READ
from storage.courses import Course
from storage.migrate import head_revisions
from storage.models import Conversation, InboundMessage, OutboxMessage, utcnow
from storage.outbox import LESSON_KEY, LESSON_PLACE, OutboxEntry, enqueue, requeue
from storage.payments import make_code
from tests.bot.test_order_under_load import busy_cpu
from tests.dialogs.learning_support import PAID, SAMPLE

REPLY_TIMEOUT = 10.0


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def in_process(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test")


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(app) as client:
        yield client


async def new_session(client: httpx.AsyncClient) -> str:
    response = await client.post("/chat/api/sessions")
    assert response.status_code == 201
    return response.json()["session"]


async def replies(client: httpx.AsyncClient, session: str, *, after: int = 0) -> list[dict[str, Any]]:
    response = await client.get("/chat/api/messages", params={"session": session, "after": after})
    assert response.status_code == 200, response.text
    return response.json()["replies"]


async def wait_for_replies(
    client: httpx.AsyncClient, session: str, *, count: int = 1, after: int = 0
) -> list[dict[str, Any]]:
    """Poll as the page does on load, until `count` replies after `after` are there."""
    async with asyncio.timeout(REPLY_TIMEOUT):
        while len(got := await replies(client, session, after=after)) < count:
            await asyncio.sleep(0.05)
    return got


async def say(client: httpx.AsyncClient, session: str, text: str, *, id: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"session": session, "text": text}
    if id is not None:
        body["id"] = id
    return await client.post("/chat/api/messages", json=body)


async def count_rows(app: Starlette, model: type) -> int:
    async with app.state.lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


# a conversation -----------------------------------------------------------------------------------------------------


async def test_a_message_gets_a_reply_and_a_choice_gets_the_next(client):
    session = await new_session(client)
    accepted = await say(client, session, "/start", id="m-1")
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "accepted" and isinstance(accepted.json()["id"], int)

    [greeting] = await wait_for_replies(client, session)
    assert greeting["kind"] == "text" and "I'm Lessonbot" in greeting["text"]
    assert greeting["choices"] and all(set(c) == {"label", "value"} for c in greeting["choices"])

    # A pressed button comes back as its value; what it leads to is the dialog's business, but it leads on.
    pressed = {"session": session, "choice": greeting["choices"][0]["value"], "id": "m-2"}
    assert (await client.post("/chat/api/messages", json=pressed)).status_code == 202
    [answer, *_] = await wait_for_replies(client, session, after=greeting["id"])
    assert answer["id"] > greeting["id"] and answer["text"] != greeting["text"]

    assert (await say(client, session, "/help", id="m-3")).status_code == 202
    async with asyncio.timeout(REPLY_TIMEOUT):
        while not any(r["text"].startswith("Here is what you can send me") for r in await replies(client, session)):
            await asyncio.sleep(0.05)
    ids = [r["id"] for r in await replies(client, session)]
    assert ids == sorted(ids) and ids[0] == greeting["id"] and len(set(ids)) == len(ids)


async def test_sessions_do_not_see_each_others_replies(client):
    ann, bob = await new_session(client), await new_session(client)
    assert ann != bob
    assert (await say(client, ann, "/start")).status_code == 202
    await wait_for_replies(client, ann)
    assert (await say(client, bob, "/help")).status_code == 202
    [help_reply] = await wait_for_replies(client, bob)
    assert help_reply["text"].startswith("Here is what you can send me")
    assert len(await replies(client, ann)) == 1


async def test_the_longest_allowed_message_is_accepted(client, app):
    session = await new_session(client)
    response = await say(client, session, "é" * MAX_TEXT_CHARS)  # the limit counts characters, not bytes
    assert response.status_code == 202, response.text
    await wait_for_replies(client, session)
    assert await count_rows(app, InboundMessage) == 1


# retries ------------------------------------------------------------------------------------------------------------


async def test_oversized_headers_are_refused_and_nothing_stored(client, app):
    session = await new_session(client)
    body = {"session": session, "text": "hi"}
    response = await client.post("/chat/api/messages", json=body, headers={"x-padding": "p" * 20_000})
    assert response.status_code == 431 and "headers" in response.json()["error"]
    assert await count_rows(app, InboundMessage) == 0


async def test_the_same_client_id_twice_is_one_message_and_one_reply(client, app):
    session = await new_session(client)
    first = await say(client, session, "/help", id="retry-1")
    second = await say(client, session, "/help", id="retry-1")
    assert first.status_code == 202
    assert second.status_code == 200 and second.json()["status"] == "duplicate"

    await wait_for_replies(client, session)
    await app.state.lessonbot.settle()
    assert len(await replies(client, session)) == 1
    assert await count_rows(app, InboundMessage) == 1
    assert await count_rows(app, OutboxMessage) == 1


async def test_client_ids_are_per_session_and_per_message(client, app):
    ann, bob = await new_session(client), await new_session(client)
    assert (await say(client, ann, "/help", id="same")).status_code == 202
    assert (await say(client, bob, "/help", id="same")).status_code == 202  # another session: another message
    assert (await say(client, ann, "/help", id="other")).status_code == 202  # same words, new id: a new message
    await wait_for_replies(client, ann, count=2)
    await wait_for_replies(client, bob)
    assert await count_rows(app, InboundMessage) == 3


# refusals -----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRequest:
    """A request the server must refuse: what to send (given a valid session), the status, words of the error."""

    name: str
    body: Callable[[str, Settings], bytes | list[bytes]]
    status: int
    error: str
    content_type: str | None = "application/json"  # None: no Content-Type header at all


def json_body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def forged(session: str) -> str:
    session_id, _, signature = session.partition(".")
    return f"{session_id}.{signature[:-1]}{'0' if signature[-1] != '0' else '1'}"


def altered(session: str) -> str:
    session_id, _, signature = session.partition(".")
    return f"{session_id[:-1]}{'A' if session_id[-1] != 'A' else 'B'}.{signature}"


def oversized(session: str, settings: Settings) -> bytes:
    padding = "x" * settings.max_body_bytes
    return json_body(session=session, text="hi", padding=padding)


def oversized_in_chunks(session: str, settings: Settings) -> list[bytes]:
    body = oversized(session, settings)
    return [body[i : i + 8192] for i in range(0, len(body), 8192)]


BAD_REQUESTS = [
    # A form of another site may post text/plain (or a form's type) with no preflight, its body shaped as JSON: only
    # JSON is taken, which no other site's page can post here without the browser asking this server first.
    BadRequest("JSON posted as text/plain", lambda s, _: json_body(session=s, text="hi"), 415, "application/json",
               content_type="text/plain"),
    BadRequest("JSON posted as a form", lambda s, _: json_body(session=s, text="hi"), 415, "application/json",
               content_type="application/x-www-form-urlencoded"),
    BadRequest("JSON posted with no type", lambda s, _: json_body(session=s, text="hi"), 415, "application/json",
               content_type=None),
    BadRequest("malformed JSON", lambda s, _: json_body(session=s, text="hi")[:-1], 400, "not valid JSON"),
    BadRequest("not UTF-8", lambda s, _: b'{"text": "\xff"}', 400, "not valid JSON"),
    BadRequest("not an object", lambda s, _: b'["hi"]', 400, "must be a JSON object"),
    BadRequest("missing text", lambda s, _: json_body(session=s), 422, "message was empty"),
    BadRequest("blank text", lambda s, _: json_body(session=s, text="  \n "), 422, "message was empty"),
    BadRequest("text not a string", lambda s, _: json_body(session=s, text=42), 422, "'text' must be a string"),
    BadRequest("choice not a string", lambda s, _: json_body(session=s, choice=1), 422, "'choice' must be a string"),
    BadRequest(
        "text over the limit",
        lambda s, _: json_body(session=s, text="x" * (MAX_TEXT_CHARS + 1)),
        413,
        "4,001 characters long; the limit is 4,000",
    ),
    BadRequest("empty choice", lambda s, _: json_body(session=s, text="hi", choice=""), 422, "'choice' must be"),
    # No button's value is that long (an offered one is kept in 500 characters): 60,000 are no button pressed.
    BadRequest("choice longer than any button's", lambda s, _: json_body(session=s, choice="quiz:" + "9" * 60_000), 422,
               "'choice' must be"),
    BadRequest("client id too long", lambda s, _: json_body(session=s, text="hi", id="x" * 101), 422, "'id' must be"),
    BadRequest("language not a tag", lambda s, _: json_body(session=s, text="hi", language="<b>es</b>"), 422,
               "'language' must be a language tag"),
    BadRequest("language tag too long", lambda s, _: json_body(session=s, text="hi", language="es-" + "x" * 40), 422,
               "'language' must be a language tag"),
    # A field the page never sends is a mistake of whoever sent it (a misspelt "txet", a "user" of their own): said,
    # not stored as if it meant something.
    BadRequest("unknown field", lambda s, _: json_body(session=s, text="hi", txet="hi"), 422, "Unknown field 'txet'"),
    BadRequest("unknown fields", lambda s, _: json_body(session=s, text="hi", user="ann", html="<b>hi</b>"), 422,
               "Unknown fields 'html', 'user'"),
    BadRequest("language not a string", lambda s, _: json_body(session=s, text="hi", language=["es"]), 422,
               "'language' must be a language tag"),
    BadRequest("body over MAX_BODY_BYTES", oversized, 413, "the limit is 65,536"),
    # Sent in chunks with no Content-Length: the limit must hold while reading, not only on the declared size.
    BadRequest(
        "streamed body over MAX_BODY_BYTES",
        oversized_in_chunks,
        413,
        "over the limit of 65,536 bytes",
    ),
    # 20,000 levels deep in under 64 KB: refused before the parser recurses into it.
    BadRequest(
        "JSON nested 20,000 deep",
        lambda s, _: b'{"session": "' + s.encode() + b'", "text": "hi", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        400,
        "nests deeper than 64 levels",
    ),
    BadRequest("no session", lambda s, _: json_body(text="hi"), 401, "POST /chat/api/sessions"),
    BadRequest("empty session", lambda s, _: json_body(session="", text="hi"), 401, "Missing 'session'"),
    BadRequest("session not a string", lambda s, _: json_body(session=123, text="hi"), 401, "Missing 'session'"),
    BadRequest("forged signature", lambda s, _: json_body(session=forged(s), text="hi"), 403, "not valid here"),
    BadRequest("altered session id", lambda s, _: json_body(session=altered(s), text="hi"), 403, "not valid here"),
    BadRequest("signature of other characters", lambda s, _: json_body(session=s.rpartition(".")[0] + ".üü",
                                                                       text="hi"), 403, "not valid here"),
    BadRequest("unsigned session", lambda s, _: json_body(session=s.partition(".")[0], text="hi"), 403, "not valid"),
    BadRequest(
        "session of another server",
        lambda s, _: json_body(session=WebChatChannel("another-secret-key-0123").new_session(), text="hi"),
        403,
        "not valid here",
    ),
]


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.name for bad in BAD_REQUESTS])
async def test_a_bad_request_is_refused_stores_nothing_and_the_chat_goes_on(client, app, settings, bad):
    session = await new_session(client)
    body = bad.body(session, settings)
    headers = {"Content-Type": bad.content_type} if bad.content_type else {}
    if isinstance(body, list):
        response = await client.post("/chat/api/messages", content=chunks(body), headers=headers)
        assert "content-length" not in response.request.headers
    else:
        response = await client.post("/chat/api/messages", content=body, headers=headers)
        assert response.request.headers.get("content-type") == bad.content_type

    assert response.status_code == bad.status, response.text
    assert bad.error in response.json()["error"]
    assert await count_rows(app, InboundMessage) == 0

    assert (await say(client, session, "/start")).status_code == 202
    [greeting] = await wait_for_replies(client, session)
    assert "I'm Lessonbot" in greeting["text"]
    assert await count_rows(app, InboundMessage) == 1


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({}, 401, "Missing 'session'"),
        ({"session": "nobody.0000"}, 403, "not valid here"),
        ({"after": "last"}, 422, "'after' must be"),
        ({"after": "9" * 25}, 422, "'after' must be"),  # past any id a database holds
        ({"after": "²"}, 422, "'after' must be"),  # a digit to str.isdigit, not to int
        ({"after": "9" * 5000}, 422, "'after' must be"),  # past the digits int() reads at all
    ],
    ids=["no session", "forged session", "bad cursor", "cursor past 64 bits", "cursor in other digits",
         "cursor of 5,000 digits"],
)
async def test_reading_replies_needs_a_valid_session_and_cursor(client, params, status, error):
    if "after" in params:
        params = {**params, "session": await new_session(client)}
    for path in ("/chat/api/messages", "/chat/api/events"):
        response = await client.get(path, params=params)
        assert response.status_code == status, path
        assert error in response.json()["error"]


# replies as server-sent events --------------------------------------------------------------------------------------


@asynccontextmanager
async def served(app: Starlette) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port (uvicorn runs its lifespan)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def first_reply_event(client: httpx.AsyncClient, session: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """Open the event stream, send /start, and return the first reply event (its SSE id and data)."""
    async with client.stream("GET", "/chat/api/events", params={"session": session, **params}) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async with asyncio.timeout(REPLY_TIMEOUT):
            async for line in stream.aiter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif fields.get("event") == "reply":
                    return int(fields["id"]), json.loads(fields["data"])
                else:
                    fields = {}
    raise AssertionError("the stream ended without a reply")


async def test_the_event_stream_delivers_replies_as_they_are_sent(settings):
    async with served(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT) as client:
        session = await new_session(client)

        async def send_soon() -> None:
            await asyncio.sleep(0.3)  # after the stream is open: the reply must arrive on it, not before it
            assert (await say(client, session, "/start")).status_code == 202

        sender = asyncio.create_task(send_soon())
        event_id, greeting = await first_reply_event(client, session)
        await sender
        assert event_id == greeting["id"]
        assert "I'm Lessonbot" in greeting["text"] and greeting["choices"]

        # Reconnecting with the last id seen (as EventSource does) resumes after it.
        assert (await say(client, session, "/help")).status_code == 202
        event_id, commands = await first_reply_event(client, session, after=greeting["id"])
        assert commands["text"].startswith("Here is what you can send me") and event_id > greeting["id"]

        headers = {"Last-Event-ID": str(greeting["id"])}
        async with client.stream("GET", "/chat/api/events", params={"session": session}, headers=headers) as stream:
            async with asyncio.timeout(REPLY_TIMEOUT):
                async for line in stream.aiter_lines():
                    if line.startswith("id: "):
                        assert int(line[4:]) == commands["id"]
                        break


# the page -----------------------------------------------------------------------------------------------------------


async def test_the_page_and_its_files_are_served(client):
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="static/chat.js"' in page.text and 'href="static/chat.css"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing is loaded from elsewhere
    # no other site may show it in a frame of its own
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for path, kind in (("/static/chat.js", "javascript"), ("/static/chat.css", "text/css")):
        response = await client.get(path)
        assert response.status_code == 200 and kind in response.headers["content-type"], path
        assert "innerHTML" not in response.text


async def test_the_pages_content_security_policy_comes_whole_as_a_header(client):
    """The page's policy is a response header, the one policy the page has (no <meta> beside it): it holds from the
    first byte and says what a <meta> cannot, that no other site may frame the page."""
    page = await client.get("/")
    directives = {
        name: values
        for name, *values in (directive.split() for directive in page.headers["content-security-policy"].split(";"))
    }
    assert directives == {
        "default-src": ["'self'"], "script-src": ["'self'"], "style-src": ["'self'"], "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"], "base-uri": ["'none'"], "form-action": ["'self'"], "object-src": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    assert page.headers.get_list("content-security-policy") == [page.headers["content-security-policy"]]
    assert "http-equiv" not in page.text


async def test_the_pages_script_and_style_are_asked_for_again_at_each_load(client):
    """The page is never kept without asking the server, and its script and style neither (a 304 when unchanged): a
    browser that kept them on its own guess (from their age) would run a page of one version with the script of the
    one before after an upgrade."""
    assert (await client.get("/")).headers["cache-control"] == "no-cache"
    for path in ("/static/chat.js", "/static/chat.css"):
        first = await client.get(path)
        assert first.status_code == 200 and first.headers.get("cache-control") == "no-cache", path
        again = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.headers.get("cache-control") == "no-cache", path


def test_a_document_reply_shows_its_name_but_not_where_it_lies_on_the_server():
    payload = Document("certificate.pdf", caption="Well done!", path="/srv/lessonbot/var/cert-7.pdf").to_payload()
    view = reply_view(7, payload)
    assert view["id"] == 7 and view["kind"] == "document"
    assert view["filename"] == "certificate.pdf" and view["caption"] == "Well done!"
    assert "path" not in view and "/srv" not in json.dumps(view)


# health and metrics -------------------------------------------------------------------------------------------------


async def test_health_and_readiness(client):
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "schema": sorted(head_revisions())}


async def test_an_unmigrated_database_is_not_ready(tmp_path):
    settings = load_settings(
        _env_file=None,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-0123456789",
        log_format="text",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app), in_process(app) as client:
        ready = await client.get("/readyz")
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert "lessonbot db upgrade" in ready.json()["reason"]
    assert "is at nothing" in ready.json()["reason"]


def metric(text: str, family: str, sample: str, **labels: str) -> float | None:
    for metric_family in text_string_to_metric_families(text):
        if metric_family.name == family:
            for s in metric_family.samples:
                if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
    return None


async def test_metrics_count_messages_and_show_the_outbox(client):
    before = metric((await client.get("/metrics")).text, "lessonbot_messages_in", "lessonbot_messages_in_total",
                    channel="web") or 0.0
    session = await new_session(client)
    assert (await say(client, session, "/help")).status_code == 202
    assert (await say(client, session, "/help", id="x")).status_code == 202
    assert (await say(client, session, "/help", id="x")).status_code == 200  # a duplicate is not counted
    await wait_for_replies(client, session, count=2)

    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert "lessonbot_messages_in" in response.text and "lessonbot_outbox_depth" in response.text
    assert metric(response.text, "lessonbot_messages_in", "lessonbot_messages_in_total", channel="web") == before + 2
    assert metric(response.text, "lessonbot_outbox_depth", "lessonbot_outbox_depth", status="sent") == 2


# sessions end after a while without use -----------------------------------------------------------------------------

DAY = 86400.0


class MovableClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def web_chat_app(settings: Settings, **options: Any) -> AsyncIterator[tuple[Starlette, WebChatChannel]]:
    """The app with a web chat built here (its clock, its limits), entered like the `app` fixture."""
    webchat = WebChatChannel(settings.resolved_secret_key, **options)
    app = create_app(settings, channels=[webchat])
    async with app.router.lifespan_context(app):
        yield app, webchat


async def test_a_session_ends_after_its_idle_days_and_each_use_renews_it(settings):
    clock = MovableClock()
    async with web_chat_app(settings, session_idle_days=30, clock=clock) as (app, _), in_process(app) as client:
        session = await new_session(client)
        clock.now += 20 * DAY
        posted = await say(client, session, "/help")
        assert posted.status_code == 202
        renewed = posted.json()["session"]
        assert renewed.split(".")[0] == session.split(".")[0] and renewed != session  # the same conversation
        await wait_for_replies(client, renewed)

        clock.now += 20 * DAY  # 40 days after the first token, 20 after the renewed one
        old = await client.get("/chat/api/messages", params={"session": session})
        assert old.status_code == 403 and "was not used for 30 days" in old.json()["error"]
        listed = await client.get("/chat/api/messages", params={"session": renewed})
        assert listed.status_code == 200 and len(listed.json()["replies"]) == 1
        assert (await say(client, session, "/help")).status_code == 403
        assert await count_rows(app, InboundMessage) == 1  # the refused message was not stored

        clock.now += 31 * DAY
        expired = await say(client, listed.json()["session"], "/help")
        assert expired.status_code == 403 and "reload the page" in expired.json()["error"]


async def test_a_session_of_the_old_unexpiring_form_is_refused(client):
    session = await new_session(client)
    session_id, _, rest = session.partition(".")
    _issued, _, signature = rest.partition(".")
    response = await say(client, f"{session_id}.{signature}", "hi")
    assert response.status_code == 403 and "not valid here" in response.json()["error"]


# open event streams are capped and woken, not polling ---------------------------------------------------------------


async def open_stream(client: httpx.AsyncClient, stack: AsyncExitStack, session: str) -> httpx.Response:
    return await stack.enter_async_context(client.stream("GET", "/chat/api/events", params={"session": session}))


async def test_event_streams_are_capped_per_address_and_in_all(settings):
    async with (
        web_chat_app(settings, streams_per_address=2, streams_total=3) as (app, webchat),
        served(app) as url,
        httpx.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT) as client,
    ):
        session = await new_session(client)
        async with AsyncExitStack() as stack:
            streams = [await open_stream(client, stack, session) for _ in range(3)]
            assert [s.status_code for s in streams] == [200, 200, 429]
            body = json.loads(await streams[2].aread())
            assert "Too many open chat pages from your address (the limit is 2)" in body["error"]
            assert streams[2].headers["retry-after"]
            assert webchat.gate.open_count == 2

            # Another address is refused once the process holds its total.
            other = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"), base_url=url, timeout=REPLY_TIMEOUT
            )
            async with other:
                first = await open_stream(other, stack, session)
                second = await open_stream(other, stack, session)
                assert (first.status_code, second.status_code) == (200, 429)
                assert "The chat is very busy right now" in json.loads(await second.aread())["error"]
        # Closed pages free their places.
        async with asyncio.timeout(REPLY_TIMEOUT):
            while webchat.gate.open_count:
                await asyncio.sleep(0.05)
        async with AsyncExitStack() as stack:
            assert (await open_stream(client, stack, session)).status_code == 200


async def test_the_addresses_of_one_ipv6_network_share_its_streams(settings):
    """Whoever has an IPv6 address is handed its whole /64 (2^64 addresses): the streams one address may hold are
    counted for its /64, or one subscriber could take every stream the process allows, an address a stream. The
    client's address is the one a proxy on this machine names (X-Forwarded-For), as uvicorn reads it."""
    async with (
        web_chat_app(settings, streams_per_address=2, streams_total=10) as (app, webchat),
        served(app) as url,
        httpx.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT) as client,
    ):
        session = await new_session(client)
        async with AsyncExitStack() as stack:

            async def open_from(address: str) -> int:
                stream = await stack.enter_async_context(client.stream(
                    "GET", "/chat/api/events", params={"session": session}, headers={"X-Forwarded-For": address}))
                return stream.status_code

            assert [await open_from(f"2001:db8:7:1::{n}") for n in (1, 2, 3)] == [200, 200, 429]
            assert await open_from("2001:db8:7:1:ffff:ffff:ffff:ffff") == 429
            assert await open_from("2001:db8:7:2::1") == 200  # another network
            assert [await open_from(f"198.51.100.{n}") for n in (1, 2, 3)] == [200, 200, 200]  # IPv4: an address each
            assert webchat.gate.open_count == 6


async def test_a_reply_sent_by_another_process_wakes_the_stream_without_its_own_polling(settings):
    """The page's process only records (`serve --no-dispatcher`); a separate dispatcher sends. The reply comes to
    the open stream through the process's one watcher, well before the stream's own slow fallback poll; on
    PostgreSQL through the dispatcher's notice (the watcher is made too slow to matter)."""
    poll = 3600.0 if settings.resolved_database_url.startswith("postgresql") else 1.0
    key = settings.resolved_secret_key
    recorder = create_app(settings, dispatch=False, channels=[WebChatChannel(key, poll_seconds=poll)])
    dispatcher = create_app(settings, process=False, channels=[WebChatChannel(key, poll_seconds=poll)])
    async with (
        dispatcher.router.lifespan_context(dispatcher),
        served(recorder) as url,
        httpx.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT) as client,
    ):
        session = await new_session(client)

        async def send_soon() -> None:
            await asyncio.sleep(0.3)  # after the stream is open
            assert (await say(client, session, "/start")).status_code == 202

        sender = asyncio.create_task(send_soon())
        async with asyncio.timeout(FALLBACK_POLL_SECONDS - 5):
            _, greeting = await first_reply_event(client, session)
        await sender
        assert "I'm Lessonbot" in greeting["text"]


async def reply_events(lines: AsyncIterator[str], count: int) -> list[tuple[int, dict[str, Any]]]:
    """The next `count` reply events of an open stream's lines (their SSE ids and data)."""
    got: list[tuple[int, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(REPLY_TIMEOUT):
        async for line in lines:
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if fields.get("event") == "reply":
                got.append((int(fields["id"]), json.loads(fields["data"])))
                if len(got) == count:
                    return got
            fields = {}
    raise AssertionError("the stream ended before its replies")


async def sent_by_another_process(app: Starlette, session_id: str, text: str) -> int:
    """A reply to the session marked sent by another process's dispatcher (none of this process's knows of it)."""
    async with app.state.lessonbot.db.transaction() as db_session:
        conversation = await db_session.scalar(
            select(Conversation).where(Conversation.channel == "web", Conversation.chat_id == session_id)
        )
        entry = OutboxEntry(conversation.id, "web", session_id, Text(text).to_payload())
        [reply_id] = await enqueue(db_session, [entry])
        await db_session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == reply_id)
            .values(status="sent", platform_message_id=f"web-{reply_id}", sent_at=func.now())
        )
    return reply_id


@dataclass
class Greeted:
    """A web chat session that said /start, its event stream open and its greeting shown."""

    app: Starlette
    client: httpx.AsyncClient
    session: str
    session_id: str
    lines: AsyncIterator[str]
    greeting: int  # the greeting's outbox id


@asynccontextmanager
async def greeted(settings: Settings) -> AsyncIterator[Greeted]:
    async with (
        web_chat_app(settings, poll_seconds=3600.0) as (app, _webchat),
        served(app) as url,
        httpx.AsyncClient(base_url=url, timeout=REPLY_TIMEOUT) as client,
    ):
        session = await new_session(client)
        async with client.stream("GET", "/chat/api/events", params={"session": session}) as stream:
            lines = stream.aiter_lines()
            assert (await say(client, session, "/start")).status_code == 202
            [(greeting, _)] = await reply_events(lines, 1)
            yield Greeted(app, client, session, session.split(".")[0], lines, greeting)


async def test_a_reply_this_process_sends_follows_one_sent_elsewhere_in_between_on_the_stream(settings):
    """A reply this process's dispatcher sends is handed to the open stream with the id of the one sent before it; a
    stream that has not shown that one (sent by another process, which woke no stream here) reads the replies in
    between first, so none is skipped and the order holds. The watcher is made too slow to matter."""
    async with greeted(settings) as page:
        elsewhere = await sent_by_another_process(page.app, page.session_id, "Sent by another process")
        assert (await say(page.client, page.session, "/help")).status_code == 202
        [(first, between), (second, commands)] = await reply_events(page.lines, 2)
    assert page.greeting < first == elsewhere < second
    assert between["text"] == "Sent by another process"
    assert commands["text"].startswith("Here is what you can send me")


# replies queued side by side: every one reaches the stream -----------------------------------------------------------


async def conversation_of(app: Starlette, session_id: str) -> int:
    async with app.state.lessonbot.db.sessions() as db_session:
        return await db_session.scalar(
            select(Conversation.id).where(Conversation.channel == "web", Conversation.chat_id == session_id)
        )


async def queued_by_a_job(app: Starlette, session_id: str, text: str, *, hold: float = 0.0,
                          queued: asyncio.Event | None = None) -> None:
    """A reply queued as a scheduler job queues one (a lesson, a nudge, a broadcast), its transaction held open for
    `hold` seconds after it is queued (`queued` set then) before it commits."""
    conversation_id = await conversation_of(app, session_id)
    async with app.state.lessonbot.db.transaction() as db_session:
        await enqueue(db_session, [OutboxEntry(conversation_id, "web", session_id, Text(text).to_payload())])
        if queued is not None:
            queued.set()
        await asyncio.sleep(hold)
    app.state.lessonbot.dispatcher.notify(conversation_id)


@pytest.mark.parametrize("second", ["a turn", "another job"])
async def test_a_reply_queued_first_and_committed_last_still_reaches_the_stream(settings, second):
    """A job queues a reply and holds its transaction open while a turn (or another job) queues one to the same
    conversation and commits. Ids drawn from a sequence may commit out of order, and a stream shows only replies
    after the last id it has shown: the second writer waits for the first (PostgreSQL: the conversation's row lock;
    SQLite: one writer at a time), so the first reply has the lower id, is sent first, and both are shown."""
    async with greeted(settings) as page:
        queued = asyncio.Event()
        job = asyncio.create_task(queued_by_a_job(page.app, page.session_id, "From a job", hold=1.0, queued=queued))
        await queued.wait()
        if second == "a turn":
            assert (await say(page.client, page.session, "/help")).status_code == 202
        else:
            await queued_by_a_job(page.app, page.session_id, "From another job")
        shown = await reply_events(page.lines, 2)
        await job
    assert [text["text"] for _, text in shown][0] == "From a job"
    assert page.greeting < shown[0][0] < shown[1][0]


async def test_replies_queued_side_by_side_on_a_busy_machine_all_reach_the_stream_in_order(settings):
    """Twenty jobs queue a reply to one conversation at once, each holding its transaction open up to 0.2 s,
    with turns in between, while other processes keep every core busy: the stream shows every reply once, in id
    order."""
    async with greeted(settings) as page:
        generator = random.Random(7)
        with busy_cpu(seconds=30.0):
            writers = [queued_by_a_job(page.app, page.session_id, f"job {n}", hold=generator.uniform(0, 0.2))
                       for n in range(20)]
            writers += [say(page.client, page.session, "/help") for _ in range(4)]
            generator.shuffle(writers)
            await asyncio.gather(*writers)
            async with page.app.state.lessonbot.db.sessions() as db_session:
                queued = list(await db_session.scalars(
                    select(OutboxMessage.id)
                    .where(OutboxMessage.chat_id == page.session_id, OutboxMessage.id > page.greeting)
                    .order_by(OutboxMessage.id)
                ))
            shown = [reply_id for reply_id, _ in await reply_events(page.lines, len(queued))]
    assert shown == queued


async def test_a_requeued_dead_letter_is_shown_after_what_was_sent_meanwhile(settings):
    """A reply that went dead, requeued after later replies were shown, takes a new id at the end of the line: the
    stream shows it next (with its old id it would be behind the stream's last one, never shown)."""
    async with greeted(settings) as page:
        lessonbot = page.app.state.lessonbot
        conversation_id = await conversation_of(page.app, page.session_id)
        async with lessonbot.db.transaction() as db_session:  # as a permanent failure leaves it
            entry = OutboxEntry(conversation_id, "web", page.session_id, Text("Failed once").to_payload())
            [dead] = await enqueue(db_session, [entry])
            await db_session.execute(update(OutboxMessage).where(OutboxMessage.id == dead).values(status="dead"))
        await queued_by_a_job(page.app, page.session_id, "Sent meanwhile")
        [(meanwhile, _)] = await reply_events(page.lines, 1)
        async with lessonbot.db.transaction() as db_session:
            assert await requeue(db_session, [dead]) == 1
        lessonbot.dispatcher.notify(conversation_id)
        [(requeued, again)] = await reply_events(page.lines, 1)
    assert again["text"] == "Failed once" and requeued > meanwhile > dead


async def test_a_lesson_shows_the_page_its_reply_not_what_the_bot_keeps_beside_it(settings):
    """A lesson the planner queues carries, beside the reply, the lesson and part it shows (LESSON_PLACE, for the
    check when a held lesson is let go): the page gets the reply as the channel contract has it, on the event
    stream and on a read of the replies alike, and nothing kept beside it."""
    async with greeted(settings) as page:
        conversation_id = await conversation_of(page.app, page.session_id)
        async with page.app.state.lessonbot.db.transaction() as db_session:
            lesson = {**Text("Part 2 of *Phishing*", (Choice("Next", "next"),)).to_payload(), LESSON_PLACE: [7, 1]}
            await enqueue(db_session, [OutboxEntry(conversation_id, "web", page.session_id, lesson,
                                                   idempotency_key=f"{LESSON_KEY}1:7:2")])
        page.app.state.lessonbot.dispatcher.notify(conversation_id)
        [(_, streamed)] = await reply_events(page.lines, 1)
        [read] = await replies(page.client, page.session, after=page.greeting)
    for shown in (streamed, read):
        assert shown["text"] == "Part 2 of Phishing" and shown["choices"] == [{"label": "Next", "value": "next"}]
        assert LESSON_PLACE not in shown and [7, 1] not in shown.values()


async def test_a_stream_far_behind_is_sent_every_reply_at_once_not_a_page_a_fallback_poll(settings):
    """A page that reconnects more than one read's worth of replies behind (REPLIES_A_READ) is sent them all at
    once: it read the first page, then waited for a bell or the fallback poll (30 s) for each next one."""
    async with greeted(settings) as page:
        backlog = [f"backlog {n}" for n in range(REPLIES_A_READ + 30)]
        for text in backlog:
            await sent_by_another_process(page.app, page.session_id, text)
        params = {"session": page.session, "after": str(page.greeting)}
        async with page.client.stream("GET", "/chat/api/events", params=params) as behind:
            shown = await reply_events(behind.aiter_lines(), len(backlog))
    assert [reply["text"] for _, reply in shown] == backlog


# documents (a certificate) ------------------------------------------------------------------------------------------


async def send_document(app: Starlette, session_id: str, path: str) -> None:
    """Queue a document reply to a web chat session that has written before, as a dialog would."""
    lessonbot = app.state.lessonbot
    async with lessonbot.db.transaction() as db_session:
        conversation = await db_session.scalar(
            select(Conversation).where(Conversation.channel == "web", Conversation.chat_id == session_id)
        )
        document = Document("certificate-spot-phishing.pdf", path=path, media_type="application/pdf")
        await enqueue(db_session, [OutboxEntry(conversation.id, "web", session_id, document.to_payload())])
    lessonbot.dispatcher.notify()


async def test_a_document_is_downloaded_by_its_session_only(client, app, tmp_path):
    pdf = tmp_path / "LB-TEST.pdf"
    pdf.write_bytes(b"%PDF-1.4 a certificate")
    session, stranger = await new_session(client), await new_session(client)
    for someone in (session, stranger):
        assert (await say(client, someone, "/help")).status_code == 202
        await wait_for_replies(client, someone)
    await send_document(app, session.split(".")[0], str(pdf))
    [_, document] = await wait_for_replies(client, session, count=2)
    assert document["kind"] == "document" and str(tmp_path) not in json.dumps(document)
    url = document["url"]
    assert url.startswith("chat/files/") and session.split(".", 1)[1] not in url  # not the session's own key

    download = await client.get(f"/{url}")
    assert download.status_code == 200 and download.content == pdf.read_bytes()
    assert download.headers["content-type"] == "application/pdf"
    assert 'attachment; filename="certificate-spot-phishing.pdf"' in download.headers["content-disposition"]
    assert "no-store" in download.headers["cache-control"]

    _, session_id, reply_id, signature = url.rsplit("/", 3)
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    elsewhere = [
        f"/chat/files/{stranger.split('.')[0]}/{reply_id}/{signature}",  # another session
        f"/chat/files/{session_id}/{reply_id}/{flipped}",  # a guessed signature
        f"/chat/files/{session_id}/{int(reply_id) - 1}/{signature}",  # another reply of the same session
    ]
    for address in elsewhere:
        refused = await client.get(address)
        assert refused.status_code == 404 and b"PDF" not in refused.content, address


# the page's words -----------------------------------------------------------------------------------------------------


async def test_the_pages_language_goes_with_a_message_as_a_platforms_hint(client, app):
    """A Spanish page's "hola" is answered in Spanish: the page's language reaches the bot as Telegram's app language
    does (`meta[LANGUAGE]`), until the learner chooses one."""
    session = await new_session(client)
    response = await client.post("/chat/api/messages", json={"session": session, "text": "hola", "language": "es-ES"})
    assert response.status_code == 202, response.text
    [greeting, *_] = await wait_for_replies(client, session)
    assert "Soy Lessonbot" in greeting["text"]
    async with app.state.lessonbot.db.sessions() as db:
        stored = await db.scalar(select(InboundMessage.payload))
    assert stored["meta"] == {"language": "es-ES"}


async def test_the_page_words_follow_the_browser_then_the_learners_language(client):
    spanish = await client.get("/chat/api/words", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.8"})
    assert spanish.status_code == 200
    assert spanish.json()["language"] == "es"
    assert spanish.json()["words"]["placeholder"] == "Escribe un mensaje…"
    assert spanish.json()["words"]["welcome_hint"] == "Saluda, o envía {command} para empezar."
    unknown = await client.get("/chat/api/words", headers={"Accept-Language": "ja,ko;q=0.5"})
    assert unknown.json()["language"] == "en" and unknown.json()["words"]["online"] == "Online"

    # Once the learner chose a language in the chat, the page speaks it, whatever the browser says.
    session = await new_session(client)
    assert (await say(client, session, "/language es")).status_code == 202
    await wait_for_replies(client, session)
    params = {"session": session}
    learner = await client.get("/chat/api/words", params=params, headers={"Accept-Language": "en-US"})
    assert learner.json()["language"] == "es" and learner.json()["words"]["send"] == "Enviar mensaje"
    # A session no longer valid still gets words, in the browser's language.
    stale = await client.get("/chat/api/words", params={"session": forged(session)}, headers={"Accept-Language": "en"})
    assert stale.status_code == 200 and stale.json()["language"] == "en"


@pytest.mark.parametrize(("header", "language"), [
    ("es;q=0.1, fr;q=0.9, en;q=0.8", "en"),  # French is weighed highest, but there is none: English next
    ("en;q=0.5, es", "es"),  # Spanish, weighed 1, before English, listed first
    ("es-MX;q=0.8, en;q=0.8", "es"),  # equal weights: the header's order
    ("es;q=0", "en"),  # not acceptable: the page's default
    ("en;q=0, *;q=0.5", "es"),  # anything but English
])
async def test_the_page_words_follow_the_weights_of_the_browsers_languages(client, header, language):
    """A browser's Accept-Language weighs its languages (q): the page speaks the one of ours weighed highest, not
    the first listed; one weighed 0 is not acceptable."""
    words = await client.get("/chat/api/words", headers={"Accept-Language": header})
    assert words.status_code == 200 and words.json()["language"] == language


async def test_a_draft_reaches_the_open_stream_at_once_and_is_not_replayed(settings):
    webchat = WebChatChannel(settings.resolved_secret_key)
    async with served(create_app(settings, channels=[webchat])) as url, httpx.AsyncClient(
        base_url=url, timeout=REPLY_TIMEOUT
    ) as client:
        session = await new_session(client)
        session_id = session.split(".")[0]

        async def draft_soon() -> None:
            await asyncio.sleep(0.3)  # after the stream is open
            await webchat.show_draft(session_id, "Smishing is phishing by text message")

        writer = asyncio.create_task(draft_soon())
        async with client.stream("GET", "/chat/api/events", params={"session": session}) as stream:
            fields: dict[str, str] = {}
            async with asyncio.timeout(FALLBACK_POLL_SECONDS - 5):
                async for line in stream.aiter_lines():
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                    elif fields.get("event") == "draft":
                        break
        await writer
        assert json.loads(fields["data"]) == {"text": "Smishing is phishing by text message",
                                              "html": "<p>Smishing is phishing by text message</p>"}
        assert "id" not in fields  # a draft is not replayed on reconnecting


# a start link: /?start=PAYLOAD, as Telegram's t.me/<bot>?start=PAYLOAD ----------------------------------------------


async def said_with_link(app: Starlette, client: httpx.AsyncClient, session: str, text: str,
                         start: str | None = None) -> list[str]:
    """The texts the bot answered one message (posted, as the page posts the first one, with the start link's
    payload)."""
    before = len(await replies(client, session))
    body: dict[str, Any] = {"session": session, "text": text, **({"start": start} if start is not None else {})}
    posted = await client.post("/chat/api/messages", json=body)
    assert posted.status_code == 202, posted.text
    await app.state.lessonbot.settle()
    return [reply["text"] for reply in (await replies(client, session))[before:]]


async def test_a_start_link_on_the_page_address_names_the_course_or_redeems_a_code(app, client):
    """The web chat had no start link: a course's or a cohort's access code could be shared only on Telegram. The page
    opened as /?start=PAYLOAD sends the payload with its first message, and the set-up reads it as Telegram's:
    a course's id is taken instead of asking, an access code is redeemed once the learner agrees; a payload that is
    no start link's (Telegram's 64 letters, digits, _ and -) is refused, saying what one is."""
    lessonbot = app.state.lessonbot
    async with lessonbot.db.transaction() as db_session:
        for folder in (SAMPLE, PAID):
            await import_course(db_session, load_course(folder))
    async with lessonbot.db.transaction() as db_session:
        course = await db_session.scalar(select(Course).where(Course.slug == "passwords-that-hold"))
        code = (await make_code(db_session, course.id, uses=5, created_by="test", now=utcnow())).code

    ann = await new_session(client)
    [greeting] = await said_with_link(app, client, ann, "hello", start="passwords-that-hold")
    assert greeting.startswith("Hi! I'm Lessonbot")
    for text in ("yes", "Ann", "Lisbon", "yes", "08:00"):
        await said_with_link(app, client, ann, text)
    assert await said_with_link(app, client, ann, "every day") == ["How much would you like to do each day?"]
    [done] = await said_with_link(app, client, ann, "1")
    assert "Course: Passwords that hold." in done

    bea = await new_session(client)
    await said_with_link(app, client, bea, "/start", start=code)
    assert (await said_with_link(app, client, bea, "yes"))[0] == (
        "🎟️ Code accepted: “Passwords that hold” is open to you.")

    refused = await client.post("/chat/api/messages", json={"session": bea, "text": "hi", "start": "<b>x</b>"})
    assert refused.status_code == 422 and "'start'" in refused.json()["error"]
