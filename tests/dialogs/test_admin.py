"""/admin: permission check, audit log, and the outbox commands."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.channel import PermanentSendError
from bot.core import Lessonbot
from dialogs.admin import UNKNOWN_COMMAND
from storage.models import AdminAuditEntry, OutboxMessage
from tests.support import RecordingChannel, Transcript


@pytest.fixture
async def bot(settings):
    channel = RecordingChannel()
    lessonbot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    yield lessonbot, channel
    await lessonbot.stop()


async def audit(bot: Lessonbot) -> list[tuple[str, str, str]]:
    async with bot.db.sessions() as session:
        rows = await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))
        return [(r.identity, r.command, r.outcome) for r in rows]


async def test_non_admin_is_refused_and_told_how_to_become_one(bot):
    lessonbot, channel = bot
    [reply] = await Transcript(lessonbot, channel, chat="ann").say("/admin stats")
    assert "admins only" in reply and "test:ann" in reply and "ADMINS" in reply
    assert await audit(lessonbot) == [("test:ann", "stats", "denied")]


async def test_help_lists_the_admin_commands_to_an_admin_only_however_often_asked(bot):
    """/help's text is made once for each language and kind of reader: an admin and a learner asking in turns
    each get their own, every time."""
    lessonbot, channel = bot
    boss, ann = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="ann")
    for _ in range(2):
        [to_boss] = await boss.say("/help")
        [to_ann] = await ann.say("/help")
        assert to_boss.startswith("Here is what you can send me") and "/admin help" in to_boss
        assert to_ann.startswith("Here is what you can send me") and "/admin" not in to_ann


async def test_a_command_that_takes_nothing_says_so_when_words_follow_it(bot):
    """Words after a command that takes none are no part of it: `/admin payments passwords` would otherwise list
    every course's payments as if they were that course's. The answer says to send it alone, and it is audited as
    mistyped; alone, or with spaces after it, it runs."""
    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    for name, words in (("stats", "today"), ("outbox", "5"), ("payments", "passwords"), ("nudges", "streak"),
                        ("dashboard", "now"), ("help", "broadcast")):
        assert await boss.say(f"/admin {name} {words}") == [f"/admin {name} takes nothing after it: send /admin "
                                                             f"{name} alone."]
    [stats] = await boss.say("/admin stats  ")
    assert stats.startswith("Learners: 0")
    assert await audit(lessonbot) == [("test:boss", name, "invalid") for name in
                                      ("stats", "outbox", "payments", "nudges", "dashboard", "help")] + [
        ("test:boss", "stats", "ok")]


async def test_admin_stats_and_help_are_audited(bot):
    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    [stats] = await boss.say("/admin stats")
    assert "Learners: 0" in stats and "Messages received: 1" in stats  # an admin is no learner until they agree
    [help_text] = await boss.say("/admin")
    assert "/admin requeue" in help_text
    [unknown] = await boss.say("/admin explode")
    assert unknown == "There is no such admin command. Send /admin help for the list."
    [usage] = await boss.say("/admin requeue please")
    assert usage.startswith("Usage: /admin requeue")
    assert await audit(lessonbot) == [
        ("test:boss", "stats", "ok"),
        ("test:boss", "help", "ok"),
        ("test:boss", UNKNOWN_COMMAND, "invalid"),
        ("test:boss", "requeue", "invalid"),
    ]


async def test_admin_sees_failed_replies_and_requeues_them(bot):
    lessonbot, channel = bot
    channel.failures.append(PermanentSendError("bot was blocked by the user"))
    await Transcript(lessonbot, channel, chat="ann").say("/help")
    boss = Transcript(lessonbot, channel, chat="boss")
    [listing] = await boss.say("/admin outbox")
    assert "test:ann after 1 try — bot was blocked by the user" in listing
    [done] = await boss.say("/admin requeue all")
    assert done == "Requeued 1 failed reply."
    await lessonbot.settle()
    async with lessonbot.db.sessions() as session:
        statuses = list(await session.scalars(select(OutboxMessage.status)))
    assert "dead" not in statuses
    assert len(channel.texts("ann")) == 1


async def test_help_shows_admin_commands_only_to_admins(bot):
    lessonbot, channel = bot
    [for_learner] = await Transcript(lessonbot, channel, chat="ann").say("/help")
    [for_admin] = await Transcript(lessonbot, channel, chat="boss").say("/help")
    assert "/admin" not in for_learner and "/admin help" in for_admin


async def test_stats_count_as_learners_only_the_people_who_agreed(bot):
    lessonbot, channel = bot
    declined, agreed = Transcript(lessonbot, channel, chat="ann"), Transcript(lessonbot, channel, chat="bo")
    for person in (declined, agreed):
        await person.say("hello")
    await declined.say("No, thanks", choice="consent:no")
    await agreed.say("Yes, let's start", choice="consent:yes")
    [stats] = await Transcript(lessonbot, channel, chat="boss").say("/admin stats")
    assert stats.startswith("Learners: 1\n")


async def test_the_broadcast_example_names_the_sample_course(bot):
    """The example must work as typed on a fresh install: its course is the one `make run` imports."""
    import re

    from authoring.format import load_course
    from tests.dialogs.learning_support import SAMPLE

    lessonbot, channel = bot
    [usage] = await Transcript(lessonbot, channel, chat="boss").say("/admin broadcast")
    example = next(line for line in usage.splitlines() if line.startswith("For example:"))
    assert re.search(r"course=(\S+)", example)[1] == load_course(SAMPLE).id


async def test_a_command_split_by_a_tab_or_a_no_break_space_is_read_and_audited_without_what_was_typed(bot):
    """A tab or a no-break space (a phone keyboard, a copy-paste) separates like a space; a name that is no command
    is neither echoed nor kept in the audit: what was typed may be an address."""
    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    [tabbed] = await boss.say("/admin requeue\tplease")
    assert tabbed.startswith("Usage: /admin requeue")
    [no_break] = await boss.say("/admin requeue\u00a0please")
    assert no_break.startswith("Usage: /admin requeue")
    [glued] = await boss.say("/admin test:ann-42")
    assert "ann" not in glued
    async with lessonbot.db.sessions() as session:
        rows = [(r.command, r.arguments) for r in await session.scalars(select(AdminAuditEntry).order_by(
            AdminAuditEntry.id))]
    assert rows == [("requeue", "please"), ("requeue", "please"), (UNKNOWN_COMMAND, "")]


async def test_what_names_learners_or_admins_is_answered_only_in_a_private_chat(bot):
    """In a group the bot shows nothing that belongs to one member alone: an admin's /admin outbox (learners'
    addresses and why their replies failed), /admin payments (who paid what) and /admin role list (who administers)
    typed there are refused, as /admin export is, and nothing of them reaches the group; counts may be shown."""
    lessonbot, channel = bot
    channel.failures.append(PermanentSendError("bot was blocked by the user"))
    await Transcript(lessonbot, channel, chat="ann").say("/help")
    await Transcript(lessonbot, channel, chat="boss").say("/admin role grant test:bea support")
    group = Transcript(lessonbot, channel, chat="staff-room", sender="boss")
    for typed, name in (("outbox", "outbox"), ("payments", "payments"), ("role list", "role")):
        [refused] = await group.say(f"/admin {typed}")
        assert refused == (f"Its answer names learners or admins, so I give it only in a private chat: send /admin "
                           f"{name} to me there.")
    assert not any("test:ann" in text or "test:bea" in text for text in channel.texts("staff-room"))
    [stats] = await group.say("/admin stats")
    assert stats.startswith("Learners: ")
    [listing] = await Transcript(lessonbot, channel, chat="boss").say("/admin outbox")
    assert "test:ann after 1 try" in listing
    assert [line for line in await audit(lessonbot) if line[1] in ("outbox", "payments", "role")] == [
        ("test:boss", "role", "ok"), ("test:boss", "outbox", "invalid"), ("test:boss", "payments", "invalid"),
        ("test:boss", "role", "invalid"), ("test:boss", "outbox", "ok"),
    ]
