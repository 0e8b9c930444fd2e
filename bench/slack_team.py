"""`lessonbot bench slack-team`: a channel's lesson day for a team of --members, against Slack's limits.

The whole app runs in this process (as `lessonbot serve` builds it, Bolt and slack_sdk included) with the Slack Web
API stand-in (standins/slack.py) beside it, on a fresh database. A team admin sets up the channel's course with
`/lessonbot team set`; the channel's members are read (conversations.members, every page, users.info for each);
the team's lesson is posted at its hour (the scheduler's `team-lessons` job); then every member presses the post's
"Quiz me", answers each question as it comes (buttons, and `/lessonbot answer` for a typed one), until their lesson
is done — --concurrency members at a time, as a team drifts in after a post.

Measured: the time from the post to the last member's "lesson done", the interactions acknowledged (p50/p99 — Slack
waits at most 3 s), and what the stand-in received per method: calls, the busiest second, and 429s, beside Slack's
published limit for the method. Load, the app and the stand-in share this machine's cores and one event loop: the
times are an upper bound of what the app needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.report import add_json_option, machine, number, percentile, print_report, progress, run_event_loop, table
from bot.cli.numbers import whole

HELP = "a Slack channel's team lesson day (post, private quizzes, answers) against Slack's limits"
DESCRIPTION = __doc__.split("\n", 2)[2]

CHANNEL, TEAM = "CBENCH", "T111"
ADMIN = "UADMIN0"
# What Slack publishes per method (https://docs.slack.dev/apis/web-api/rate-limits): what the busiest second is held to.
LIMITS = {
    "chat.postMessage": "1 per second per channel",
    "chat.postEphemeral": "Tier 4: 100+ per minute",
    "response_url": "5 answers per interaction, 30 min",
    "conversations.members": "Tier 4: 100+ per minute",
    "users.info": "Tier 4: 100+ per minute",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--members", type=whole(), default=500, help="members of the team's channel (500)")
    parser.add_argument("--concurrency", type=whole(), default=100, help="members taking their quiz at once (100)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server where a scratch database may be made (with --database postgresql)")
    add_json_option(parser)


def run(args: argparse.Namespace, *, sample_course: Path) -> int:
    report = run_event_loop(measure(args, sample_course))
    print_report(report, args, render_report)
    return 0


async def measure(args: argparse.Namespace, sample_course: Path) -> dict[str, Any]:
    from bench.processes import database_for
    from standins.slack import SlackStandIn
    from storage.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-team-") as scratch:
        workdir = Path(scratch)
        with database_for(args.database, workdir, args.postgres_url) as url:
            upgrade(url)
            async with SlackStandIn() as slack:
                figures = await lesson_day(args, url, workdir, slack, sample_course)
    return {"machine": machine(), "database": args.database, "members": args.members,
            "concurrency": args.concurrency, **figures}


async def lesson_day(args: argparse.Namespace, url: str, workdir: Path, slack: Any, sample_course: Path
                     ) -> dict[str, Any]:
    import httpx

    from authoring.format import load_course
    from authoring.importer import import_course
    from bot.app import create_app
    from bot.config import load_settings
    from scheduler.context import JobContext
    from scheduler.teams import post_team_lessons, sync_team_members
    from standins.slack import BOT_TOKEN, SIGNING_SECRET

    members = [f"UM{index:05d}" for index in range(args.members)]
    slack.add_member(CHANNEL, ADMIN, name="admin", admin=True, tz="UTC")
    for user in members:
        slack.add_member(CHANNEL, user, name=user.lower(), tz="UTC")
    settings = load_settings(
        _env_file=None, database_url=url, data_dir=workdir / "var", secret_key="bench-secret-key-0123456789",
        log_level="WARNING", log_format="text", web_chat_enabled=False, slack_signing_secret=SIGNING_SECRET,
        slack_bot_token=BOT_TOKEN, slack_api_base_url=slack.base_url,
    )
    app = create_app(settings)
    app.state.lessonbot.leader_work.clear()  # no clock of its own: the bench runs the team's jobs at its hour
    async with app.router.lifespan_context(app):
        lessonbot = app.state.lessonbot
        async with lessonbot.db.transaction() as session:
            await import_course(session, load_course(sample_course))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.bench") as http:
            driver = Team(http, slack)
            progress("a team admin sets up the channel's course")
            await driver.slash(ADMIN, "team set spot-phishing at 09:00 on daily in UTC")
            await slack.wait_private(CHANNEL, ADMIN, 1)
            # A day to come, at the team's hour: the app's own clock (real time) never reaches it meanwhile.
            at = datetime.combine(datetime.now(timezone.utc).date() + timedelta(days=2), clock_time(9, 0),
                                  tzinfo=timezone.utc)
            jobs = JobContext(db=lessonbot.db, now=lambda: at, notify=lessonbot.dispatcher.notify,
                              member_lists={"slack": lessonbot.channels["slack"]})
            progress(f"reading the channel's {args.members + 1} members")
            started = time.monotonic()
            await sync_team_members(jobs)
            sync_seconds = time.monotonic() - started
            jobs.now = lambda: at - timedelta(minutes=1)
            await post_team_lessons(jobs)  # the cursor, a minute before the hour
            mark = len(slack.calls)
            jobs.now = lambda: at + timedelta(seconds=30)
            day_started = time.monotonic()
            await post_team_lessons(jobs)
            await slack.wait_for(lambda: any("📘" in text for text in slack.texts(CHANNEL)), timeout=60)
            post = next(c for c in slack.posted(CHANNEL) if "📘" in c.params["text"])
            posted_after = time.monotonic() - day_started
            take = _buttons(post)[0][1]
            progress(f"{args.members} members take the quiz, {args.concurrency} at a time")
            gate = asyncio.Semaphore(args.concurrency)

            async def member(user: str) -> None:
                async with gate:
                    await driver.quiz(user, take, post.answer["ts"])

            await asyncio.gather(*(member(user) for user in members))
            day_seconds = time.monotonic() - day_started
    return {
        "member_sync_seconds": round(sync_seconds, 2),
        "post_seconds": round(posted_after, 2),
        "day_seconds": round(day_seconds, 2),
        "interactions": len(driver.acks),
        "ack_ms_p50": _ms(percentile(driver.acks, 50)),
        "ack_ms_p99": _ms(percentile(driver.acks, 99)),
        "ack_ms_max": _ms(max(driver.acks) if driver.acks else None),
        "methods": per_method(slack.calls[mark:], slack.calls[:mark]),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def per_method(day: list[Any], before: list[Any]) -> dict[str, dict[str, Any]]:
    """Calls, the busiest second and 429s per method: the lesson day's, and the member sync's before it."""
    found: dict[str, dict[str, Any]] = {}
    for calls in (before, day):
        methods = sorted({call.method for call in calls})
        for method in methods:
            of = [call for call in calls if call.method == method]
            seconds = Counter(int(call.at) for call in of)
            found.setdefault(method, {"calls": 0, "busiest_second": 0, "rate_limited": 0, "limit": ""})
            row = found[method]
            row["calls"] += len(of)
            row["busiest_second"] = max(row["busiest_second"], max(seconds.values()))
            row["rate_limited"] += sum(1 for call in of if call.outcome.startswith("429"))
            row["limit"] = LIMITS.get(method, "")
    return found


def _buttons(call: Any) -> list[tuple[str, str]]:
    blocks = call.params.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return [(element["text"]["text"], element["value"])
            for block in blocks if block["type"] == "actions" for element in block["elements"]]


class Team:
    """What the team's members do in Slack, signed as Slack signs it: slash commands and button presses."""

    def __init__(self, http: Any, slack: Any) -> None:
        self.http = http
        self.slack = slack
        self.acks: list[float] = []
        self._ids = iter(range(1, 10**9))

    async def _post(self, raw: bytes) -> None:
        from standins.slack import signed

        started = time.monotonic()
        response = await self.http.post("/slack/events", content=raw,
                                        headers=signed(raw, content_type="application/x-www-form-urlencoded"))
        self.acks.append(time.monotonic() - started)
        if response.status_code != 200:
            raise RuntimeError(f"/slack/events answered {response.status_code}: {response.text[:200]}")

    async def slash(self, user: str, text: str) -> None:
        await self._post(urlencode({
            "token": "verification_token", "team_id": TEAM, "team_domain": "bench", "channel_id": CHANNEL,
            "channel_name": "team", "user_id": user, "user_name": user.lower(), "command": "/lessonbot",
            "text": text, "response_url": self.slack.response_url(CHANNEL, user),
            "trigger_id": f"111.{next(self._ids)}.bench",
        }).encode())

    async def press(self, user: str, value: str, *, message_ts: str, ephemeral: bool) -> None:
        from standins.slack import form_body

        await self._post(form_body({
            "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "api_app_id": "A111", "token": "verification_token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL,
                          "is_ephemeral": ephemeral},
            "trigger_id": f"111.{next(self._ids)}.bench", "team": {"id": TEAM, "domain": "bench"},
            "channel": {"id": CHANNEL, "name": "team"}, "response_url": self.slack.response_url(CHANNEL, user),
            "actions": [{"action_id": "choice-0", "block_id": "choices-0", "value": value, "type": "button",
                         "text": {"type": "plain_text", "text": value}, "action_ts": f"{time.time():.6f}"}],
        }))

    async def quiz(self, user: str, take: str, post_ts: str) -> None:
        """Press "Quiz me", then answer each question as it comes, until the lesson is done."""
        await self.press(user, take, message_ts=post_ts, ephemeral=False)
        seen = 0
        for _ in range(40):
            shown = await self.slack.wait_private(CHANNEL, user, seen + 1, timeout=600)
            seen = len(shown)
            latest = shown[-1]
            text = str(latest.params.get("text") or "")
            if "Lesson done" in text:
                return
            choices = [value for _label, value in _buttons(latest) if value.startswith("quiz:")]
            if choices:
                await self.press(user, choices[0], message_ts=f"{time.time():.6f}", ephemeral=True)
            elif "/lessonbot answer" in text:
                await self.slash(user, "answer smishing")
        raise RuntimeError(f"{user}'s quiz did not end")


def render_report(report: dict[str, Any]) -> str:
    lines = [
        f"A {report['members']}-member Slack channel's lesson day ({report['database']}, {report['concurrency']} "
        f"members at a time), on {report['machine']['cpu']} ({report['machine']['cores']} cores)",
        f"members read (conversations.members + users.info): {number(report['member_sync_seconds'], 1)} s",
        f"lesson posted {number(report['post_seconds'], 2)} s after its job ran; every member's quiz done "
        f"{number(report['day_seconds'], 1)} s after it",
        f"{report['interactions']:,} interactions acknowledged: p50 {number(report['ack_ms_p50'], 1)} ms, p99 "
        f"{number(report['ack_ms_p99'], 1)} ms, worst {number(report['ack_ms_max'], 1)} ms (Slack waits 3,000 ms)",
        "",
    ]
    rows = [[method, f"{row['calls']:,}", str(row["busiest_second"]), str(row["rate_limited"]), row["limit"]]
            for method, row in report["methods"].items()]
    lines += table(["method", "calls", "busiest second", "429s", "Slack's limit"], rows)
    return "\n".join(lines)
