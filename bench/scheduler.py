"""`lessonbot bench scheduler`: planning a day of lessons for many learners, and a broadcast through the platforms.

Planning: a fresh database with --learners learners spread over thirteen time zones (daylight saving ones among
them), lesson times from 06:00 to 21:45 and five kinds of lesson days. One run first works out every learner's next
lesson (`learners.next_lesson_at`, NULL as migration 0021 leaves it), timed on its own; then the planner's run
(scheduler/planner.py: `lesson_candidates`, `plan_window`, `advance_next_lessons`, all but the pushing) runs once for
every minute of one day, as the clock does; the lessons it finds are checked against the ones worked out directly
from the learners' settings (none missing, none twice). Reported: total and per-run time, the peak memory of the
busiest run (tracemalloc, run again from the state before it) and the process's peak RSS; then what pushing a sample
of those lessons costs (dialogs' `deliver_next_lesson` and the outbox rows), per lesson.

Broadcast: for each platform, a fresh database with --recipients learners on it and the platform's local stand-in
(standins/: the Telegram Bot API, Twilio's Messages API) that the real SDK talks to; the real dispatcher and
clock (as `lessonbot dispatch` runs them) fan the broadcast out and send it at the platform's published limit
(Telegram ~30 messages/s across chats, Twilio 80/s per WhatsApp sender). Reported: total time from confirmation to
the last copy's arrival at the stand-in, against the floor N / rate; duplicates and losses as the stand-in saw them
(both must be 0); and where the stand-in received the messages: the first one's delay after the confirmation (the
bench confirms in the database and starts the clock's broadcast job at once, as an admin's confirmation does), the
first to the last against (N - 1) / rate (the pace itself), and the most in any one-second window (never over the
limit).

Everything runs in this one process (stand-ins included) on a shared machine: the figures are a floor of what a
dedicated dispatcher does, and only figures from one run compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime, timedelta, timezone
from datetime import time as wall_time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.channels import busiest_second
from bench.processes import DEFAULT_POSTGRES_ADMIN_URL, DatabaseUnreachable, postgres_database
from bench.report import machine, progress
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from storage.db import Database

# Runs the outbox dispatcher and the clock (as `lessonbot dispatch` does) on a database, with the channels the given
# settings turn on, while the block lasts; yields that process's database and its way to run one of the clock's jobs
# now (`Lessonbot.start_job`, what an admin's confirmation of a broadcast does). The command line provides it: it is
# the wiring, which a bench does not do itself.
Dispatching = Callable[
    [str, Path, dict[str, Any]], AbstractAsyncContextManager[tuple["Database", Callable[[str], None]]]
]

ZONES = (
    "Europe/Lisbon", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "America/Los_Angeles",
    "Australia/Sydney", "Asia/Kolkata", "Asia/Tokyo", "Africa/Lagos", "Pacific/Auckland", "America/Mexico_City",
    "UTC+05:30", None,
)
DAYS = ("1234567", "12345", "135", "246", "67")
RATES = {"telegram": 30.0, "whatsapp": 80.0}  # the published limits the channels pace themselves to
SAMPLE_PUSHES = 300
TARGET_OF_FLOOR = 1.02  # a broadcast's time at most this much over N / rate


HELP = "plan a day of lessons for many learners; a broadcast through the platform stand-ins"
DESCRIPTION = __doc__.split("\n\n")[1]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learners", type=whole(), default=100_000, help="learners to plan a day for (100,000)")
    parser.add_argument("--recipients", type=whole(), default=2_000,
                        help="recipients per platform broadcast (2,000; 100,000 takes ~21 min on WhatsApp at 80/s)")
    parser.add_argument("--platforms", default="telegram,whatsapp", help="broadcast through: telegram, whatsapp")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql",
                        help="where it all runs (default postgresql, the scale-out topology)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL,
                        help="a server where the bench may create and drop databases (default: %(default)s)")
    parser.add_argument("--course", type=Path, help="the course the learners take (default: SAMPLE_COURSE_DIR)")
    parser.add_argument("--skip-planning", action="store_true")
    parser.add_argument("--skip-broadcast", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")


def run(args: argparse.Namespace, *, sample_course: Path, dispatching: Dispatching) -> int:
    """`sample_course`: the course folder when --course is not given."""
    platforms = [name.strip() for name in args.platforms.split(",") if name.strip()]
    unknown = [name for name in platforms if name not in RATES]
    if unknown or args.learners < 1 or args.recipients < 1:
        print(f"lessonbot bench scheduler: platforms are {', '.join(RATES)}; --learners and --recipients must be "
              "at least 1", file=sys.stderr)
        return 2
    course = args.course or sample_course
    if not args.skip_planning and not (course / "course.yaml").is_file():
        print(f"lessonbot bench scheduler: {course} is not a course folder (no course.yaml); give one with --course "
              "or SAMPLE_COURSE_DIR, such as the project's courses/sample", file=sys.stderr)
        return 2
    # The bot's own INFO lines (the clock starting, jobs added) would drown the figures.
    logging.getLogger().setLevel(logging.WARNING)
    report: dict[str, Any] = {"machine": machine(), "database": args.database}
    try:
        if not args.skip_planning:
            report["planning"] = asyncio.run(bench_planning(args, course))
        if not args.skip_broadcast:
            report["broadcasts"] = [
                asyncio.run(bench_broadcast(args, platform, dispatching)) for platform in platforms
            ]
    except DatabaseUnreachable as exc:
        print(f"lessonbot bench scheduler: {exc}; start it or pass --postgres-url, or use --database sqlite",
              file=sys.stderr)
        return 2
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
    failed = [b for b in report.get("broadcasts", []) if b["duplicates"] or b["losses"]]
    planning_wrong = report.get("planning", {}).get("missing") or report.get("planning", {}).get("doubled")
    return 1 if failed or planning_wrong else 0


@asynccontextmanager
async def fresh_database(args: argparse.Namespace) -> AsyncIterator[str]:
    from storage.migrate import upgrade

    if args.database == "sqlite":
        with tempfile.TemporaryDirectory(prefix="lessonbot-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            await asyncio.to_thread(upgrade, url)
            yield url
        return
    with postgres_database(args.postgres_url) as url:
        await asyncio.to_thread(upgrade, url)
        yield url


# planning ------------------------------------------------------------------------------------------------------------


async def add_learners(db: Database, count: int, *, channel: str, course_id: int | None = None,
                       seed: int = 1) -> list[dict[str, Any]]:
    """`count` learners as onboarding leaves them, inserted in bulk; their settings as inserted."""
    from sqlalchemy import insert

    from storage.learners import ACTIVE, Learner
    from storage.models import Conversation, User, utcnow

    rng = random.Random(seed)
    now = utcnow()
    made: list[dict[str, Any]] = []
    for start in range(0, count, 5_000):
        chunk = range(start, min(count, start + 5_000))
        people = [{
            "zone": rng.choice(ZONES),
            "at": wall_time(6 + (n % 64) // 4, 15 * (n % 4)),
            "days": rng.choice(DAYS),
            "chat": str(10_000_000 + n) if channel == "telegram" else f"+1555{n:07d}" if channel == "whatsapp"
            else f"bench-{n}",
        } for n in chunk]
        async with db.transaction() as session:
            users = list(await session.scalars(
                insert(User).returning(User.id, sort_by_parameter_order=True),
                [{"display_name": "Learner", "locale": "en", "timezone": p["zone"], "last_active_at": now}
                 for p in people],
            ))
            conversations = list(await session.scalars(
                insert(Conversation).returning(Conversation.id, sort_by_parameter_order=True),
                [{"channel": channel, "chat_id": p["chat"], "user_id": u, "state": {}, "last_inbound_at": now}
                 for p, u in zip(people, users, strict=True)],
            ))
            await session.execute(insert(Learner), [
                {"user_id": u, "status": ACTIVE, "consent_at": now, "lesson_time": p["at"], "lesson_days": p["days"],
                 "daily_goal": 1, "language_chosen": False, "points": 0, "streak_days": 0, "best_streak": 0,
                 "course_id": course_id, "home_conversation_id": c}
                for p, u, c in zip(people, users, conversations, strict=True)
            ])
        for p, u in zip(people, users, strict=True):
            made.append(p | {"user_id": u})
    async with db.engine.connect() as connection:  # fresh statistics, as autovacuum keeps them in a live database
        await connection.exec_driver_sql("ANALYZE")
        await connection.commit()
    return made


async def bench_planning(args: argparse.Namespace, course: Path) -> dict[str, Any]:
    from sqlalchemy import update

    from authoring.format import load_course
    from authoring.importer import import_course
    from scheduler.context import JobContext
    from scheduler.planner import (
        DueLesson,
        Plan,
        advance_next_lessons,
        lesson_candidates,
        lesson_moment,
        plan_window,
        push_lesson,
    )
    from storage.courses import Course
    from storage.db import Database
    from storage.learners import Learner, zone_for

    async with fresh_database(args) as url:
        db = Database(url)
        try:
            progress(f"planning: {args.learners:,} learners into a fresh {args.database} database")
            async with db.transaction() as session:
                await import_course(session, load_course(course))
            async with db.sessions() as session:
                from sqlalchemy import select

                course_id = await session.scalar(select(Course.id))
            learners = await add_learners(db, args.learners, channel="bench", course_id=course_id)
            day_start = datetime.combine(date.today() + timedelta(days=1), wall_time(0), tzinfo=timezone.utc)
            expected = set()
            for learner in learners:
                zone = zone_for(learner["zone"])
                for offset in (-1, 0, 1):
                    local_day = day_start.date() + timedelta(days=offset)
                    moment = lesson_moment(local_day, learner["at"], zone)
                    on_day = str(local_day.isoweekday()) in learner["days"]
                    if on_day and day_start < moment <= day_start + timedelta(days=1):
                        expected.add((learner["user_id"], local_day))

            async def planner_run(start: datetime, end: datetime) -> Plan:
                """What the clock's run does for the window (start, end], all but pushing the lessons."""
                async with db.sessions() as session:
                    plan = plan_window(await lesson_candidates(session, end), start, end)
                if plan.candidates:  # the clock's job does this in the transaction that moves its cursor
                    async with db.transaction() as session:
                        await advance_next_lessons(session, plan)
                return plan

            async def work_out_every_learner(at: datetime) -> float:
                async with db.transaction() as session:
                    await session.execute(update(Learner).values(next_lesson_at=None))
                started = time.perf_counter()
                await planner_run(at - timedelta(minutes=1), at)
                return time.perf_counter() - started

            progress("planning: one run working out every learner's next lesson (as after migration 0021)")
            backfill_seconds = await work_out_every_learner(day_start)
            # every row was written: a live database's autovacuum cleans up and counts again right after that
            async with db.engine.connect() as connection:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                await connection.exec_driver_sql("VACUUM ANALYZE learners" if args.database == "postgresql"
                                                 else "ANALYZE")

            progress("planning: one planner run for every minute of a day")
            found: Counter[tuple[int, date]] = Counter()
            durations, per_run = [], []
            sample_due: list[DueLesson] = []
            started = time.perf_counter()
            for minute in range(24 * 60):
                window = (day_start + timedelta(minutes=minute), day_start + timedelta(minutes=minute + 1))
                run_started = time.perf_counter()
                due = (await planner_run(*window)).due
                durations.append(time.perf_counter() - run_started)
                per_run.append((len(due), window))
                for lesson in due:
                    found[(lesson.user_id, lesson.local_date)] += 1
                if len(sample_due) < SAMPLE_PUSHES:
                    sample_due.extend(due[: SAMPLE_PUSHES - len(sample_due)])
            total = time.perf_counter() - started

            progress("planning: peak memory of the busiest run (tracemalloc), from the state before it")
            _count, busiest_window = max(per_run, key=lambda item: item[0])
            await work_out_every_learner(busiest_window[0])
            tracemalloc.start()
            await planner_run(*busiest_window)
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()

            progress(f"planning: pushing {len(sample_due)} of the lessons (deliver_next_lesson, outbox rows)")
            ctx = JobContext(db=db)
            push_started = time.perf_counter()
            for lesson in sample_due:
                await push_lesson(ctx, DueLesson(lesson.user_id, lesson.local_date, lesson.due_at), lesson.due_at)
            push_seconds = (time.perf_counter() - push_started) / max(len(sample_due), 1)
        finally:
            await db.dispose()
    due_total = sum(found.values())
    quiet = [seconds for seconds, (count, _window) in zip(durations, per_run, strict=True) if count == 0]
    busiest = sorted(zip(durations, per_run, strict=True), key=lambda item: item[1][0], reverse=True)
    busy = [seconds for seconds, _run in busiest[: max(1, len(busiest) // 100)]]
    return {
        "learners": args.learners,
        "backfill_seconds": round(backfill_seconds, 2),
        "runs": len(durations),
        "lessons_due": due_total,
        "expected": len(expected),
        "missing": len(expected - set(found)),
        "doubled": sum(1 for n in found.values() if n > 1),
        "unexpected": len(set(found) - expected),
        "seconds_total": round(total, 2),
        "ms_per_run_p50": round(1000 * statistics.median(durations), 1),
        "ms_per_run_p99": round(1000 * sorted(durations)[int(0.99 * (len(durations) - 1))], 1),
        "ms_per_run_max": round(1000 * max(durations), 1),
        "busiest_run_lessons": max(count for count, _window in per_run),
        # What a run costs when no lesson is due against the busiest 1 % of minutes: a planner whose work follows the
        # learners due that minute spends next to nothing on the first.
        "quiet_runs": len(quiet),
        "ms_per_quiet_run_p50": round(1000 * statistics.median(quiet), 1) if quiet else None,
        "ms_per_busiest_run_p50": round(1000 * statistics.median(busy), 1),
        "peak_run_memory_mb": round(peak / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "push_ms_per_lesson": round(1000 * push_seconds, 1),
        "push_seconds_for_the_day": round(push_seconds * due_total, 1),
    }


# broadcast -----------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def stand_in(platform: str) -> AsyncIterator[Any]:
    """The platform's local stand-in, the one the tests use."""
    stand_in_type: type[Any]
    if platform == "telegram":
        from standins.telegram import TelegramStandIn as stand_in_type
    else:
        from standins.twilio import TwilioStandIn as stand_in_type
    async with stand_in_type() as server:
        yield server


def platform_settings(platform: str, server: Any) -> dict[str, Any]:
    """The settings that turn the platform's channel on, pointed at its stand-in."""
    if platform == "telegram":
        from standins.telegram import TOKEN

        return {"telegram_bot_token": TOKEN, "telegram_webhook_secret": "bench-secret",
                "telegram_api_base_url": server.base_url}
    from standins.twilio import PUBLIC_BASE_URL, SENDER

    return {"twilio_account_sid": server.account_sid, "twilio_auth_token": server.auth_token,
            "twilio_whatsapp_from": SENDER, "twilio_api_base_url": server.base_url,
            "public_base_url": PUBLIC_BASE_URL}


def delivered_to(platform: str, server: Any) -> list[str]:
    if platform == "telegram":
        return [call.params["chat_id"] for call in server.called("sendMessage")]
    return [(message.to or "").removeprefix("whatsapp:") for message in server.sent]


def arrivals(platform: str, server: Any) -> list[float]:
    """When the stand-in received each message (monotonic seconds, this process's clock), in order."""
    if platform == "telegram":
        return sorted(call.at for call in server.called("sendMessage"))
    return sorted(message.at for message in server.sent)


async def bench_broadcast(args: argparse.Namespace, platform: str, dispatching: Dispatching) -> dict[str, Any]:
    from sqlalchemy import func, select

    from storage.broadcasts import FAN_OUT, Segment, confirm, create_draft
    from storage.db import Database
    from storage.models import OutboxMessage, utcnow
    from storage.scheduling import Broadcast

    count, rate = args.recipients, RATES[platform]
    async with fresh_database(args) as url, stand_in(platform) as server:
        db = Database(url)
        progress(f"broadcast: {count:,} recipients on {platform} ({args.database})")
        learners = await add_learners(db, count, channel=platform, seed=2)
        await db.dispose()
        with tempfile.TemporaryDirectory(prefix="lessonbot-bench-") as folder:
            async with dispatching(url, Path(folder), platform_settings(platform, server)) as (db, start_job):
                now = utcnow()
                async with db.transaction() as session:
                    draft = await create_draft(session, text="Bench: the new module is out!",
                                               segment=Segment(channel=platform), created_by="bench", now=now)
                    await confirm(session, draft.id, now)
                started, started_at = time.perf_counter(), time.monotonic()
                start_job(FAN_OUT)  # committed: its first batch goes now, not at the job's next run
                progress(f"broadcast: sending at {rate:g}/s; the floor is {count / rate:,.0f} s")
                last_report, sent = started, 0
                key = f"broadcast:{draft.id}:%"
                while True:
                    await asyncio.sleep(0.5)
                    async with db.sessions() as session:
                        sent = await session.scalar(select(func.count()).select_from(OutboxMessage).where(
                            OutboxMessage.idempotency_key.like(key), OutboxMessage.status == "sent")) or 0
                        broadcast = await session.get(Broadcast, draft.id)
                        assert broadcast is not None  # the draft made above
                    if sent >= count:
                        break
                    if time.perf_counter() - last_report > 30:
                        last_report = time.perf_counter()
                        progress(f"broadcast: {sent:,} of {count:,} sent after {last_report - started:,.0f} s")
                    if time.perf_counter() - started > max(120.0, 10 * count / rate):
                        async with db.sessions() as session:
                            statuses = dict((await session.execute(
                                select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))).all())
                        progress(f"broadcast: gave up waiting; broadcast {broadcast.status}, {broadcast.queued:,} "
                                 f"queued; outbox {statuses}")
                        break
                queued = broadcast.queued
        seen = Counter(delivered_to(platform, server))
        wanted = {learner["chat"] for learner in learners}
        arrived = arrivals(platform, server)
    # From the confirmation to the last copy's arrival at the stand-in (its own clock, this process's), not to the
    # poll above that saw it sent (up to half a second later).
    total = (arrived[-1] - started_at) if arrived else time.perf_counter() - started
    # The pace apart from the start: the first to the last arrival at the stand-in, against (N - 1) / rate, the least
    # that N sends at the rate can span.
    span = arrived[-1] - arrived[0] if len(arrived) > 1 else 0.0
    span_floor = (len(arrived) - 1) / rate
    return {
        "platform": platform,
        "recipients": count,
        "rate_per_second": rate,
        "floor_seconds": round(count / rate, 1),
        "seconds": round(total, 1),
        "of_floor": round(total / (count / rate), 3),
        "achieved_per_second": round(sent / total, 1) if total else None,
        "queued": queued,
        "sent": sent,
        "duplicates": sum(n - 1 for n in seen.values() if n > 1),
        "losses": len(wanted - set(seen)),
        "first_arrival_seconds": round(arrived[0] - started_at, 2) if arrived else None,
        "arrivals_seconds": round(span, 2),
        "arrivals_of_floor": round(span / span_floor, 3) if span_floor else None,
        "busiest_second": busiest_second(arrived),
    }


# the report ----------------------------------------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"lessonbot bench scheduler — {report['database']}; {m['cpu']}, {m['cores']} cores, load average "
             f"{' '.join(str(v) for v in m['load_average'])} at the start"]
    plan = report.get("planning")
    if plan:
        lines += [
            "",
            f"Planning a day for {plan['learners']:,} learners ({plan['runs']:,} planner runs, one a minute):",
            f"  first, every learner's next lesson worked out in one run: {plan['backfill_seconds']:,} s",
            f"  total {plan['seconds_total']:,} s; per run p50 {plan['ms_per_run_p50']} ms, p99 "
            f"{plan['ms_per_run_p99']} ms, max {plan['ms_per_run_max']} ms",
            f"  minutes with no lesson due ({plan['quiet_runs']:,}): p50 {plan['ms_per_quiet_run_p50']} ms a run; the "
            f"busiest 1 %: p50 {plan['ms_per_busiest_run_p50']} ms (target: a run's cost follows the lessons due)",
            f"  lessons due {plan['lessons_due']:,} (expected {plan['expected']:,}; missing {plan['missing']}, "
            f"twice {plan['doubled']}, unexpected {plan['unexpected']}); "
            f"busiest minute {plan['busiest_run_lessons']:,}",
            f"  peak memory of a run {plan['peak_run_memory_mb']} MB (tracemalloc); process peak RSS "
            f"{plan['peak_rss_mb']} MB",
            f"  pushing a lesson (dialogs + outbox): {plan['push_ms_per_lesson']} ms, so "
            f"{plan['push_seconds_for_the_day']:,} s of work for the day's lessons",
        ]
    for result in report.get("broadcasts", []):
        lines += [
            "",
            f"Broadcast to {result['recipients']:,} on {result['platform']} at {result['rate_per_second']:g}/s:",
            f"  {result['seconds']:,} s against a floor of {result['floor_seconds']:,} s "
            f"(x{result['of_floor']:.3f}; target x{TARGET_OF_FLOOR}); {result['achieved_per_second']}/s achieved",
            f"  sent {result['sent']:,}, duplicates {result['duplicates']}, losses {result['losses']}",
            f"  at the stand-in: the first message {result['first_arrival_seconds']} s after the confirmation; first "
            f"to last {result['arrivals_seconds']:,} s (x{result['arrivals_of_floor']} of (N - 1) / rate); at most "
            f"{result['busiest_second']} in any one second (limit {result['rate_per_second']:g})",
        ]
    return "\n".join(lines)
