"""`lessonbot broadcast`: announcements from the shell — preview the count, send (after a confirmation), follow, cancel.

    lessonbot broadcast preview --course phishing-basics --inactive-since 7d
    lessonbot broadcast send --everyone --text "New lessons are out!"
    lessonbot broadcast status 12 --watch
    lessonbot broadcast cancel 12

`send` shows the recipient count and the text and asks before anything goes out (`--yes` answers for scripts).
`send` and `cancel` are written to the admin audit log as done by `cli:<login name>` (refused: `invalid`). The
process that runs the clock (`lessonbot serve` or `lessonbot dispatch`, whichever is elected) fans it out: on
PostgreSQL told at once (a notice), on SQLite at its fan-out's next run (every two seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.admin import audit, operator
from bot.cli.database import database
from bot.cli.numbers import whole
from bot.text import counted, whole_number
from storage.broadcasts import (
    FAN_OUT,
    BroadcastError,
    Progress,
    Segment,
    cancel,
    confirm,
    count_recipients,
    create_draft,
    progress,
    repeats,
)
from storage.models import utcnow
from storage.notices import Notices

if TYPE_CHECKING:
    from bot.config import Settings
    from storage.db import Database

WATCH_SECONDS = 2.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("broadcast", help="announce to learners: preview, send, status, cancel")
    actions = parser.add_subparsers(dest="broadcast_action", required=True, metavar="ACTION")

    preview = actions.add_parser("preview", help="how many learners a segment reaches")
    _segment_options(preview)
    preview.set_defaults(func=cmd_preview, uses_database=True)

    send = actions.add_parser("send", help="send a message to a segment (asks first)")
    _segment_options(send)
    text = send.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the message")
    text.add_argument("--file", type=Path, help="a UTF-8 file holding the message")
    send.add_argument("--yes", action="store_true", help="do not ask for confirmation (for scripts)")
    send.set_defaults(func=cmd_send, uses_database=True)

    status = actions.add_parser("status", help="how far a broadcast got (the latest ones without an ID)")
    status.add_argument("id", nargs="?", type=whole())
    status.add_argument("--watch", action="store_true", help="follow it until everything queued is sent")
    status.set_defaults(func=cmd_status, uses_database=True)

    stop = actions.add_parser("cancel", help="stop a broadcast and withdraw the copies not yet sent")
    stop.add_argument("id", type=whole())
    stop.set_defaults(func=cmd_cancel, uses_database=True)


def _segment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--everyone", action="store_true", help="every learner who may be messaged")
    parser.add_argument("--course", metavar="SLUG", help="learners enrolled in this course")
    parser.add_argument("--channel", metavar="NAME", help="learners whose chat is on this platform (telegram …)")
    parser.add_argument("--inactive-since", metavar="WHEN",
                        help="learners not active since then: 7d (days ago), 2026-11-01, or an ISO time")


def segment_from(args: argparse.Namespace, now: datetime) -> Segment:
    """The segment the options name. ValueError says what is wrong with them."""
    since = read_since(args.inactive_since, now) if args.inactive_since else None
    segment = Segment(course=args.course.lower() if args.course else None,
                      channel=args.channel.lower() if args.channel else None,
                      inactive_since=since)
    if segment.everyone and not args.everyone:
        raise ValueError("name who gets it: --everyone, or any of --course, --channel, --inactive-since")
    if args.everyone and not segment.everyone:
        raise ValueError("--everyone goes alone; leave it out to narrow with --course, --channel, --inactive-since")
    return segment


def read_since(value: str, now: datetime) -> datetime:
    """`7d`: seven days before `now`; a date: its midnight, UTC; an ISO time: that moment (UTC without an offset). In
    UTC; ValueError: none of these, or a moment UTC cannot hold (0001-01-01T00:00+14:00)."""
    value = value.strip()
    if (days := whole_number(value.rstrip("d"), most=36_500)) is not None:
        return now - timedelta(days=days)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=timezone.utc)
        when = datetime.fromisoformat(value)
        return when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"--inactive-since {value!r}: expected 7d, a date like 2026-11-01, or an ISO time") from None


def describe(segment: Segment) -> str:
    if segment.everyone:
        return "everyone"
    parts = []
    if segment.course:
        parts.append(f"enrolled in {segment.course}")
    if segment.channel:
        parts.append(f"on {segment.channel}")
    if segment.inactive_since:
        parts.append(f"not active since {segment.inactive_since:%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts)


def _run(settings: Settings, work, *, audited: tuple[str, str] | None = None) -> int:
    """Run `work` against the database; a BroadcastError is one line on stderr, and for a command `audited` (its name
    and arguments in the audit log) an `invalid` line of the audit."""
    async def main() -> int:
        async with database(settings) as db:
            try:
                return await work(db)
            except BroadcastError as exc:
                print(f"lessonbot broadcast: {exc}", file=sys.stderr)
                if audited is not None:
                    async with db.transaction() as session:
                        audit(session, *audited, "invalid")
                return 2

    return asyncio.run(main())


def sent_arguments(args: argparse.Namespace) -> str:
    """What `send` was asked, as its audit line keeps it: the segment's options as typed, then the message (or the
    file it was read from)."""
    options = ["--everyone"] if args.everyone else []
    options += [f"--{name.replace('_', '-')} {value}" for name in ("course", "channel", "inactive_since")
                if (value := getattr(args, name)) is not None]
    return " ".join([*options, args.text if args.text is not None else f"--file {args.file}"])


def cmd_preview(settings: Settings, args: argparse.Namespace) -> int:
    now = utcnow()
    try:
        segment = segment_from(args, now)
    except ValueError as exc:
        print(f"lessonbot broadcast preview: {exc}", file=sys.stderr)
        return 2

    async def work(db: Database) -> int:
        async with db.sessions() as session:
            count = await count_recipients(session, segment, now)
        print(f"{counted(count, 'learner')} ({describe(segment)}).")
        return 0

    return _run(settings, work)


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    now = utcnow()
    try:
        segment = segment_from(args, now)
        text = args.text if args.text is not None else args.file.read_text(encoding="utf-8")
    except (ValueError, OSError) as exc:
        print(f"lessonbot broadcast send: {exc}", file=sys.stderr)
        return 2

    async def work(db: Database) -> int:
        async with db.sessions() as session:  # checks the text and the segment and counts; keeps nothing
            count = (await create_draft(session, text=text, segment=segment, created_by=operator(),
                                        now=now)).preview_count
            repeated = await repeats(session, segment, text, now)
            await session.rollback()
        print(f"To {counted(count, 'learner')} ({describe(segment)}):\n")
        print(text.strip() + "\n")
        if repeated.learners:
            print(f"{counted(repeated.learners, 'learner')} left out: they got this same message within the last day, "
                  f"from broadcast {repeated.named()}.")
        if not count:
            print("Nobody to send it to; nothing sent.")
            return 1
        if not args.yes:
            if not sys.stdin.isatty():
                print("Not sent: confirm with --yes when not at a terminal.", file=sys.stderr)
                return 2
            if input(f"Send it to {counted(count, 'learner')}? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Not sent.")
                return 1
        async with db.transaction() as session:
            draft = await create_draft(session, text=text, segment=segment, created_by=operator(), now=utcnow())
            sent = await confirm(session, draft.id, utcnow())
            number, recipients = sent.id, sent.recipients
            audit(session, "broadcast send", sent_arguments(args), "ok")
        await _tell_the_leader(db)
        changed = f" (the preview said {count:,}: learners changed since)" if recipients != count else ""
        print(f"Broadcast #{number} is going out to {counted(recipients, 'learner')}{changed}; the elected "
              f"`lessonbot serve` or `lessonbot dispatch` sends it. "
              f"Follow it: lessonbot broadcast status {number} --watch")
        return 0

    return _run(settings, work, audited=("broadcast send", sent_arguments(args)))


async def _tell_the_leader(db: Database) -> None:
    """The leader's clock fans the confirmed broadcast out now rather than at its next run (PostgreSQL: a notice;
    SQLite has none to send)."""
    from bot.core import JOBS

    if db.backend != "postgresql":
        return
    notices = Notices(db.url, sender=f"shell:{os.getpid()}", handlers={})
    notices.tell(JOBS, FAN_OUT)
    await notices.close()


def status_line(state: Progress) -> str:
    broadcast = state.broadcast
    status = "done" if state.finished and broadcast.status == "sent" else {
        "draft": "draft, not sent", "sending": "going out", "sent": "all queued", "cancelled": "cancelled",
    }.get(broadcast.status, broadcast.status)
    snippet = broadcast.text if len(broadcast.text) <= 60 else broadcast.text[:59] + "…"
    segment = describe(Segment.from_json(broadcast.segment))
    line = f"#{broadcast.id} {status} ({segment}): “{snippet}”\n  "
    if broadcast.status == "draft":
        return line + f"{counted(broadcast.preview_count, 'learner')} when previewed"
    return line + (
        f"recipients {broadcast.recipients:,} · queued {broadcast.queued:,} · delivered {state.delivered:,} · "
        f"in line {state.in_line:,} · waiting for the learner {state.waiting:,} · failed {state.failed:,} · "
        f"withdrawn {state.withdrawn:,}" + (f" · passed over {state.passed_over:,} (paused, stopped or opted out "
                                              "since it was confirmed, or read it in a group chat it went to)"
                                              if state.passed_over else "")
    )


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.broadcast import chosen_broadcasts

    async def work(db: Database) -> int:
        while True:
            async with db.sessions() as session:
                broadcasts = await chosen_broadcasts(session, args.id)
                states = [await progress(session, broadcast) for broadcast in broadcasts]
            if not states:
                print("No broadcasts yet. Send one: lessonbot broadcast send --everyone --text '…'")
                return 0
            print("\n".join(status_line(state) for state in states), flush=True)
            if not args.watch or all(state.finished or state.broadcast.status == "draft" for state in states):
                return 0
            await asyncio.sleep(WATCH_SECONDS)

    return _run(settings, work)


def cmd_cancel(settings: Settings, args: argparse.Namespace) -> int:
    async def work(db: Database) -> int:
        async with db.transaction() as session:
            _broadcast, withdrawn = await cancel(session, args.id, utcnow())
            audit(session, "broadcast cancel", str(args.id), "ok")
        print(f"Broadcast #{args.id} is cancelled; {withdrawn:,} cop{'y' if withdrawn == 1 else 'ies'} not yet sent "
              "withdrawn.")
        return 0

    return _run(settings, work, audited=("broadcast cancel", str(args.id)))
