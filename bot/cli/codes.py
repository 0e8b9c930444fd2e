"""`lessonbot codes create|list|disable`: access codes for a cohort, made, followed and withdrawn from the shell.

A code opens a paid course for up to `--uses` learners, each redeeming it once in the chat with `/redeem CODE`
(dialogs/payments.py), until `--expires`; `--days` limits each learner's access. The codes are made by the same
owner as `/admin code` (storage.payments.make_code), and every create and disable is written to the admin audit log
as `cli:<user>`, as `lessonbot payments refund` is.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli.admin import operator
from bot.cli.database import database
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings
    from storage.payments import AccessCode


NO_COURSE = "no course {course!r}: give its id from course.yaml (lessonbot course list)"


def register(subparsers: argparse._SubParsersAction) -> None:
    codes = subparsers.add_parser("codes", help="access codes that open a paid course: create, list, disable")
    actions = codes.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="a code for a course, for a number of learners")
    create.add_argument("--course", required=True, help="the course's id from course.yaml (lessonbot course list)")
    create.add_argument("--uses", type=whole(), default=1, help="how many learners may redeem it (default 1)")
    create.add_argument("--expires", help="redeemable until: 2027-01-31 (that whole day, UTC), an ISO time, or 30d")
    create.add_argument("--days", type=whole(), help="each learner's access lasts this many days (default: for good)")
    create.set_defaults(func=cmd_create, uses_database=True)
    listing = actions.add_parser("list", help="the latest codes with their uses")
    listing.add_argument("--course", help="only this course's codes")
    listing.add_argument("--limit", type=whole(least=1), default=50)
    listing.set_defaults(func=cmd_list, uses_database=True)
    disable = actions.add_parser("disable", help="stop a code opening anything more (who redeemed it keeps access)")
    disable.add_argument("code", help="the code, e.g. LB-7K2Q-9XWM")
    disable.set_defaults(func=cmd_disable, uses_database=True)


def _arguments(args: argparse.Namespace) -> str:
    return " ".join(f"--{name} {value}" for name in ("course", "uses", "expires", "days")
                    if (value := getattr(args, name, None)) is not None)


def describe(code: AccessCode, course_slug: str) -> str:
    """One code as a line: code, course, uses, expiry, state."""
    expires = f"{code.expires_at:%Y-%m-%d %H:%M} UTC" if code.expires_at else "no expiry"
    days = f"{code.days} days each" if code.days else "for good"
    state = "disabled" if code.disabled_at else "active"
    return f"{code.code}\t{course_slug}\tused {code.used} of {code.uses}\t{days}\t{expires}\t{state}"


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from dialogs.access_codes import MAX_CODE_USES, code_expiry
    from dialogs.payments import MAX_ACCESS_DAYS
    from storage.courses import Course
    from storage.models import AdminAuditEntry, utcnow
    from storage.payments import make_code

    async def main() -> int:
        now = utcnow()
        problem, line = None, ""
        expires = code_expiry(args.expires, now) if args.expires else None
        if not 1 <= args.uses <= MAX_CODE_USES:
            problem = f"--uses must be from 1 to {MAX_CODE_USES:,}"
        elif args.days is not None and not 1 <= args.days <= MAX_ACCESS_DAYS:
            problem = f"--days must be from 1 to {MAX_ACCESS_DAYS}"
        elif args.expires and expires is None:
            problem = f"--expires {args.expires!r} is not a future date: write 2027-01-31, 2027-01-31T18:00 or 30d"
        async with database(settings) as db, db.transaction() as session:
            course = await session.scalar(select(Course).where(Course.slug == args.course.lower()))
            if problem is None and course is None:
                problem = NO_COURSE.format(course=args.course)
            if problem is None and course is not None:
                code = await make_code(session, course.id, uses=args.uses, days=args.days, expires_at=expires,
                                       created_by=operator(), now=now)
                line = describe(code, course.slug)
            session.add(AdminAuditEntry(identity=operator(), command="codes create", arguments=_arguments(args),
                                        outcome="invalid" if problem else "ok"))
        if problem:
            print(problem, file=sys.stderr)
            return 2
        print(line)
        return 0

    return asyncio.run(main())


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from storage.courses import Course
    from storage.payments import recent_codes

    async def main() -> int:
        async with database(settings) as db, db.sessions() as session:
            course_id = None
            if args.course is not None:
                course_id = await session.scalar(select(Course.id).where(Course.slug == args.course.lower()))
                if course_id is None:
                    print(NO_COURSE.format(course=args.course), file=sys.stderr)
                    return 2
            codes = await recent_codes(session, course_id=course_id, limit=args.limit)
            slugs = {course.id: course.slug for course in
                     [await session.get(Course, course_id) for course_id in {code.course_id for code in codes}]
                     if course is not None}
            if not codes:
                print(f"No access codes yet (lessonbot codes create --course {args.course or 'ID'} makes one).")
            for code in codes:
                print(describe(code, slugs.get(code.course_id, "—")))
        return 0

    return asyncio.run(main())


def cmd_disable(settings: Settings, args: argparse.Namespace) -> int:
    from bot.text import code_letters
    from storage.models import AdminAuditEntry, utcnow
    from storage.payments import access_code, disable_code

    async def main() -> int:
        async with database(settings) as db, db.transaction() as session:
            code = await access_code(session, code_letters(args.code))
            disabled = code is not None and await disable_code(session, code, utcnow())
            session.add(AdminAuditEntry(identity=operator(), command="codes disable", arguments=args.code,
                                        outcome="ok" if disabled else "invalid"))
        if code is None:
            print(f"No access code {args.code!r} (lessonbot codes list shows them).", file=sys.stderr)
            return 1
        if not disabled:
            print(f"{code.code} was disabled already.", file=sys.stderr)
            return 1
        print(f"Disabled {code.code}: it opens nothing more; {code.used} learner(s) who redeemed it keep access.")
        return 0

    return asyncio.run(main())
