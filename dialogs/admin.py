"""/admin: commands for the people listed in ADMINS. Every attempt is written to the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import func, select

from dialogs import broadcast, nudges, payments
from dialogs.i18n import N_
from dialogs.learner import tr
from dialogs.turn import Command, Turn
from storage.models import AdminAuditEntry, Conversation, InboundMessage, User
from storage.outbox import dead_letters, outbox_counts, pending_inbound_count, requeue


class UsageError(Exception):
    """The admin typed the command wrong; the message says how to type it."""


async def _help(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    lines = [_("Admin commands:")] + [f"/admin {name} — {_(summary)}" for name, (_fn, summary) in SUBCOMMANDS.items()]
    turn.say("\n".join(lines))


async def _stats(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    session = turn.session
    users = await session.scalar(select(func.count()).select_from(User))
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
        lines.append(_("#{id} {address} after {tries} tries — {error}", id=row.id,
                       address=f"{row.channel}:{row.chat_id}", tries=row.attempts,
                       error=row.last_error or _("unknown")))
    lines.append(_("Send /admin requeue ID (or /admin requeue all) to try again."))
    turn.say("\n".join(lines))


async def _requeue(turn: Turn, args: str) -> None:
    _ = tr(turn)
    words = args.split()
    if words == ["all"]:
        count = await requeue(turn.session, None)
    elif words and all(word.lstrip("#").isdigit() for word in words):
        count = await requeue(turn.session, [int(word.lstrip("#")) for word in words])
    else:
        raise UsageError(_("Usage: /admin requeue ID [ID …] or /admin requeue all (IDs come from /admin outbox)."))
    turn.say(_.plural("Requeued {n} failed reply.", "Requeued {n} failed replies.", count))


SUBCOMMANDS: dict[str, tuple[Callable[[Turn, str], Awaitable[None]], str]] = {
    "help": (_help, N_("this list")),
    "stats": (_stats, N_("learners, messages and delivery counts")),
    "outbox": (_outbox, N_("replies that could not be delivered")),
    "requeue": (_requeue, N_("retry failed replies: /admin requeue ID or all")),
    "broadcast": (broadcast.broadcast, N_("announce to a segment: preview, confirm, status")),
    "nudges": (nudges.report, N_("how often each reminder template brings learners back")),
    **payments.ADMIN_SUBCOMMANDS,
}


async def admin(turn: Turn, args: str) -> None:
    name, _, rest = args.strip().partition(" ")
    name = name.lower() or "help"
    identity = turn.identity.address

    def audit(outcome: str) -> None:
        turn.session.add(AdminAuditEntry(identity=identity, command=name[:64], arguments=rest[:2000], outcome=outcome))

    _ = tr(turn)
    if not turn.is_admin:
        audit("denied")
        turn.say(_("Admin commands are for admins only. An operator can add you by putting {identity} in the "
                   "ADMINS setting.", identity=identity))
        return
    entry = SUBCOMMANDS.get(name)
    if entry is None:
        audit("invalid")
        turn.say(_("There is no admin command {name}. Send /admin help for the list.", name=repr(name)))
        return
    try:
        await entry[0](turn, rest.strip())
    except UsageError as exc:
        audit("invalid")
        turn.say(str(exc))
        return
    audit("ok")


COMMANDS = (Command("admin", admin, N_("admin commands (admins only)"), listed=False),)
