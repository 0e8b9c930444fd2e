"""`lessonbot admin role grant` refuses a role that could never hold (a channel Lessonbot has not, a scope's course
id mistyped) and notes a course not installed yet; a revoke takes away whatever is stored."""

from __future__ import annotations

import asyncio

from storage.admins import add_role
from storage.db import Database
from tests.bot.test_admin_cli import audited, shell, stored  # noqa: F401


def stored_unchecked(settings, identity: str) -> None:
    """An admin role for `identity` as it was stored before the commands checked what they store."""
    async def store() -> None:
        db = Database(settings.resolved_database_url)
        try:
            async with db.transaction() as session:
                await add_role(session, identity, "admin", "", by="cli:operator")
        finally:
            await db.dispose()

    asyncio.run(store())


def test_a_role_that_could_never_hold_is_refused_and_audited(shell, settings):
    code, out, err = shell("admin", "role", "grant", "telegran:12345", "admin")
    assert (code, out) == (2, "")
    assert err == ("'telegran:12345' is on no channel Lessonbot has (console, web, telegram, whatsapp, slack, rasa): "
                   "check how it is spelled.\n")
    code, out, err = shell("admin", "role", "grant", "telegram:7", "author", "course:Spot-Phishing")
    assert (code, out) == (2, "")
    assert err == "'Spot-Phishing' is no course id: use lowercase letters, digits and hyphens, e.g. spot-phishing.\n"
    assert stored(settings, "telegran:12345") == [] and stored(settings, "telegram:7") == []
    assert [outcome for *_rest, outcome in audited(settings)] == ["invalid", "invalid"]

    stored_unchecked(settings, "telegran:12345")  # a role stored before these checks were made is still taken away
    assert shell("admin", "role", "revoke", "telegran:12345", "admin") == (
        0, "telegran:12345 is no longer admin.\n", "")


def test_a_role_stored_under_a_number_spelled_otherwise_is_taken_away_as_it_is_listed(shell, settings):
    """A role stored before WhatsApp numbers were read in E.164 ("whatsapp:15551234567", which never held): a revoke
    naming it as `role list` shows it takes it away, and one naming the number in E.164 finds none."""
    stored_unchecked(settings, "whatsapp:15551234567")
    assert "whatsapp:15551234567" in shell("admin", "role", "list")[1]
    assert shell("admin", "role", "revoke", "whatsapp:15551234567", "admin") == (
        0, "whatsapp:15551234567 is no longer admin.\n", "")
    assert stored(settings, "whatsapp:15551234567") == []
    assert shell("admin", "role", "revoke", "whatsapp:+15551234567", "admin")[0] == 1


def test_a_course_not_installed_yet_is_noted(shell, settings):
    assert shell("admin", "role", "grant", "telegram:7", "author", "course:spot-fishing") == (
        0, "telegram:7 is now author (course:spot-fishing).\n",
        "Note: There is no course 'spot-fishing'. Courses: —. The role holds once it is installed (lessonbot course "
        "import).\n")

