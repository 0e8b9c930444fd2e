"""`lessonbot outbox [--failed] [requeue …]`: replies waiting or failed; put failed ones back in line (audited as the
operator's, as `/admin requeue` is in chat)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli.admin import audit
from bot.cli.database import database
from bot.cli.numbers import whole
from bot.text import counted

if TYPE_CHECKING:
    from bot.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    outbox = subparsers.add_parser("outbox", help="replies waiting or failed; requeue failed ones")
    outbox.add_argument("action", nargs="?", choices=["requeue"], help="put failed replies back in line")
    outbox.add_argument("ids", nargs="*", type=whole(), help="outbox ids to requeue")
    outbox.add_argument("--all", action="store_true", help="requeue every failed reply")
    outbox.add_argument("--failed", action="store_true", help="list the replies that could not be delivered")
    outbox.add_argument("--limit", type=whole(least=1), default=50, help="how many failed replies to list")
    outbox.set_defaults(func=cmd_outbox, uses_database=True)


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.access import requeue_failed
    from storage.db import SessionOnDemand
    from storage.models import utcnow
    from storage.outbox import dead_letters, outbox_counts

    async def main() -> int:
        async with database(settings) as db, db.transaction() as session:
            if args.action == "requeue":
                named = " ".join(["--all"] if args.all else map(str, args.ids))
                if not args.ids and not args.all:
                    audit(session, "outbox requeue", named, "invalid")
                    print("Name the replies to retry (lessonbot outbox requeue 12 13) or use --all.", file=sys.stderr)
                    return 2
                count = await requeue_failed(SessionOnDemand.of(session), None if args.all else args.ids,
                                             now=utcnow())
                audit(session, "outbox requeue", named, "ok")
                print(f"Requeued {counted(count, 'failed reply', 'failed replies')}.")
                return 0
            if args.failed:
                rows = await dead_letters(session, limit=args.limit)
                if not rows:
                    print("No failed replies.")
                for row in rows:
                    print(
                        f"{row.id}\t{row.channel}:{row.chat_id}\ttries={row.attempts}\t"
                        f"{row.created_at:%Y-%m-%d %H:%M:%S}\t{row.last_error or ''}"
                    )
                return 0
            counts = await outbox_counts(session)
            print("  ".join(f"{status}={count}" for status, count in counts.items()))
            return 0

    return asyncio.run(main())
