"""`lessonbot admin role grant|revoke|list`: roles changed from the shell, by the same rules as in chat, audited as
done by the operator's login."""

from __future__ import annotations

import asyncio
import re

import pytest
from sqlalchemy import select

from bot.cli import main
from dialogs.roles import grants_of
from storage.db import Database
from storage.models import AdminAuditEntry
from storage.scheduling import Broadcast
from tests.scheduler.support import add_learner, add_learner_to, sample_course


@pytest.fixture
def shell(settings, monkeypatch, capsys):
    """Run `lessonbot …` in this process against the test database; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    monkeypatch.setenv("ADMINS", "telegram:1")
    monkeypatch.setenv("USER", "operator")
    monkeypatch.setenv("LOGNAME", "operator")

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def stored(settings, identity: str) -> list[str]:
    async def read() -> list[str]:
        db = Database(settings.resolved_database_url)
        try:
            async with db.sessions() as session:
                return [f"{g.role} {g.scope}".strip() for g in await grants_of(session, identity, owners=())]
        finally:
            await db.dispose()

    return asyncio.run(read())


def audited(settings) -> list[tuple[str, str, str, str]]:
    async def read() -> list[tuple[str, str, str, str]]:
        db = Database(settings.resolved_database_url)
        try:
            async with db.sessions() as session:
                rows = await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))
                return [(r.identity, r.command, r.arguments, r.outcome) for r in rows]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_grant_list_and_revoke_from_the_shell(shell, settings):
    assert shell("admin", "role", "grant", "slack:T01/U02", "admin", "team:T01") == (
        0, "slack:T01/U02 is now admin (team:T01).\n", "")
    assert shell("admin", "role", "grant", "telegram:7", "author", "course:spot-phishing")[0] == 0
    code, out, _err = shell("admin", "role", "list")
    assert code == 0
    assert out.splitlines()[0] == "telegram:1\towner\t(the ADMINS setting)"
    assert "slack:T01/U02\tadmin (team:T01)\tgranted by cli:operator" in out
    assert "telegram:7\tauthor (course:spot-phishing)" in out
    assert stored(settings, "slack:T01/U02") == ["admin team:T01"]

    assert shell("admin", "role", "revoke", "slack:T01/U02", "admin", "team:T01")[:2] == (
        0, "slack:T01/U02 is no longer admin (team:T01).\n")
    assert shell("admin", "role", "revoke", "slack:T01/U02", "admin", "team:T01")[0] == 1  # nothing to take
    assert stored(settings, "slack:T01/U02") == []


def test_a_mistyped_role_is_refused_and_audited(shell, settings):
    code, out, err = shell("admin", "role", "grant", "telegram:7", "superuser")
    assert (code, out) == (2, "") and "'superuser' is no role" in err
    assert audited(settings) == [("cli:operator", "role", "grant telegram:7 superuser", "invalid")]


def broadcasts_by(settings) -> list[str]:
    async def read() -> list[str]:
        db = Database(settings.resolved_database_url)
        try:
            async with db.sessions() as session:
                return list(await session.scalars(select(Broadcast.created_by).order_by(Broadcast.id)))
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_a_broadcast_sent_or_cancelled_from_the_shell_is_audited_as_the_operators(shell, settings):
    """An announcement to every learner is as much an admin's act from the shell as from chat: who sent it and who
    stopped it are in the audit log, as `lessonbot codes` and `payments refund` are."""
    add_learner_to(settings.resolved_database_url, chat="s0", channel="telegram")
    code, out, _err = shell("broadcast", "send", "--channel", "telegram", "--text", "New lessons are out!", "--yes")
    assert code == 0
    number = re.search(r"Broadcast #(\d+) is going out", out)[1]
    assert shell("broadcast", "cancel", number)[0] == 0
    assert shell("broadcast", "send", "--course", "nope", "--text", "Hello", "--yes")[0] == 2
    assert audited(settings) == [
        ("cli:operator", "broadcast send", "--channel telegram New lessons are out!", "ok"),
        ("cli:operator", "broadcast cancel", number, "ok"),
        ("cli:operator", "broadcast send", "--course nope Hello", "invalid"),
    ]
    assert broadcasts_by(settings) == ["cli:operator"]


def test_a_course_published_unpublished_or_replies_requeued_from_the_shell_are_audited(shell, settings):
    """`lessonbot course publish|unpublish` and `lessonbot outbox requeue` do from the shell what `/admin publish`,
    `/admin unpublish` and `/admin requeue` do in chat, where every one is audited: so are they here."""
    async def course() -> None:
        db = Database(settings.resolved_database_url)
        try:
            await sample_course(db)
        finally:
            await db.dispose()

    asyncio.run(course())
    assert shell("course", "unpublish", "spot-phishing")[0] == 0
    assert shell("course", "publish", "Spot-Phishing")[0] == 0
    assert shell("course", "publish", "spot-fishing")[0] == 1
    assert shell("outbox", "requeue", "--all")[0] == 0
    assert shell("outbox", "requeue")[0] == 2
    assert audited(settings) == [
        ("cli:operator", "course unpublish", "spot-phishing", "ok"),
        ("cli:operator", "course publish", "Spot-Phishing", "ok"),
        ("cli:operator", "course publish", "spot-fishing", "invalid"),
        ("cli:operator", "outbox requeue", "--all", "ok"),
        ("cli:operator", "outbox requeue", "", "invalid"),
    ]


def test_a_learner_exported_or_erased_from_the_shell_is_audited_as_the_operators(shell, settings, tmp_path):
    """An export from the shell hands out a person's data as `/admin export` and the dashboard's do, and an erasure
    is as final: both audit lines name who ran them (`cli:<login name>`), not a bare "cli" that names nobody."""
    async def learners() -> None:
        db = Database(settings.resolved_database_url)
        try:
            for chat in ("s0", "s1"):
                await add_learner(db, chat=chat, channel="telegram")
        finally:
            await db.dispose()

    asyncio.run(learners())
    assert shell("learner", "export", "telegram:s0", "--output", str(tmp_path / "s0.json"))[0] == 0
    assert shell("learner", "export", "telegram:nobody")[0] == 1
    assert shell("learner", "erase", "telegram:s1", "--yes")[0] == 0
    lines = audited(settings)
    assert [(identity, command, outcome) for identity, command, _arguments, outcome in lines] == [
        ("cli:operator", "learner export", "ok"),
        ("cli:operator", "learner export", "invalid"),
        ("cli:operator", "erase", "ok"),
    ]
    assert lines[0][2] == "telegram:s0" and lines[1][2] == "telegram:nobody"
