"""/admin broadcast as an admin types it: the actions and options only as their usage writes them (anything else is
the message), and a date that UTC cannot hold refused with the command's answer, audited, in any time zone."""

from __future__ import annotations

import re

from sqlalchemy import select

from bot.core import Lessonbot
from storage.models import AdminAuditEntry
from storage.scheduling import Broadcast
from tests.dialogs.learning_support import Learning, onboard
from tests.dialogs.test_admin_roles import bot  # noqa: F401


async def audit(bot: Lessonbot) -> list[tuple[str, str, str]]:
    async with bot.db.sessions() as session:
        rows = await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))
        return [(r.command, r.arguments, r.outcome) for r in rows]


async def drafts(bot: Lessonbot) -> list[str]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(Broadcast.text).order_by(Broadcast.id)))


async def test_a_date_utc_cannot_hold_is_refused_and_audited_in_a_zone_east_of_utc(bot):
    """Midnight of 0001-01-01 in Tokyo is before the first moment UTC can hold: refused as no date, not a crash."""
    lessonbot, channel = bot
    boss = Learning(lessonbot, channel, chat="boss")
    await onboard(boss, zone="Tokyo")
    [refused] = await boss.say("/admin broadcast inactive=0001-01-01 Hello")
    assert refused.startswith("“0001-01-01” is not a number of days or a date like 2026-11-01.\nUsage:")
    [far] = await boss.say("/admin broadcast inactive=9999-12-31 Hello")
    assert far.startswith("Broadcast #") and "(not active since 31 December 9999 00:00):\n\nHello" in far
    assert await audit(lessonbot) == [("broadcast", "inactive=0001-01-01 Hello", "invalid"),
                                      ("broadcast", "inactive=9999-12-31 Hello", "ok")]


async def test_a_message_that_starts_with_an_action_or_option_word_is_the_message(bot):
    """Only the forms the usage writes are actions and options; those keep working."""
    lessonbot, channel = bot
    await onboard(Learning(lessonbot, channel, chat="ann"))
    boss = Learning(lessonbot, channel, chat="boss")
    messages = ["Status update: lessons resume Monday", "Send us your questions!", "cancel the quiz, read lesson 3",
                "Everyone should read lesson 3 today", "Inactive=7 is what we call you after a week away"]
    for text in messages:
        [preview] = await boss.say(f"/admin broadcast {text}")
        assert preview.startswith("Broadcast #") and f"learner (everyone):\n\n{text}\n\nSend it?" in preview, preview

    [preview] = await boss.say("/admin broadcast everyone course=spot-phishing Hello")
    number = int(re.match(r"Broadcast #(\d+) goes to 1 learner \(enrolled in spot-phishing\):\n\nHello", preview)[1])
    [status] = await boss.say(f"/admin broadcast status #{number}")
    assert status.startswith(f"#{number} draft, not sent: “Hello”")
    assert (await boss.say("/admin broadcast status"))[0].startswith(f"#{number} draft, not sent")
    assert await boss.say("/admin broadcast send") == ["Usage: /admin broadcast send ID (the number the preview "
                                                       "showed)."]
    assert await boss.say("/admin broadcast cancel ²") == ["Usage: /admin broadcast cancel ID (the number the "
                                                           "preview showed)."]
    assert await boss.say(f"/admin broadcast cancel #{number}") == [f"Broadcast #{number} is cancelled."]
    assert await drafts(lessonbot) == [*messages, "Hello"]
