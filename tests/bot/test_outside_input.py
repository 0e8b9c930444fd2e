"""Odd input from outside gets a clear answer, never a 500 or a traceback: the web chat's session token with a lone
surrogate (403) and a text of NULs only (422, nothing stored); the Rasa action server's call with a version that is
no string, or nested past the JSON depth bound (400); a line piped to `lessonbot chat` that is not UTF-8."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import create_app
from bot.cli import main
from storage.models import InboundMessage
from tests.bot.rasa_support import ACTIONS_TOKEN, example_domain, rasa_assistant


@pytest.fixture
async def web(settings):
    """The real app (lifespan entered); a client that shows a 500 as the answer, as uvicorn would send it."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test") as client:
            yield app, client


async def inbound_count(app) -> int:
    async with app.state.lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(InboundMessage))


# The web chat: a session token holding a lone surrogate is refused as any other not ours -----------------------


@pytest.mark.parametrize("token", ["\\ud800.1700000000.0123456789abcdef0123456789abcdef",
                                   "abc.1700000000.\\udc00"])
async def test_a_session_token_with_a_lone_surrogate_is_refused_not_a_500(web, token):
    app, client = web
    body = ('{"session": "' + token + '", "text": "hi"}').encode()  # valid JSON: \ud800 is a legal escape
    response = await client.post("/chat/api/messages", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 403, (response.status_code, response.text)
    assert await inbound_count(app) == 0


# The web chat: a text of NUL characters only is empty ------------------------------------------------------------


async def test_a_text_of_nul_characters_only_is_refused_like_an_empty_one(web):
    app, client = web
    session = (await client.post("/chat/api/sessions")).json()["session"]
    empty = await client.post("/chat/api/messages", json={"session": session, "text": "", "id": "e"})
    assert empty.status_code == 422  # the API refuses an empty message ...
    nul = await client.post("/chat/api/messages", json={"session": session, "text": "\u0000\u0000", "id": "n"})
    # ... and so is one that is empty once its NULs are taken out (they are never stored)
    assert nul.status_code == 422, (nul.status_code, nul.text)
    assert await inbound_count(app) == 0


# The Rasa action server: a malformed action call is a 400 -----------------------------------------------------------


@pytest.mark.parametrize("version", [3, ["3", "6"], {"v": 1}])
async def test_an_action_call_whose_version_is_not_a_string_is_not_a_500(settings, version):
    async with rasa_assistant(settings) as (rasa, bot):
        base = rasa.action_endpoint.removesuffix("/webhook")
        call = {"next_action": "action_lessonbot_next", "sender_id": "u1", "version": version,
                "tracker": rasa.conversation("u1").state(), "domain": example_domain()}
        async with httpx.AsyncClient(base_url=base, params={"token": ACTIONS_TOKEN}) as client:
            response = await client.post("/webhook", json=call)
    assert response.status_code < 500, (response.status_code, response.text)


async def test_a_deeply_nested_action_call_is_refused_with_400_not_a_500(settings):
    async with rasa_assistant(settings) as (rasa, bot):
        base = rasa.action_endpoint.removesuffix("/webhook")
        deep = b"[" * 100_000 + b"]" * 100_000
        nested = b'{"next_action": "action_lessonbot_next", "tracker": {}, "x": ' + deep + b"}"
        assert len(nested) < 8 * 1024 * 1024  # well within the action server's body limit
        async with httpx.AsyncClient(base_url=base, params={"token": ACTIONS_TOKEN}) as client:
            response = await client.post("/webhook", content=nested)
            still = await client.get("/health")
    assert still.status_code == 200
    assert response.status_code == 400, (response.status_code, response.text)


# The terminal: a line that is not UTF-8 is read, and the chat goes on ------------------------------------------------


async def test_a_line_that_is_not_utf8_does_not_end_the_terminal_chat_with_a_traceback(
    database_url, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    # stdin as Python opens it in a UTF-8 locale such as en_US.UTF-8 (errors="strict"), a Latin-1 "é" piped in
    typed = b"/help\ncaf\xe9\n/progress\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(typed), encoding="utf-8", errors="strict"))
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["chat", "--user", "ann"])
    out = capsys.readouterr().out
    assert status == 0
    assert "Here is what you can send me" in out  # /help, before the bad line
    assert out.count("bot> ") >= 3  # the bad line and /progress after it got answers too
