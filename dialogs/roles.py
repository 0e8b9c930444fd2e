"""Admin roles: what each may do (the one check, `allows`), and `/admin role grant|revoke|list` to change who holds
which.

    owner    everything, and the only role that gives or takes roles
    admin    everything but roles: delivery, learners, broadcasts, payments, courses' access, every dashboard page
    author   courses: access codes and grants for their course, the learning and knowledge pages
    support  learners and delivery: stats, outbox, requeue, export, erase, the overview and learners pages

A role holds everywhere, or within a scope: `course:SLUG` (one course) or `team:T01` (one Slack workspace, whose
people are `slack:T01/…`). A scoped role allows an action only on its own course or workspace: `/admin code
phishing-basics` needs a role covering `course:phishing-basics`; `/admin export slack:T01/U02` one covering
`team:T01`. The identities in the ADMINS setting are owners everywhere by configuration (the first owners, who give
everyone else their roles); stored roles live in storage/admins.py.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import KNOWN_CHANNELS, address_as_named, literal
from dialogs.i18n import N_
from dialogs.learner import tr
from dialogs.turn import Turn, UsageError
from storage.admins import add_role, all_roles, remove_role, roles_of
from storage.courses import Course
from storage.db import SessionOnDemand
from storage.models import ChannelIdentity

OWNER, ADMIN, AUTHOR, SUPPORT = "owner", "admin", "author", "support"
ROLES = (OWNER, ADMIN, AUTHOR, SUPPORT)
_ALL = frozenset(ROLES)

# Areas of work, and the roles that may do them: the whole permission table.
AREAS: dict[str, frozenset[str]] = {
    "roles": frozenset({OWNER}),
    "payments": frozenset({OWNER, ADMIN}),
    "broadcast": frozenset({OWNER, ADMIN}),
    "nudges": frozenset({OWNER, ADMIN}),
    "engagement": frozenset({OWNER, ADMIN}),
    "revenue": frozenset({OWNER, ADMIN}),
    "delivery": frozenset({OWNER, ADMIN, SUPPORT}),
    "learners": frozenset({OWNER, ADMIN, SUPPORT}),
    "access": frozenset({OWNER, ADMIN, AUTHOR}),  # give or take a course: grants, codes
    "learning": frozenset({OWNER, ADMIN, AUTHOR}),
    "knowledge": frozenset({OWNER, ADMIN, AUTHOR}),
    "dashboard": _ALL,  # /admin help, /admin dashboard: anyone with a role
    "teams": frozenset({OWNER, ADMIN}),  # a Slack workspace's team courses (dialogs/teams.py)
}

_IDENTITY = re.compile(r"^[a-z][a-z0-9_-]*:\S{1,200}$")
_SCOPE = re.compile(r"^(?P<kind>course|team):(?P<value>[A-Za-z0-9][A-Za-z0-9_.-]{0,100})$")


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a role holds, or what an action touches: everywhere (kind ""), one course, one Slack workspace."""

    kind: str = ""
    value: str = ""

    def covers(self, target: Scope) -> bool:
        return not self.kind or self == target

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}" if self.kind else ""


EVERYWHERE = Scope()


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    scope: Scope = EVERYWHERE


def allows(grant: Grant, area: str, target: Scope | None = EVERYWHERE) -> bool:
    """The one check: may a holder of `grant` do work of `area` on `target` (a course, a workspace, or all; None:
    anywhere at all, for what every role may do within its own scope, such as signing in to the dashboard)?"""
    return grant.role in AREAS[area] and (target is None or grant.scope.covers(target))


def permitted(grants: Iterable[Grant], area: str, target: Scope | None = EVERYWHERE) -> bool:
    return any(allows(grant, area, target) for grant in grants)


def scopes(grants: Iterable[Grant], area: str) -> list[Scope]:
    """Where these grants let their holder see `area`: [EVERYWHERE] when one holds everywhere, else their scopes."""
    found = [grant.scope for grant in grants if grant.role in AREAS[area]]
    return [EVERYWHERE] if EVERYWHERE in found else sorted(set(found), key=str)


def team_of(address: str) -> Scope:
    """The workspace a Slack address belongs to (`slack:T01/U02` → team:T01); EVERYWHERE for any other address."""
    channel, _, external = address.partition(":")
    if channel == "slack" and "/" in external:
        return Scope("team", external.split("/", 1)[0])
    return EVERYWHERE


class RoleError(ValueError):
    """A role, scope or identity typed wrong. `message` is an English message id with `values` to fill in."""

    def __init__(self, message: str, **values: object) -> None:
        super().__init__(message.format(**values))
        self.message = message
        self.values = values


def parse_scope(text: str) -> Scope:
    if not text or text in ("all", "everywhere"):
        return EVERYWHERE
    match = _SCOPE.match(text)
    if match is None:
        raise RoleError(N_("{scope} is no scope: write course:SLUG or team:TEAM_ID, or nothing for everywhere."),
                        scope=repr(text))
    return Scope(match["kind"], match["value"])


def parse_grant(identity: str, role: str, scope: str = "") -> tuple[str, Grant]:
    """The identity and grant a command names, checked: `telegram:12345 admin course:phishing-basics`; the identity
    as its channel names the person (`address_as_named`: a WhatsApp number in E.164)."""
    named = address_as_named(identity) if _IDENTITY.match(identity) else None
    if named is None and identity.startswith("whatsapp:"):
        raise RoleError(N_("{identity} is no WhatsApp number: write it with its country code, e.g. "
                           "whatsapp:+15551234567."), identity=repr(identity))
    if named is None:
        raise RoleError(N_("{identity} is no address: write channel:id, e.g. telegram:12345 or slack:T01/U02."),
                        identity=repr(identity))
    identity = named
    role = role.lower()
    if role not in ROLES:
        raise RoleError(N_("{role} is no role: choose owner, admin, author or support."), role=repr(role))
    grant = Grant(role, parse_scope(scope))
    if grant.role == OWNER and grant.scope != EVERYWHERE:
        raise RoleError(N_("An owner holds everywhere: give owner without a scope."))
    return identity, grant


def check_channel(identity: str, in_use: Collection[str] = ()) -> None:
    """RoleError unless `identity` is on a channel Lessonbot has (or `in_use`, one people have written on): a typo,
    telegran:12345, would store a role nobody ever holds."""
    channels = [*KNOWN_CHANNELS, *(channel for channel in in_use if channel not in KNOWN_CHANNELS)]
    if identity.partition(":")[0] not in channels:
        raise RoleError(N_("{identity} is on no channel Lessonbot has ({channels}): check how it is spelled."),
                        identity=repr(identity), channels=", ".join(channels))


async def check_grant(session: AsyncSession, identity: str, grant: Grant) -> None:
    """RoleError unless a role given in chat can ever hold: on a channel there is (`check_channel`), the course of a
    course scope installed. A revoke is not checked: whatever is stored can be taken away."""
    check_channel(identity, list(await session.scalars(select(ChannelIdentity.channel).distinct())))
    await check_course(session, grant.scope)


async def check_course(session: AsyncSession, scope: Scope) -> None:
    """RoleError when `scope` is a course's that is not installed: a role there holds nowhere."""
    if scope.kind != "course":
        return
    installed = list(await session.scalars(select(Course.slug).order_by(Course.slug)))
    if scope.value not in installed:
        raise RoleError(N_("There is no course {slug}. Courses: {slugs}."), slug=repr(scope.value),
                        slugs=", ".join(installed) or "—")


async def grants_of(
    session: AsyncSession | SessionOnDemand, identity: str, *, owners: Collection[str]
) -> tuple[Grant, ...]:
    """Every role `identity` holds: owner by configuration when it is in `owners` (the ADMINS setting), and the
    stored ones."""
    stored = [Grant(role, parse_scope(scope)) for role, scope in await roles_of(session, identity)]
    return ((Grant(OWNER),) if identity in owners else ()) + tuple(stored)


async def grants(turn: Turn) -> tuple[Grant, ...]:
    """The roles of the person who sent this turn's message."""
    owners = (turn.identity.address,) if turn.listed_admin else ()
    return await grants_of(turn.transaction, turn.identity.address, owners=owners)


async def grant_role(session: AsyncSession, identity: str, grant: Grant, *, by: str) -> bool:
    """Store a role; False when it was held already."""
    return await add_role(session, identity, grant.role, str(grant.scope), by=by)


async def revoke_role(session: AsyncSession, identity: str, grant: Grant, *, written: str | None = None) -> bool:
    """Take a stored role away; False when it was not stored (an ADMINS owner's role is not: remove them there).
    `written`: the identity as the command spelled it, for a role stored under that spelling before addresses were
    read as their channel names people (a WhatsApp number without its "+", which never held, is still listed)."""
    if await remove_role(session, identity, grant.role, str(grant.scope)):
        return True
    return written not in (None, identity) and await remove_role(session, written, grant.role, str(grant.scope))


def described(role: str, scope: str) -> str:
    return f"{role} ({scope})" if scope else role


# /admin role ---------------------------------------------------------------------------------------------------------


async def role_command(turn: Turn, args: str) -> None:
    """/admin role grant|revoke IDENTITY ROLE [SCOPE], /admin role list."""
    _ = tr(turn)
    words = args.split()
    action = words[0].lower() if words else "list"
    if action == "list" and len(words) <= 1:
        await _list(turn)
        return
    if action not in ("grant", "revoke") or not 3 <= len(words) <= 4:
        raise UsageError(_("Usage: /admin role grant IDENTITY ROLE [SCOPE], /admin role revoke IDENTITY ROLE "
                          "[SCOPE] or /admin role list. Roles: owner, admin, author, support; a scope is "
                          "course:SLUG or team:TEAM_ID."))
    try:
        identity, grant = parse_grant(*words[1:])
        if action == "grant":
            await check_grant(turn.session, identity, grant)
    except RoleError as exc:
        raise UsageError(_(exc.message, **exc.values)) from exc
    role = described(grant.role, str(grant.scope))
    if action == "grant":
        if await grant_role(turn.session, identity, grant, by=turn.identity.address):
            turn.say(_("{identity} is now {role}.", identity=identity, role=role))
        else:
            turn.say(_("{identity} was already {role}.", identity=identity, role=role))
        return
    if await revoke_role(turn.session, identity, grant, written=words[1]):
        turn.say(_("{identity} is no longer {role}.", identity=words[1], role=role))
    else:
        turn.say(_("{identity} does not hold {role} here; owners listed in the ADMINS setting are changed there.",
                   identity=identity, role=role))


async def _list(turn: Turn) -> None:
    _ = tr(turn)
    held = await all_roles(turn.session)
    if not held:
        turn.say(_("No roles are stored yet: the owners are the identities in the ADMINS setting."))
        return
    lines = [_("Roles (besides the owners in the ADMINS setting):")]
    # an identity is whatever an owner typed after the channel: shown as written, never as a link or formatting
    lines += [literal(f"{row.identity} — {described(row.role, row.scope)}") for row in held]
    turn.say("\n".join(lines))
