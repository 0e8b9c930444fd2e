"""Reminders decided but never sent are shown to the admins, per kind, with why and what to do about it: `/admin
nudges` and the dashboard's reminder table read them from the nudge log (`storage.dashboard.nudges_not_sent`),
where the sweep records a nudge skipped past WhatsApp's 24-hour window or held out; a template's record counts only
what was delivered."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from datetime import timedelta

from bot.channel import unprompted_windows
from scheduler.nudges import settle, sweep
from storage.models import utcnow
from tests.bot.test_dashboard import dashboard, sign_in
from tests.scheduler.nudge_support import whatsapp
from tests.scheduler.support import HandClock, add_learner, context, daytime_zone, sample_course
from tests.support import Transcript

WINDOW = ("outside the platform's window for messages the learner did not ask for (WhatsApp: 24 hours after they "
          "last wrote), with no template configured: set TWILIO_TEMPLATE_CONTENT_SID")
HELD = "held out on purpose (NUDGE_HOLDOUT)"


async def test_nudges_skipped_past_whatsapps_window_or_held_out_are_counted_with_why(settings):
    async with dashboard(settings) as (client, bot, channel):
        now = utcnow()
        away = now - timedelta(days=1, minutes=5)
        course = await sample_course(bot.db)
        zone = daytime_zone(now)
        # A WhatsApp learner away a day, past the 24-hour window, no template configured: the nudge is skipped.
        await add_learner(bot.db, channel="whatsapp", chat="+15550000001", zone=zone, course_id=course,
                          last_active_at=away)
        clock = HandClock(now)
        skipping = context(bot.db, clock, rng=random.Random(6), unprompted_windows=unprompted_windows([whatsapp()]))
        assert await sweep(skipping) == Counter({"inactive:skipped": 1})
        # Two more, elsewhere, held out on purpose (decided, never sent).
        for chat in ("ann", "bob"):
            await add_learner(bot.db, chat=chat, zone=zone, course_id=course, last_active_at=away)
        holding = context(bot.db, clock, rng=random.Random(7), nudge_holdout=1.0)
        assert await sweep(holding) == Counter({"inactive:held out": 2})
        clock.move(minutes=5)
        await settle(holding)  # too early to say for the held out: no record of theirs yet

        [report] = await Transcript(bot, channel, "boss").say("/admin nudges")
        inactive = report.split("\ninactive:\n")[1].split("\n\n")[0].splitlines()
        assert inactive[-2:] == [f"• 2 reminders not sent: {HELD}", f"• 1 reminder not sent: {WINDOW}"]
        assert all(line.endswith("not sent yet") for line in inactive[:-2])  # nothing was delivered
        assert "reminder not sent" not in report.split("\nfarewell:\n")[1]  # per kind: the others have none

        await sign_in(client, bot, channel)
        table = await client.get("/admin/engagement/nudges.csv")
        assert table.status_code == 200
        rows = list(csv.reader(io.StringIO(table.text)))
        assert rows[0][-1] == "not sent"
        assert ["inactive", WINDOW, "", "", "", "", "1"] in rows
        assert ["inactive", HELD, "", "", "", "", "2"] in rows
        assert all(row[-1] == "" for row in rows[1:] if row[0] != "inactive")
        page = await client.get("/admin/engagement")
        assert "set TWILIO_TEMPLATE_CONTENT_SID" in page.text
