"""`lessonbot chat --user NAME`: the terminal shows NAME's replies and nobody else's, including the ones queued
while no terminal was open (a scheduled lesson, a broadcast)."""

from __future__ import annotations

import asyncio
import io

import pytest
from sqlalchemy import select

from bot.cli import main
from bot.messages import Text
from bot.pipeline import ID_LENGTHS
from storage.db import Database
from storage.models import OutboxMessage
from storage.outbox import OutboxEntry, enqueue
from storage.queries import get_or_create_conversation

LONGEST = min(ID_LENGTHS["chat_id"], ID_LENGTHS["sender_id"])  # the longest id the core records


@pytest.fixture
def chat(database_url, tmp_path, monkeypatch, capsys):
    """`lessonbot chat --user USER` with LINES piped in; what it printed."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))

    async def run(user: str, *lines: str) -> str:
        monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"{line}\n" for line in lines)))
        capsys.readouterr()
        assert await asyncio.to_thread(main, ["chat", "--user", user]) == 0
        return capsys.readouterr().out

    return run


async def queue_for(database_url: str, user: str, text: str) -> int:
    """A reply queued for a terminal user while their terminal is closed, as the clock or a broadcast queues it."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            conversation = await get_or_create_conversation(session, "console", user)
            [row] = await enqueue(session, [OutboxEntry(conversation, "console", user, Text(text).to_payload())])
            return row
    finally:
        await db.dispose()


async def status_of(database_url: str, row: int) -> str:
    db = Database(database_url)
    try:
        async with db.sessions() as session:
            return await session.scalar(select(OutboxMessage.status).where(OutboxMessage.id == row))
    finally:
        await db.dispose()


async def test_a_terminal_shows_only_its_own_persons_replies(chat, database_url):
    await chat("pat", "hi")
    for_pat = await queue_for(database_url, "pat", "hello everyone")

    luz_saw = await chat("luz", "hi")
    assert "hello everyone" not in luz_saw and "bot> " in luz_saw  # luz's own replies still come
    assert await status_of(database_url, for_pat) == "pending"

    pat_saw = await chat("pat")  # nothing typed: what waited is shown on opening
    assert "bot> hello everyone" in pat_saw
    assert await status_of(database_url, for_pat) == "sent"


@pytest.mark.parametrize(("user", "says"), [
    ("", "argument --user: it is empty: give a name, e.g. --user ann"),
    ("  ", "argument --user: it is empty: give a name, e.g. --user ann"),
    ("a" * (LONGEST + 1), f"argument --user: {LONGEST + 1} characters is too long: at most {LONGEST}"),
    ("ann\udcff", "holds a character no database stores"),  # a byte of the command line that is not UTF-8
])
def test_a_user_the_core_would_refuse_is_refused_as_the_command_is_read(tmp_path, monkeypatch, capsys, user, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setattr("sys.stdin", io.StringIO("/help\n"))
    with pytest.raises(SystemExit) as stopped:
        main(["chat", "--user", user])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "var").exists()  # refused before anything was opened


async def test_the_longest_user_the_core_takes_is_taken(chat):
    assert "bot> " in await chat("a" * LONGEST, "/help")
