"""/admin: commands for the people who hold an admin role (dialogs/roles.py). Every attempt is written to the audit
log, allowed or not.

Each subcommand names the area of work it belongs to and, where it touches one course or one Slack workspace, how
to find that in its arguments: `admin` checks the person's roles against both, once, before the command runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from bot.messages import Markup, Text
from bot.text import whole_number
from dialogs import access, access_codes, broadcast, nudges, payments, personal, roles
from dialogs.i18n import N_, Translator
from dialogs.learner import tr
from dialogs.turn import Command, Turn, UsageError
from storage.admins import add_sign_in_link
from storage.courses import Course, publish
from storage.learners import Learner
from storage.models import AdminAuditEntry, Conversation, InboundMessage, User
from storage.outbox import dead_letters, outbox_counts, pending_inbound_count
from storage.personal_data import ERASED_ACTOR, ERASED_ARGUMENTS, Person


async def _help(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    held = await roles.grants(turn)
    lines = [_("Admin commands:")] + [
        f"/admin {name} — {_(command.summary)}" for name, command in SUBCOMMANDS.items() if _may_use(held, command)
    ]
    turn.say("\n".join(lines))


def _may_use(held: tuple[roles.Grant, ...], command: Subcommand) -> bool:
    """Whether the roles allow `command` somewhere it applies: within a course or a workspace of theirs when it acts
    on one, only everywhere when it acts on everything at once (stats, broadcast, payments)."""
    return any(command.target.reached_from(scope) for scope in roles.scopes(held, command.area))


async def _stats(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    session = turn.session
    # People who said no to keeping their details, or have not said yes yet, are no learners.
    users = await session.scalar(select(func.count()).select_from(Learner).where(Learner.consent_at.is_not(None)))
    conversations = await session.scalar(select(func.count()).select_from(Conversation))
    inbound = await session.scalar(select(func.count()).select_from(InboundMessage))
    counts = await outbox_counts(session)
    pending_in = await pending_inbound_count(session)
    turn.say(
        _("Learners: {users}\nConversations: {conversations}\nMessages received: {inbound} ({waiting} waiting)\n"
          "Replies: {sent} sent, {queued} queued, {failed} failed", users=users, conversations=conversations,
          inbound=inbound, waiting=pending_in, sent=counts["sent"], queued=counts["pending"] + counts["sending"],
          failed=counts["dead"])
    )


async def _outbox(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    rows = await dead_letters(turn.session, limit=10)
    if not rows:
        turn.say(_("No failed replies. Everything was delivered or is still on its way."))
        return
    lines = [_("Replies that could not be delivered (newest first):")]
    for row in rows:
        lines.append(_.plural("#{id} {address} after {n} try — {error}", "#{id} {address} after {n} tries — {error}",
                              row.attempts, id=row.id, address=f"{row.channel}:{row.chat_id}",
                              error=row.last_error or _("unknown")))
    lines.append(_("Send /admin requeue ID (or /admin requeue all) to try again."))
    turn.say("\n".join(lines))


async def _requeue(turn: Turn, args: str) -> None:
    _ = tr(turn)
    words = args.split()
    numbers = [whole_number(word.lstrip("#")) for word in words]
    if words == ["all"]:
        count = await access.requeue_failed(turn.transaction, None, now=turn.now)
    elif numbers and None not in numbers:
        count = await access.requeue_failed(turn.transaction, [number for number in numbers if number is not None],
                                            now=turn.now)
    else:
        raise UsageError(_("Usage: /admin requeue ID [ID …] or /admin requeue all (IDs come from /admin outbox)."))
    turn.say(_.plural("Requeued {n} failed reply.", "Requeued {n} failed replies.", count))


async def _learner(turn: Turn, address: str) -> Person:
    """The person at `address`, whom the admin's role covers at every address of theirs (a workspace's support
    reaches the person only if all their linked apps are that workspace's)."""
    _ = tr(turn)
    person = await personal.person_at(turn.session, address)
    if person is None:
        raise UsageError(_("No learner is known as {address}. Name them as channel:id, e.g. telegram:12345.",
                           address=repr(address)))
    if not _covers_every_address(await roles.grants(turn), person):
        raise UsageError(_("{address} is linked to apps outside the workspace your role covers: an admin whose role "
                           "holds everywhere can export or erase their data.", address=address))
    return person


def _covers_every_address(held: tuple[roles.Grant, ...], person: Person) -> bool:
    """Whether the roles may act on the learners' data at each of the person's addresses (the export and the
    erasure take every linked app, not only the one named)."""
    return all(roles.permitted(held, "learners", roles.team_of(address)) for address in person.addresses)


async def _erase(turn: Turn, args: str) -> None:
    """/admin erase CHANNEL:ID confirm: the learner's data deleted as /stop → delete does (docs/data.md)."""
    _ = tr(turn)
    words = args.split()
    if not 1 <= len(words) <= 2 or words[1:] not in ([], ["confirm"]):
        raise UsageError(_("Usage: /admin erase CHANNEL:ID confirm, e.g. /admin erase telegram:12345 confirm."))
    address = words[0]
    person = await _learner(turn, address)
    if len(words) == 1:
        turn.say(_("This deletes everything I keep about {address}: name, settings, progress, certificates and "
                   "messages, on every app they linked. To go ahead, send /admin erase {address} confirm",
                   address=address))
        return
    may_take_roles = roles.permitted(await roles.grants(turn), "roles")
    try:
        erasure = await personal.erase_in_turn(turn, person.user_id, by=turn.identity.address,
                                               may_take_roles=may_take_roles)
    except personal.HoldsRoles:
        raise UsageError(_roles_first(_, address)) from None
    except personal.ChargesElsewhere as elsewhere:
        raise UsageError(_(
            "{address} has a subscription with {platforms}, which this chat's server is not connected to: erased "
            "here, they would go on being charged for it. Nothing was erased: erase them from a chat or the dashboard "
            "of the server that takes {platforms}'s webhooks (for Telegram Stars: /admin erase {address} confirm in "
            "a Telegram chat with me).", address=address, platforms=", ".join(elsewhere.platforms))) from None
    # The answer does not name the address: nothing kept after an erasure should.
    turn.say(_("Erased: {messages} messages and {replies} replies went with the rest of that learner's data.",
               messages=erasure.messages, replies=erasure.replies))


def _roles_first(_: Translator, address: str) -> str:
    return _("{address} holds admin roles, which only an owner may take away: an owner revokes them first (/admin "
             "role list shows them), then the erasure can go ahead.", address=address)


async def _export(turn: Turn, args: str) -> None:
    """/admin export CHANNEL:ID: the learner's data as a file, to the admin's private chat."""
    _ = tr(turn)
    words = args.split()
    if len(words) != 1:
        raise UsageError(_("Usage: /admin export CHANNEL:ID, e.g. /admin export telegram:12345."))
    person = await _learner(turn, words[0])
    try:
        await personal.refuse_roles_holder(turn.session, person.user_id, owners=turn.owners,
                                           may_deal_with_roles=roles.permitted(await roles.grants(turn), "roles"))
    except personal.HoldsRoles:
        raise UsageError(_("{address} holds admin roles: only an owner may export their data (their own /export "
                           "sends it to them).", address=words[0])) from None
    if not turn.message.private:
        raise UsageError(_("A learner's data is sent only in a private chat: send /admin export there."))
    if turn.data_dir is None:
        raise RuntimeError("exports need a data folder (DATA_DIR)")
    path = await personal.write_export(turn.session, person.user_id, data_dir=turn.data_dir, now=turn.now)
    turn.send(personal.export_document(_, path, caption=_("The data of {address}, as a JSON file.",
                                                            address=words[0])))


SIGN_IN_LINK_VALID = timedelta(minutes=10)


async def _dashboard(turn: Turn, _args: str) -> None:
    """/admin dashboard: a one-time link that signs this admin in to the dashboard (bot/dashboard/access.py)."""
    _ = tr(turn)
    if not turn.message.private:
        raise UsageError(_("The dashboard's sign-in link is sent only in a private chat: send /admin dashboard there."))
    if turn.site_url is None:
        raise RuntimeError("the dashboard's address is unknown (site_url)")
    link = secrets.token_urlsafe(32)
    await add_sign_in_link(turn.session, turn.identity.address, link, expires_at=turn.now + SIGN_IN_LINK_VALID)
    minutes = int(SIGN_IN_LINK_VALID.total_seconds() // 60)
    turn.send(Text(_("Your link to the dashboard, for you only and once, valid {minutes} minutes: {link}",
                     minutes=minutes, link=Markup(f"{turn.site_url}/admin/sign-in?link={link}")), secret=True))


def _offering(offered: bool) -> Callable[[Turn, str], Awaitable[None]]:
    """/admin publish COURSE, /admin unpublish COURSE: whether people not in the course are offered it."""
    async def run(turn: Turn, args: str) -> None:
        _ = tr(turn)
        words = args.split()
        if len(words) != 1:
            raise UsageError(_("Usage: /admin {name} COURSE (the course's id, as /admin payments or `lessonbot course "
                               "list` show it).", name="publish" if offered else "unpublish"))
        course = await publish(turn.session, words[0].lower(), offered)
        if course is None:
            slugs = ", ".join(await turn.session.scalars(select(Course.slug).order_by(Course.slug))) or "—"
            raise UsageError(_("There is no course {slug}. Courses: {slugs}.", slug=repr(words[0][:64]), slugs=slugs))
        if offered:
            turn.say(_("“{title}” is published: /courses, the set-up and /buy offer it.", title=course.title))
        else:
            closed = await payments.close_withdrawn_checkouts(turn, course)
            said = _("“{title}” is unpublished: nobody new is offered it, and those taking it keep it. Undo: "
                     "/admin publish {slug}", title=course.title, slug=course.slug)
            if closed:
                said += "\n" + _.plural("{n} payment page opened by someone not taking it was closed.",
                                         "{n} payment pages opened by people not taking it were closed.", closed)
            turn.say(said)
    return run


@dataclass(frozen=True)
class Target:
    """What a command acts on, for scoped roles: `kind` "" is everything at once (a role must hold everywhere);
    "course", the course its argument at `index` names; "team", the Slack workspace of the learner it names first
    (everything, for an address elsewhere); "own", whatever the role's scope (it shows only what that covers)."""

    kind: str = ""
    index: int = 0

    def named(self, words: list[str]) -> roles.Scope | None:
        """The scope these arguments act on. None: none in particular, which a role of the area runs within its own
        scope: a command that shows only that scope's, or one whose argument is missing or names no course's id
        ("until=30d"), which answers with its usage or that there is no such course."""
        if not self.kind:
            return roles.EVERYWHERE
        if self.kind == "own" or len(words) <= self.index:
            return None
        if self.kind == "team":
            return roles.team_of(words[self.index])
        try:  # a course's id in any case: publish, grant and code look it up lower-cased
            return roles.parse_scope(f"course:{words[self.index].lower()}")
        except roles.RoleError:
            return None

    def reached_from(self, scope: roles.Scope) -> bool:
        """Whether a role holding within `scope` may run the command anywhere (what /admin help lists)."""
        return self.kind == "own" or scope == roles.EVERYWHERE or scope.kind == self.kind


_EVERYWHERE, _OWN_SCOPE, _LEARNER_TEAM = Target(), Target("own"), Target("team")


def _course_word(index: int) -> Target:
    """The course named by the argument at `index` (an author scoped to it may act on it)."""
    return Target("course", index)


def _never(_args: str) -> bool:
    return False


def _always(_args: str) -> bool:
    return True


def _lists_roles(args: str) -> bool:
    """Whether /admin role's arguments ask for the list of who holds which role (`list`, or nothing)."""
    words = args.lower().split()
    return words in ([], ["list"])


@dataclass(frozen=True)
class Subcommand:
    run: Callable[[Turn, str], Awaitable[None]]
    summary: str
    area: str  # what roles.AREAS says may run it
    target: Target = _EVERYWHERE  # what it acts on, from its arguments, for scoped roles
    # whether its answer to these arguments names learners or admins (their addresses, payments, roles): in a group
    # the bot shows nothing that belongs to one member alone, so it is answered only in a private chat
    names_people: Callable[[str], bool] = _never
    takes_words: bool = True  # False: nothing may follow its name (`/admin payments passwords` filters nothing)


# The areas of the payment commands (dialogs/payments.py lists them); one not named here is for owners and admins.
_PAYMENTS_AREAS: dict[str, tuple[str, Target]] = {
    "grant": ("access", _course_word(1)), "revoke": ("access", _course_word(1)), "code": ("access", _course_word(0)),
}

SUBCOMMANDS: dict[str, Subcommand] = {
    "help": Subcommand(_help, N_("this list"), "dashboard", _OWN_SCOPE, takes_words=False),
    "dashboard": Subcommand(_dashboard, N_("a link that signs you in to the dashboard, with charts"), "dashboard",
                            _OWN_SCOPE, takes_words=False),
    "stats": Subcommand(_stats, N_("learners, messages and delivery counts"), "delivery", takes_words=False),
    "outbox": Subcommand(_outbox, N_("replies that could not be delivered"), "delivery", names_people=_always,
                         takes_words=False),
    "requeue": Subcommand(_requeue, N_("retry failed replies: /admin requeue ID or all"), "delivery"),
    "broadcast": Subcommand(broadcast.broadcast, N_("announce to a segment: preview, confirm, status"), "broadcast"),
    "nudges": Subcommand(nudges.report, N_("how often each reminder template brings learners back"), "nudges",
                         takes_words=False),
    "export": Subcommand(_export, N_("a learner's data as a file: /admin export CHANNEL:ID"), "learners",
                         _LEARNER_TEAM),
    "erase": Subcommand(_erase, N_("delete a learner's data: /admin erase CHANNEL:ID confirm"), "learners",
                        _LEARNER_TEAM),
    **{name: Subcommand(run, summary, *_PAYMENTS_AREAS.get(name, ("payments", _EVERYWHERE)),
                        names_people=_always if name == "payments" else _never, takes_words=name != "payments")
       for name, (run, summary) in {**payments.ADMIN_SUBCOMMANDS, **access_codes.ADMIN_SUBCOMMANDS}.items()},
    "publish": Subcommand(_offering(True), N_("offer an unpublished course again: /admin publish COURSE"),
                          "learning", _course_word(0)),
    "unpublish": Subcommand(_offering(False), N_("stop offering a course to anyone not in it: /admin unpublish "
                                                 "COURSE"), "learning", _course_word(0)),
    "role": Subcommand(roles.role_command, N_("who holds which role: /admin role grant|revoke|list"), "roles",
                       names_people=_lists_roles),
}
# The audit line of an erasure must not keep the address it erased.
_AUDITED_WITHOUT_ARGUMENTS = {"erase"}
# What the audit writes for a command name that is none: whatever was typed there (an address, glued to the command
# by a tab or a no-break space) is not kept.
UNKNOWN_COMMAND = "(unknown)"


def _split(args: str) -> tuple[str, str]:
    """The subcommand's name (lower case; "help" when none) and the rest, split at any white space."""
    words = args.split(maxsplit=1)
    return (words[0].lower() if words else "help"), (words[1] if len(words) > 1 else "")


async def _actor(turn: Turn) -> str:
    """Who typed the command, as the audit names them: ERASED_ACTOR once the command erased them (an admin's own
    data), as the erasure names them everywhere else."""
    erased = await turn.session.get(User, turn.user.id) is None
    return ERASED_ACTOR if erased else turn.identity.address


def _denied(_: Translator, name: str, scopes: list[roles.Scope]) -> str:
    """Why /admin `name` is refused: the role's area is another, or (`scopes`) its scope is."""
    if scopes:
        return _("Your role does not allow /admin {name} here: it holds for {scopes} only. Send /admin help for the "
                 "commands you may use.", name=name, scopes=", ".join(map(str, scopes)))
    return _("Your role does not allow /admin {name} here. Send /admin help for the commands you may use.", name=name)


async def admin(turn: Turn, args: str) -> None:
    name, rest = _split(args)
    identity = turn.identity.address

    async def audit(outcome: str) -> None:
        arguments = ERASED_ARGUMENTS if name in _AUDITED_WITHOUT_ARGUMENTS else rest[:2000]
        command = name if name in SUBCOMMANDS else UNKNOWN_COMMAND
        turn.session.add(AdminAuditEntry(identity=await _actor(turn), command=command, arguments=arguments,
                                          outcome=outcome))

    _ = tr(turn)
    held = await roles.grants(turn)
    if not held:
        await audit("denied")
        turn.say(_("Admin commands are for admins only. An owner can give you a role with /admin role grant "
                   "{identity} ROLE, or an operator can put {identity} in the ADMINS setting.", identity=identity))
        return
    command = SUBCOMMANDS.get(name)
    if command is None:
        await audit("invalid")
        turn.say(_("There is no such admin command. Send /admin help for the list."))
        return
    if not (_may_use(held, command) and roles.permitted(held, command.area, command.target.named(rest.split()))):
        await audit("denied")
        turn.say(_denied(_, name, roles.scopes(held, command.area)))
        return
    if command.names_people(rest) and not turn.message.private:
        await audit("invalid")
        turn.say(_("Its answer names learners or admins, so I give it only in a private chat: send /admin {name} to me "
                   "there.", name=name))
        return
    if rest.strip() and not command.takes_words:
        await audit("invalid")
        turn.say(_("/admin {name} takes nothing after it: send /admin {name} alone.", name=name))
        return
    try:
        await command.run(turn, rest.strip())
    except UsageError as exc:
        await audit("invalid")
        turn.say(str(exc))
        return
    await audit("ok")


COMMANDS = (Command("admin", admin, N_("admin commands (admins only)"), listed=False),)
