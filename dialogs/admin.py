"""/admin: commands for the people listed in ADMINS. Every attempt is written to the audit log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import func, select

from dialogs.base import Command, Turn
from storage.models import AdminAuditEntry, Conversation, InboundMessage, User
from storage.outbox import dead_letters, outbox_counts, pending_inbound_count, requeue


class UsageError(Exception):
    """The admin typed the command wrong; the message says how to type it."""


async def _help(turn: Turn, _args: str) -> None:
    lines = ["Admin commands:"] + [f"/admin {name} — {summary}" for name, (_fn, summary) in SUBCOMMANDS.items()]
    turn.say("\n".join(lines))


async def _stats(turn: Turn, _args: str) -> None:
    session = turn.session
    users = await session.scalar(select(func.count()).select_from(User))
    conversations = await session.scalar(select(func.count()).select_from(Conversation))
    inbound = await session.scalar(select(func.count()).select_from(InboundMessage))
    counts = await outbox_counts(session)
    pending_in = await pending_inbound_count(session)
    turn.say(
        f"Learners: {users}\nConversations: {conversations}\n"
        f"Messages received: {inbound} ({pending_in} waiting)\n"
        f"Replies: {counts['sent']} sent, {counts['pending'] + counts['sending']} queued, {counts['dead']} failed"
    )


async def _outbox(turn: Turn, _args: str) -> None:
    rows = await dead_letters(turn.session, limit=10)
    if not rows:
        turn.say("No failed replies. Everything was delivered or is still on its way.")
        return
    lines = ["Replies that could not be delivered (newest first):"]
    for row in rows:
        lines.append(f"#{row.id} {row.channel}:{row.chat_id} after {row.attempts} tries — {row.last_error or 'unknown'}")
    lines.append("Send /admin requeue ID (or /admin requeue all) to try again.")
    turn.say("\n".join(lines))


async def _requeue(turn: Turn, args: str) -> None:
    words = args.split()
    if words == ["all"]:
        count = await requeue(turn.session, None)
    elif words and all(word.lstrip("#").isdigit() for word in words):
        count = await requeue(turn.session, [int(word.lstrip("#")) for word in words])
    else:
        raise UsageError("Usage: /admin requeue ID [ID …] or /admin requeue all (IDs come from /admin outbox).")
    turn.say(f"Requeued {count} failed {'reply' if count == 1 else 'replies'}.")


SUBCOMMANDS: dict[str, tuple[Callable[[Turn, str], Awaitable[None]], str]] = {
    "help": (_help, "this list"),
    "stats": (_stats, "learners, messages and delivery counts"),
    "outbox": (_outbox, "replies that could not be delivered"),
    "requeue": (_requeue, "retry failed replies: /admin requeue ID or all"),
}


async def admin(turn: Turn, args: str) -> None:
    name, _, rest = args.strip().partition(" ")
    name = name.lower() or "help"
    identity = turn.identity.address

    def audit(outcome: str) -> None:
        turn.session.add(AdminAuditEntry(identity=identity, command=name[:64], arguments=rest[:2000], outcome=outcome))

    if not turn.is_admin:
        audit("denied")
        turn.say(
            "Admin commands are for admins only. An operator can add you by putting "
            f"{identity} in the ADMINS setting."
        )
        return
    entry = SUBCOMMANDS.get(name)
    if entry is None:
        audit("invalid")
        turn.say(f"There is no admin command {name!r}. Send /admin help for the list.")
        return
    try:
        await entry[0](turn, rest.strip())
    except UsageError as exc:
        audit("invalid")
        turn.say(str(exc))
        return
    audit("ok")


COMMANDS = (Command("admin", admin, "admin commands (admins only)"),)
