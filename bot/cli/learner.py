"""`lessonbot learner export|erase CHANNEL:ID`: a learner's data as JSON, or deleted (docs/data.md says what goes).
Both are in the admin audit log as the operator's (`cli:<login name>`), as `/admin export` and `/admin erase` are.

Imports stay inside the functions so `lessonbot --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli.admin import audit, operator
from bot.cli.database import database

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from bot.config import Settings
    from dialogs.payments import PaymentDesk

NOT_FOUND = "No learner is known as {address}: name them as channel:id, e.g. telegram:12345."


def register(subparsers: argparse._SubParsersAction) -> None:
    learner = subparsers.add_parser("learner", help="a learner's data: export it, or erase it")
    actions = learner.add_subparsers(dest="learner_action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="everything kept about a learner, as JSON")
    export.add_argument("address", help="the learner as channel:id, e.g. telegram:12345")
    export.add_argument("--output", type=Path, help="write to this file instead of standard output")
    export.set_defaults(func=cmd_export, uses_database=True)
    erase = actions.add_parser("erase", help="delete a learner's data, as /stop → delete does")
    erase.add_argument("address", help="the learner as channel:id, e.g. telegram:12345")
    erase.add_argument("--yes", action="store_true", help="really erase (without it, nothing is changed)")
    erase.set_defaults(func=cmd_erase, uses_database=True)


def unwritable(path: Path) -> str | None:
    """Why the export cannot be written to `path`, seen before it is made (a folder, a folder that does not exist);
    None if nothing is seen against it (writing may still fail: `cmd_export` says why then)."""
    if path.is_dir():
        return f"Cannot write {path}: it is a folder. Give --output a file name, e.g. {path / 'learner.json'}."
    if not path.parent.is_dir():
        return (f"Cannot write {path}: there is no folder {path.parent}. Make it, or give --output a file in a "
                "folder that exists.")
    return None


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.personal import person_at
    from storage.models import utcnow
    from storage.personal_data import export_person

    if args.output is not None and (problem := unwritable(args.output)):
        print(problem, file=sys.stderr)
        return 2

    async def run() -> int:
        async with database(settings, pool_size=1) as db, db.transaction() as session:
            person = await person_at(session, args.address)
            audit(session, "learner export", args.address, "invalid" if person is None else "ok")
            if person is None:
                print(NOT_FOUND.format(address=args.address), file=sys.stderr)
                return 1
            document = await export_person(session, person.user_id, now=utcnow())
        text = json.dumps(document, ensure_ascii=False, indent=2)
        if args.output is None:
            print(text)
        else:
            try:
                args.output.write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                print(f"Cannot write {args.output}: {exc.strerror or exc}. Give --output a file you may write.",
                      file=sys.stderr)
                return 2
            print(f"Wrote the data of {args.address} to {args.output}.")
        return 0

    return asyncio.run(run())


def charges_elsewhere(address: str, platforms: list[str]) -> str:
    """What `learner erase` says of a person whose subscriptions it cannot cancel with the settings it runs with."""
    settings = {"Telegram": "TELEGRAM_BOT_TOKEN",
                "Stripe": "STRIPE_SECRET_KEY, STRIPE_WEBHOOK_SECRET and PUBLIC_BASE_URL"}
    needed = " and ".join(settings[platform] for platform in platforms)
    return (f"Nothing was erased: {address} has a subscription with {', '.join(platforms)}, which this command cannot "
            f"cancel without {needed}; erased, they would go on being charged for it. Run it with the bot's settings "
            "(where it takes those platforms' webhooks).")


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from contextlib import asynccontextmanager

    from sqlalchemy import select

    from bot.cli.payments import payment_desk_for_commands
    from dialogs.personal import ChargesElsewhere, NotThatPerson, erase_outside_turn, person_at, person_stamp
    from storage.models import User

    @asynccontextmanager
    async def desk() -> AsyncIterator[PaymentDesk]:
        """The platforms reached to cancel subscriptions (opened only for a person who has some), closed after."""
        opened, channels = payment_desk_for_commands(settings)
        try:
            yield opened
        finally:
            for channel in channels:
                await channel.close()

    async def run() -> int:
        async with database(settings, pool_size=1) as db:
            async with db.sessions() as session:
                person = await person_at(session, args.address)
                # who the number names (`person_stamp`): erased while this runs, their number may be given to someone
                # new (SQLite), whom the erasure must not take in their place
                created_at = None if person is None else await session.scalar(
                    select(User.created_at).where(User.id == person.user_id))
            if person is None or created_at is None:
                print(NOT_FOUND.format(address=args.address), file=sys.stderr)
                return 1
            if not args.yes:
                print(f"This deletes everything kept about {args.address} (every app they linked). "
                      f"Run again with --yes to go ahead.", file=sys.stderr)
                return 2
            try:
                erasure = await erase_outside_turn(db, person.user_id, by=operator(), may_take_roles=True,
                                                   data_dir=settings.data_dir, desk=desk,
                                                   stamp=person_stamp(created_at))
            except NotThatPerson:  # erased while the command ran: nobody is erased in their place
                print(NOT_FOUND.format(address=args.address), file=sys.stderr)
                return 1
            except ChargesElsewhere as elsewhere:
                print(charges_elsewhere(args.address, elsewhere.platforms), file=sys.stderr)
                return 2
        print(f"Erased {args.address}: {erasure.messages} messages and {erasure.replies} replies with the rest of "
              "their data.")
        return 0

    return asyncio.run(run())
