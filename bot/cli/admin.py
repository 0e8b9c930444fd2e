"""`lessonbot admin role grant|revoke|list`: who holds which admin role, from the shell (the same rules as `/admin
role` in chat, dialogs/roles.py). Every change, and every refused one, is written to the audit log as done by
`cli:<login name>`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TYPE_CHECKING

from bot.cli.database import database

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from bot.config import Settings
    from dialogs.roles import Grant

ROLE_HELP = "owner, admin, author or support"
SCOPE_HELP = "course:SLUG or team:TEAM_ID (a Slack workspace); none: everywhere"


def register(subparsers: argparse._SubParsersAction) -> None:
    admin = subparsers.add_parser("admin", help="admin roles: grant, revoke, list")
    groups = admin.add_subparsers(dest="admin_group", required=True, metavar="GROUP")
    role = groups.add_parser("role", help="who holds which admin role")
    actions = role.add_subparsers(dest="role_action", required=True, metavar="ACTION")
    for name, summary in (("grant", "give an identity a role"), ("revoke", "take a role away")):
        action = actions.add_parser(name, help=summary)
        action.add_argument("identity", help="channel:id, e.g. telegram:12345 or slack:T01/U02")
        action.add_argument("role", help=ROLE_HELP)
        action.add_argument("scope", nargs="?", default="", help=SCOPE_HELP)
        action.set_defaults(func=cmd_change, uses_database=True)
    listing = actions.add_parser("list", help="every stored role (the ADMINS setting's owners besides)")
    listing.set_defaults(func=cmd_list, uses_database=True)


def operator() -> str:
    """Who runs a command from the shell, as the audit log names them: `cli:<login name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def audit(session: AsyncSession, command: str, arguments: str, outcome: str) -> None:
    """The audit log's line of an admin's act from the shell, by the operator's login, in `session`'s transaction."""
    from storage.models import AdminAuditEntry

    session.add(AdminAuditEntry(identity=operator(), command=command, arguments=arguments[:2000], outcome=outcome))


def cmd_change(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.roles import RoleError, check_course, described, grant_role, parse_grant, revoke_role
    from storage.models import AdminAuditEntry

    arguments = " ".join(word for word in (args.role_action, args.identity, args.role, args.scope) if word)

    async def run() -> int:
        async with database(settings, pool_size=1) as db, db.transaction() as session:
            def audit(outcome: str) -> None:
                session.add(AdminAuditEntry(identity=operator(), command="role", arguments=arguments,
                                            outcome=outcome))

            try:
                identity, grant = parse_grant(args.identity, args.role, args.scope)
                if args.role_action == "grant":  # (a revoke takes away whatever is stored)
                    check_shell_grant(identity, grant)
            except RoleError as exc:
                audit("invalid")
                print(exc, file=sys.stderr)
                return 2
            role = described(grant.role, str(grant.scope))
            if args.role_action == "grant":
                try:  # a course may be installed after its authors are named
                    await check_course(session, grant.scope)
                except RoleError as exc:
                    print(f"Note: {exc} The role holds once it is installed (lessonbot course import).",
                          file=sys.stderr)
                changed = await grant_role(session, identity, grant, by=operator())
                print(f"{identity} is now {role}." if changed else f"{identity} was already {role}.")
            else:
                changed = await revoke_role(session, identity, grant, written=args.identity)
                print(f"{args.identity} is no longer {role}." if changed else
                      f"{identity} does not hold {role} here; owners listed in ADMINS are changed there.")
            audit("ok" if changed else "unchanged")
            return 0 if changed else 1

    return asyncio.run(run())


def check_shell_grant(identity: str, grant: Grant) -> None:
    """RoleError unless a role given from the shell can ever hold: `identity` on a channel Lessonbot has, a course
    scope's value a course id. (Whether that course is installed yet is only noted: it may be imported later.)"""
    from authoring.format.fields import ID, ID_HINT
    from dialogs.roles import RoleError, check_channel

    check_channel(identity)
    if grant.scope.kind == "course" and not ID.match(grant.scope.value):
        raise RoleError("{course} is no course id: {hint}, e.g. spot-phishing.", course=repr(grant.scope.value),
                        hint=ID_HINT)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.roles import described
    from storage.admins import all_roles

    async def run() -> int:
        async with database(settings, pool_size=1) as db, db.sessions() as session:
            held = await all_roles(session)
        for owner in settings.admins:
            print(f"{owner}\towner\t(the ADMINS setting)")
        for row in held:
            print(f"{row.identity}\t{described(row.role, row.scope)}\tgranted by {row.granted_by} "
                  f"on {row.granted_at:%Y-%m-%d}")
        if not held and not settings.admins:
            print("No admins yet: put an identity in ADMINS, or run `lessonbot admin role grant IDENTITY owner`.")
        return 0

    return asyncio.run(run())
