"""`lessonbot codes create|list|disable`: the command line in a child process, against the database the chat uses;
the codes it makes are redeemed in the chat, and every create and disable is audited."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select

from bench.processes import LESSONBOT
from bot.core import Lessonbot
from storage.models import AdminAuditEntry
from storage.payments import AccessCode
from tests.dialogs.learning_support import PAID, Learning, import_sample, onboard
from tests.support import RecordingChannel, server_env


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*LESSONBOT, "codes", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_create_list_and_disable_codes_from_the_command_line(settings, tmp_path):
    channel = RecordingChannel()
    bot = Lessonbot(settings, [channel])
    try:
        await import_sample(bot, PAID)
        env = server_env(settings.resolved_database_url, tmp_path / "cli")

        code, _out, err = await run(env, "create", "--course", "knitting", "--uses", "50")
        assert code == 2 and "no course 'knitting'" in err
        code, _out, err = await run(env, "create", "--course", "passwords-that-hold", "--expires", "2001-01-01")
        assert code == 2 and "is not a future date" in err
        code, out, err = await run(env, "create", "--course", "passwords-that-hold", "--uses", "50",
                                   "--expires", "2099-01-31", "--days", "30")
        assert code == 0, err
        made = re.match(r"(LB-[A-Z0-9]{4}-[A-Z0-9]{4})\tpasswords-that-hold\tused 0 of 50\t30 days each\t"
                        r"2099-02-01 00:00 UTC\tactive$", out.strip())
        assert made, out
        access = made[1]

        ann = Learning(bot, channel)
        await onboard(ann, course="Passwords that hold — 3.00 GBP")
        accepted, _lesson = await ann.say(f"/redeem {access}")
        assert accepted.startswith("🎟️ Code accepted")

        code, out, _err = await run(env, "list", "--course", "passwords-that-hold")
        assert code == 0 and f"{access}\tpasswords-that-hold\tused 1 of 50" in out
        code, out, err = await run(env, "disable", access.lower().replace("-", ""))
        assert code == 0 and out.startswith(f"Disabled {access}"), err
        code, _out, err = await run(env, "disable", access)
        assert code == 1 and "disabled already" in err
        code, out, _err = await run(env, "list")
        assert out.strip().endswith("disabled")

        [withdrawn] = await Learning(bot, channel, chat="ben").say(f"/redeem {access}")
        assert withdrawn.startswith("This code has been withdrawn.")
        async with bot.db.sessions() as session:
            assert (await session.scalar(select(AccessCode))).used == 1
            audit = [(row.identity.startswith("cli:"), row.command, row.outcome)
                     for row in await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))]
        assert audit == [(True, "codes create", "invalid"), (True, "codes create", "invalid"),
                         (True, "codes create", "ok"), (True, "codes disable", "ok"),
                         (True, "codes disable", "invalid")]
    finally:
        await bot.stop()


async def test_list_takes_the_latest_codes_of_the_course_asked_and_names_a_course_there_is_not(settings, tmp_path):
    bot = Lessonbot(settings, [RecordingChannel()])
    try:
        await import_sample(bot)
        await import_sample(bot, PAID)
        env = server_env(settings.resolved_database_url, tmp_path / "cli")
        code, phishing, err = await run(env, "create", "--course", "spot-phishing")
        assert code == 0, err
        code, _out, err = await run(env, "create", "--course", "passwords-that-hold")  # the newer one
        assert code == 0, err

        code, out, _err = await run(env, "list", "--course", "spot-phishing", "--limit", "1")
        assert code == 0 and out == phishing  # the course's latest code, not the latest code filtered away
        code, out, err = await run(env, "list", "--course", "spot-phishin")
        assert code == 2 and out == "" and "Traceback" not in err
        assert err == "no course 'spot-phishin': give its id from course.yaml (lessonbot course list)\n"
    finally:
        await bot.stop()


async def test_a_course_id_is_read_in_any_case_as_in_chat(settings, tmp_path):
    bot = Lessonbot(settings, [RecordingChannel()])
    try:
        await import_sample(bot, PAID)
        env = server_env(settings.resolved_database_url, tmp_path / "cli")
        code, made, err = await run(env, "create", "--course", "Passwords-That-Hold")  # as /admin code reads it
        assert code == 0 and "\tpasswords-that-hold\t" in made, err
        code, out, err = await run(env, "list", "--course", "Passwords-That-Hold")
        assert code == 0 and out == made, err
    finally:
        await bot.stop()
