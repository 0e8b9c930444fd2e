"""The pipeline across real processes: a crash between recording and processing, the terminal chat."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest
from sqlalchemy import func, select

from storage.db import Database
from storage.models import InboundMessage, OutboxMessage
from tests.support import LESSONBOT, ServerProcess, serve, server_env

pytestmark = pytest.mark.slow


def replies(server: ServerProcess, session: str) -> list[dict]:
    return httpx.get(f"{server.url}/chat/api/messages", params={"session": session}, timeout=5).json()["replies"]


async def test_killed_after_recording_the_message_is_processed_once_after_restart(database_url, tmp_path):
    env = server_env(database_url, tmp_path / "var", WORKER_LEASE_SECONDS="2")
    # A server that only records: it acknowledges, then dies by SIGKILL before anything is processed.
    recorder = serve(env, "--no-worker", "--no-dispatcher")
    try:
        session = httpx.post(f"{recorder.url}/chat/api/sessions").json()["session"]
        body = {"session": session, "text": "/start", "id": "m-1"}
        assert httpx.post(f"{recorder.url}/chat/api/messages", json=body).status_code == 202
    finally:
        recorder.kill()

    server = serve(env)
    try:
        # The browser retries the same message after the crash: recognised, not processed twice.
        assert httpx.post(f"{server.url}/chat/api/messages", json=body).json()["status"] == "duplicate"
        deadline = time.monotonic() + 15
        while not replies(server, session) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # any second processing would have produced a second greeting by now
        got = replies(server, session)
        assert len(got) == 1 and got[0]["text"].startswith("Hi")
    finally:
        server.stop()
    db = Database(database_url)
    try:
        async with db.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(InboundMessage)) == 1
            assert await s.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    finally:
        await db.dispose()


def test_terminal_chat_takes_piped_lines(database_url, tmp_path):
    env = server_env(database_url, tmp_path / "var")
    result = subprocess.run(
        [*LESSONBOT, "chat", "--user", "ann"], input="/start\n\n1\n/nope\n",
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("bot> ") == 3
    assert "Hi ann!" in out and "[1] Yes, let's start" in out and "[3] Show commands" in out
    assert "What should I call you?" in out  # "1" picked the numbered choice
    assert "I don't know the command /nope" in out
