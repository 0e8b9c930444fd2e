"""`lessonbot certificate verify CODE`: who earned a certificate, for which course, and when; exit 1 if unknown.

Imports stay inside the functions so `lessonbot --help` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from bot.cli.database import database
from bot.text import person_name

if TYPE_CHECKING:
    from bot.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    certificate = subparsers.add_parser("certificate", help="certificates: verify a code printed on one")
    actions = certificate.add_subparsers(dest="certificate_action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check a certificate's verification code")
    verify.add_argument("code", help="the code on the certificate, e.g. LB-K3FQ-7XJD-2MZA-PQ4R")
    verify.set_defaults(func=cmd_verify, uses_database=True)


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.certificate import as_typed, canonical_code
    from storage.learners import certificate_by_code

    code = canonical_code(args.code)

    async def run() -> int:
        if code is None:  # cannot be a code: held by no certificate
            print(f"not found: no certificate has the code {as_typed(args.code)}")
            return 1
        async with database(settings, pool_size=1) as db, db.sessions() as session:
            row = await certificate_by_code(session, code)
        if row is None:
            print(f"not found: no certificate has the code {code}")
            return 1
        print(f"valid: {person_name(row.learner_name)} completed “{person_name(row.course_title)}” on "
              f"{row.printed_on(None).isoformat()} "
              f"(code {row.code})")
        return 0

    return asyncio.run(run())
