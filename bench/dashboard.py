"""`lessonbot bench dashboard`: each dashboard page's answer time at scale, on PostgreSQL, against the 200 ms budget.

A fresh database is seeded with --learners learners (100,000 by default) and --messages messages (10 million:
half received, half sent, over 90 days), the sample course with enrollments, lesson progress and review cards to
match, questions asked of the answerer and payments, all by INSERT … SELECT from generate_series; then VACUUM
ANALYZE, as autovacuum would leave it. The dashboard's routes (bot/dashboard) are served in this process to an
HTTP client signed in as an owner, and each page is timed:

- count: computing the page's figures from nothing, as the job does at a day's first run (storage/dashboard.py);
- recount: computing them again later the same day, as the job does every 5 minutes (the daily series' older days
  kept, two days counted);
- cold: the page requested with no figures kept yet (it counts them itself, then renders);
- warm: the page as admins get it, the job's figures kept (median and slowest of --repeat requests);
- the learners page searching a name, a learner's timeline, and one CSV download.

Everything runs on one machine shared with the database server; only figures from one run compare.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.processes import DEFAULT_POSTGRES_ADMIN_URL, DatabaseUnreachable, postgres_database
from bench.report import add_json_option, machine, print_report, progress, table
from bot.cli.numbers import whole

HELP = "each dashboard page's answer time with 100,000 learners and 10 million messages (PostgreSQL)"
DESCRIPTION = __doc__
BUDGET_MS = 200.0
SAMPLE = Path(__file__).resolve().parents[1] / "courses" / "sample"
BULK_TABLES = ("inbound_messages", "outbox_messages")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learners", type=whole(), default=100_000, help="learners to seed (default 100,000)")
    parser.add_argument("--messages", type=whole(), default=10_000_000,
                        help="messages to seed, half received and half sent (default 10,000,000)")
    parser.add_argument("--repeat", type=whole(), default=10, help="warm requests per page (default 10)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES_ADMIN_URL,
                        help="a PostgreSQL server where the bench may create and drop a database")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    try:
        with postgres_database(args.postgres, prefix="lessonbot_bench_dashboard") as url:
            report = asyncio.run(measure(url, learners=args.learners, messages=args.messages, repeat=args.repeat))
    except DatabaseUnreachable as exc:
        progress(str(exc))
        return 2
    print_report(report, args, render)
    return 0 if all(row["warm_max_ms"] <= BUDGET_MS for row in report["pages"]) else 1


# Seeding ------------------------------------------------------------------------------------------------------------

CHANNEL = "(ARRAY['telegram','whatsapp','slack','web'])[{id} % 4 + 1]"
EXTERNAL = ("CASE {id} % 4 WHEN 0 THEN {id}::text WHEN 1 THEN '+1555' || lpad({id}::text, 7, '0') "
            "WHEN 2 THEN 'T0' || ({id} % 3) || '/U' || {id} ELSE 'session-' || {id} END")


def seeding_statements(learners: int, messages: int) -> list[tuple[str, str]]:
    """What fills the database, as (what, SQL) pairs, in order."""
    n, half = learners, messages // 2
    return [
        ("users", f"""
            INSERT INTO users (id, display_name, locale, timezone, created_at, last_active_at)
            SELECT g, 'Learner ' || g, CASE WHEN g % 5 = 0 THEN 'es' ELSE 'en' END, 'UTC', joined,
                   joined + random() * (now() - joined)
            FROM (SELECT g, now() - random() * interval '120 days' AS joined FROM generate_series(1, {n}) g) s;
            SELECT setval(pg_get_serial_sequence('users', 'id'), {n})"""),
        ("channel identities and conversations", f"""
            INSERT INTO channel_identities (user_id, channel, external_id, created_at)
            SELECT g, {CHANNEL.format(id='g')}, {EXTERNAL.format(id='g')}, now() FROM generate_series(1, {n}) g;
            INSERT INTO conversations (id, channel, chat_id, user_id, state, created_at, last_inbound_at)
            SELECT g, {CHANNEL.format(id='g')}, {EXTERNAL.format(id='g')}, g, '{{}}', now(), now()
            FROM generate_series(1, {n}) g;
            SELECT setval(pg_get_serial_sequence('conversations', 'id'), {n})"""),
        ("learners", """
            INSERT INTO learners (user_id, status, consent_at, lesson_days, daily_goal, language_chosen, points,
                                  streak_days, best_streak, last_active_on, home_conversation_id, created_at,
                                  updated_at)
            SELECT u.id, CASE WHEN u.id % 10 = 0 THEN 'onboarding' ELSE 'active' END,
                   CASE WHEN u.id % 10 = 0 THEN NULL ELSE u.created_at END, '1234567', 1, false, (u.id * 7) % 500,
                   (u.id * 13) % 40, (u.id * 13) % 40, u.last_active_at::date, u.id, u.created_at, now()
            FROM users u"""),
        ("messages received", f"""
            INSERT INTO inbound_messages (id, channel, platform_id, conversation_id, seq, sender_id, payload, status,
                                          attempts, received_at, processed_at)
            SELECT g, {CHANNEL.format(id='c')}, 'b' || g, c, g, {EXTERNAL.format(id='c')},
                   '{{"text": "what is phishing?"}}', 'done', 0, at, at
            FROM (SELECT g, 1 + (g::bigint * 7919) % {n} AS c, now() - random() * interval '90 days' AS at
                  FROM generate_series(1, {half}) g) s;
            SELECT setval(pg_get_serial_sequence('inbound_messages', 'id'), {half})"""),
        ("replies sent", f"""
            INSERT INTO outbox_messages (id, conversation_id, channel, chat_id, payload, status, attempts,
                                         next_attempt_at, platform_message_id, last_error, created_at, sent_at)
            SELECT g, c, {CHANNEL.format(id='c')}, {EXTERNAL.format(id='c')}, '{{"kind": "text", "text": "hi"}}',
                   CASE WHEN g % 20000 = 0 THEN 'dead' WHEN g % 5000 = 0 THEN 'pending' ELSE 'sent' END, 1, at,
                   'm' || g, CASE WHEN g % 200 = 0 THEN 'Telegram asked to slow down (retry after 3 s)' END, at,
                   CASE WHEN g % 5000 = 0 THEN NULL ELSE at + interval '1 second' END
            FROM (SELECT g, 1 + (g::bigint * 104729) % {n} AS c, now() - random() * interval '90 days' AS at
                  FROM generate_series(1, {half}) g) s;
            SELECT setval(pg_get_serial_sequence('outbox_messages', 'id'), {half})"""),
        ("enrollments, lesson progress, review cards", """
            INSERT INTO enrollments (user_id, course_id, status, current_part, started_at, completed_at, updated_at)
            SELECT l.user_id, c.id, CASE WHEN l.user_id % 5 = 1 THEN 'completed' ELSE 'active' END, 0, l.created_at,
                   CASE WHEN l.user_id % 5 = 1 THEN l.created_at + (1 + l.user_id % 20) * interval '1 day' END, now()
            FROM learners l CROSS JOIN courses c WHERE l.consent_at IS NOT NULL AND l.user_id % 5 <> 0;
            INSERT INTO lesson_progress (user_id, lesson_id, parts_seen, started_at, completed_at, score)
            SELECT e.user_id, ls.id, 1, e.started_at + ls.position * interval '1 day',
                   e.started_at + ls.position * interval '1 day' + interval '10 minutes', (e.user_id % 4) / 3.0
            FROM enrollments e JOIN lessons ls ON ls.course_id = e.course_id
            WHERE e.status = 'completed' OR ls.position <= e.user_id % 5;
            INSERT INTO question_cards (user_id, question_id, card, due, last_rating, last_answer, attempts, correct,
                                        last_reviewed_at)
            SELECT p.user_id, q.id, '{}', p.completed_at + ((p.user_id + q.id) % 30) * interval '1 day',
                   CASE WHEN (p.user_id + q.id) % 4 = 0 THEN 1 ELSE 3 END,
                   CASE WHEN (p.user_id + q.id) % 4 = 0 THEN 'wrong ' || (p.user_id % 3) ELSE 'right' END,
                   1 + (p.user_id + q.id) % 3, (p.user_id + q.id) % 4 % 3, p.completed_at
            FROM lesson_progress p JOIN questions q ON q.lesson_id = p.lesson_id"""),
        ("questions asked and payments", f"""
            INSERT INTO knowledge_questions (user_id, asked_at, question, normalized, outcome, reason, course, topic)
            SELECT 1 + (g::bigint * 31) % {n}, now() - random() * interval '60 days', 'question number ' || (g % 300),
                   'question number ' || (g % 300), CASE WHEN g % 4 = 0 THEN 'declined' ELSE 'answered' END,
                   CASE WHEN g % 4 = 0 THEN 'not_covered' END, CASE WHEN g % 4 <> 0 THEN 'spot-phishing' END,
                   CASE WHEN g % 4 <> 0 THEN 'Lesson ' || (g % 5) END
            FROM generate_series(1, {max(n * 2, 1000)}) g;
            INSERT INTO payments (user_id, course_id, provider, reference, amount_minor, currency, status, channel,
                                  chat_id, sender_id, created_at, paid_at)
            SELECT 1 + (g::bigint * 17) % {n}, c.id, 'stripe', 'cs_bench_' || g, 300, 'GBP',
                   CASE WHEN g % 10 = 0 THEN 'refunded' ELSE 'paid' END, 'web', 'x', 'x', now(), now()
            FROM generate_series(1, {max(n // 20, 10)}) g CROSS JOIN courses c"""),
    ]


def seed(url: str, learners: int, messages: int) -> dict[str, float]:
    """Fill the database at `url` (migrated, the sample course imported); the seconds each part took."""
    import psycopg
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    took: dict[str, float] = {}
    with psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username, password=parts.password,
                         dbname=parts.database, autocommit=True) as connection:
        # Millions of rows go in faster without the messages' secondary indexes, which are built again afterwards.
        constraints = connection.execute(
            "SELECT conname, conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid::regclass::text = ANY(%s) AND contype = 'u'", [list(BULK_TABLES)]).fetchall()
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE contype IN ('p', 'u'))", [list(BULK_TABLES)]).fetchall()
        for name, table_name, _definition in constraints:
            connection.execute(f'ALTER TABLE {table_name} DROP CONSTRAINT "{name}"'.encode())
        for name, _definition in indexes:
            connection.execute(f'DROP INDEX "{name}"'.encode())
        for what, statements in seeding_statements(learners, messages):
            progress(f"seeding {what}")
            started = time.perf_counter()
            with connection.transaction():
                for statement in statements.split(";"):
                    if statement.strip():
                        connection.execute(statement.encode())
            took[what] = round(time.perf_counter() - started, 1)
        progress("building the messages' indexes again")
        started = time.perf_counter()
        for name, table_name, definition in constraints:
            connection.execute(f'ALTER TABLE {table_name} ADD CONSTRAINT "{name}" {definition}'.encode())
        for _name, definition in indexes:
            connection.execute(definition.encode())
        took["indexes"] = round(time.perf_counter() - started, 1)
        progress("VACUUM ANALYZE")
        started = time.perf_counter()
        connection.execute(b"VACUUM ANALYZE")
        took["vacuum analyze"] = round(time.perf_counter() - started, 1)
    return took


# Measuring ----------------------------------------------------------------------------------------------------------


async def measure(url: str, *, learners: int, messages: int, repeat: int) -> dict[str, Any]:
    import httpx
    from starlette.applications import Starlette

    from authoring.format import load_course
    from authoring.importer import import_course
    from bot.dashboard import dashboard_routes
    from bot.dashboard.access import COOKIE, Access
    from bot.dashboard.pages import PAGES
    from dialogs.payments import PaymentDesk
    from storage import dashboard as counts
    from storage.admins import add_sign_in_link, use_sign_in_link
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import utcnow

    await asyncio.to_thread(upgrade, url)
    db = Database(url, pool_size=4)
    try:
        async with db.transaction() as session:
            await import_course(session, load_course(SAMPLE))
        seeded = await asyncio.to_thread(seed, url, learners, messages)
        owner = "bench:owner"
        async with db.transaction() as session:
            await add_sign_in_link(session, owner, "bench-link", expires_at=utcnow() + timedelta(minutes=5))
            await use_sign_in_link(session, "bench-link", "bench-cookie", now=utcnow(),
                                   session_expires_at=utcnow() + timedelta(hours=1))
        access = Access(db, secret_key="bench-secret", owners=[owner], site_url="http://dashboard.bench")
        app = Starlette(routes=dashboard_routes(db, access, data_dir=Path("var"), payments=PaymentDesk()))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.bench",
                                     cookies={COOKIE: "bench-cookie"}) as client:

            async def timed(path: str) -> float:
                started = time.perf_counter()
                response = await client.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{path} answered {response.status_code}")
                return elapsed

            async def warm(path: str) -> list[float]:
                return [await timed(path) for _ in range(repeat)]

            rows: list[dict[str, Any]] = []
            for name in PAGES:
                path = f"/admin/{name}"
                count_ms = cold_ms = recount_ms = None
                if name in counts.PAGES:
                    async with db.sessions() as session:
                        started = time.perf_counter()
                        await counts.compute(session, name, utcnow())
                        count_ms = (time.perf_counter() - started) * 1000
                        await session.rollback()  # not kept: the page then finds none, a cold request
                    cold_ms = await timed(path)  # counts and keeps the figures
                    async with db.sessions() as session:
                        started = time.perf_counter()
                        await counts.compute(session, name, utcnow())  # as the job does, later the same day
                        recount_ms = (time.perf_counter() - started) * 1000
                        await session.rollback()
                progress(f"page {name}")
                rows.append(_row(name, count_ms, cold_ms, await warm(path), recount_ms))
            rows.append(_row("learners: search a name", None, None, await warm("/admin/learners?q=learner%2042")))
            rows.append(_row("learners: a timeline", None, None, await warm(f"/admin/learners/{learners // 2}")))
            rows.append(_row("CSV: messages a day", None, None, await warm("/admin/overview/messages.csv")))
    finally:
        await db.dispose()
    return {"machine": machine(), "learners": learners, "messages": messages, "budget_ms": BUDGET_MS,
            "seeding_seconds": seeded, "pages": rows}


def _row(name: str, count_ms: float | None, cold_ms: float | None, warm: list[float],
         recount_ms: float | None = None) -> dict[str, Any]:
    return {"page": name, "count_ms": _round(count_ms), "recount_ms": _round(recount_ms), "cold_ms": _round(cold_ms),
            "warm_median_ms": _round(statistics.median(warm)), "warm_max_ms": _round(max(warm))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def render(report: dict[str, Any]) -> str:
    shown = lambda value: "—" if value is None else f"{value:,.1f}"  # noqa: E731
    lines = [f"{report['learners']:,} learners, {report['messages']:,} messages, PostgreSQL; "
             f"budget {report['budget_ms']:.0f} ms a page", ""]
    lines += table(("page", "count ms", "recount ms", "cold ms", "warm median ms", "warm max ms"), [
        (row["page"], shown(row["count_ms"]), shown(row["recount_ms"]), shown(row["cold_ms"]),
         shown(row["warm_median_ms"]),
         shown(row["warm_max_ms"])) for row in report["pages"]])
    lines.append("")
    lines.append("seeding (s): " + ", ".join(f"{k} {v}" for k, v in report["seeding_seconds"].items()))
    return "\n".join(lines)
