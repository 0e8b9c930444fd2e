"""What the bot keeps about a person, and what erasing them does: the one contract, table by table.

`PLAN` names every table of the schema and what an erasure does to it: `ERASED` (the person's rows are deleted),
`SCRUBBED` (rows stay because something else needs them, with the person's text and name taken out) or `KEPT`
(nothing of the person is in it, or it must stay, and why). tests/storage/test_personal_data.py fails for a table
that is not in `PLAN`, so a new table is classified before it ships; docs/data.md says the same in words.

`erase_person` carries the plan out in the caller's transaction; `export_person` gathers the same rows as a JSON
document (`EXPORTED` names the key of each table erased or scrubbed of the person; a test holds the two
together). Both find a person's messages by who sent them (their channel identities), not by who owns the
conversation: in a group, a member's erasure takes their own messages and the replies to them, never another
member's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, delete, false, func, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.admins import AdminRole, AdminSession, forget_identities
from storage.courses import Course, Enrollment, Entitlement, Lesson, LessonProgress, Question, QuestionCard
from storage.dashboard import forget_quoted_figures
from storage.knowledge import KnowledgeAllowance, KnowledgeQuestion, forget_answers_for
from storage.learners import Certificate, Learner, LinkAttempt, drop_learning
from storage.models import (
    AdminAuditEntry,
    ChannelIdentity,
    Conversation,
    InboundMessage,
    OfferedChoice,
    OutboxMessage,
    User,
)
from storage.outbox import ACTIVE, OutboxStatus, forget_keys_of, queued_for
from storage.payments import PURCHASE_CHARGE, AccessCode, Payment, PaymentEvent, charges_of
from storage.scheduling import Broadcast, BroadcastRecipient, NudgeLog, ScheduledLesson
from storage.slack import forget_installer
from storage.teams import (
    Team,
    TeamAdmin,
    TeamMember,
    direct_chats_of,
    forget_digest_chats,
    forget_member,
    memberships_of,
    team_chats_among,
)


class Treatment(StrEnum):
    ERASED = "erased"  # the person's rows are deleted
    SCRUBBED = "scrubbed"  # the rows stay, without the person's text, name or link to them
    KEPT = "kept"  # left as they are: no personal data, or a record that must stay (the reason says which)


@dataclass(frozen=True, slots=True)
class Rule:
    treatment: Treatment
    reason: str


ERASED, SCRUBBED, KEPT = Treatment.ERASED, Treatment.SCRUBBED, Treatment.KEPT

PLAN: dict[str, Rule] = {
    # the person
    "users": Rule(ERASED, "name, language, time zone; a later message starts a new learner"),
    "channel_identities": Rule(ERASED, "their addresses on each platform"),
    "learners": Rule(ERASED, "settings, status, points, streaks, link codes"),
    "enrollments": Rule(ERASED, "courses taken and the place in each"),
    "lesson_progress": Rule(ERASED, "lessons seen and scores"),
    "question_cards": Rule(ERASED, "review cards with the answers they typed"),
    "certificates": Rule(ERASED, "certificates with their name (the PDF files are deleted too)"),
    "entitlements": Rule(ERASED, "access to paid courses; the sales themselves stay as records (see PAYMENT_RECORDS)"),
    "scheduled_lessons": Rule(ERASED, "when their lessons were due"),
    "nudge_log": Rule(ERASED, "the reminders decided for them"),
    "broadcast_recipients": Rule(ERASED, "which announcements went to them"),
    "knowledge_allowances": Rule(ERASED, "how many questions they asked lately"),
    "knowledge_questions": Rule(ERASED, "the questions they asked the answerer, and whether it answered"),
    "admin_roles": Rule(ERASED, "admin roles held by their addresses; a role they granted shows ERASED_ACTOR as who"),
    "admin_sessions": Rule(ERASED, "their dashboard sign-ins"),
    "link_attempts": Rule(ERASED, "wrong /link codes typed from their addresses"),
    "offered_choices": Rule(ERASED, "the buttons sent to them: all of those in their own chats, theirs in groups"),
    "team_members": Rule(
        SCRUBBED,
        "their place in teams learning in a channel (opt-outs, hidden from the leaderboard, their direct chat, the "
        "course of their own waiting behind the team's) goes; "
        "each membership stays as a bare opt-out (the team and their member id, as a chat's STOP mark stays), so the "
        "member sync neither makes them again from the platform's profile nor invites them until they act themselves",
    ),
    "team_admins": Rule(ERASED, "the teams they were made an admin of; one they made shows ERASED_ACTOR as who"),
    # messages
    "inbound_messages": Rule(
        ERASED,
        "what they sent, in any chat, groups included; the message that asked for the "
        "erasure stays as the record of a platform's message id (a redelivery of it is then ignored), its text, "
        "name and sender removed",
    ),
    "outbox_messages": Rule(
        ERASED,
        "replies in their own chats (a team's direct chat with them too, where only the bot wrote) and replies to "
        "their messages in groups; replies not sent yet are cancelled (status cancelled, payload blanked), never sent",
    ),
    "conversations": Rule(
        SCRUBBED,
        "the chat's address stays, so the confirmation reaches them and a platform "
        "opt-out (STOP) is still honoured; the dialog state and the link to them go (in a group, the state's "
        "entries marked as theirs: the steps a member was taking there)",
    ),
    "teams": Rule(
        SCRUBBED,
        "a team they set up (or set again as its admin) stays for its channel, without their address (who set it "
        "up, where its digest went)",
    ),
    "admin_audit": Rule(
        SCRUBBED,
        "the record of admin commands stays; arguments naming their address are blanked, and their address as the "
        "one who typed a command is replaced by ERASED_ACTOR (an admin erasing themselves too); the erasure itself is "
        "recorded with the user number only",
    ),
    # (inbound_messages and outbox_messages of others that name their address, an admin's command and its
    # answer, are blanked too, an answer not sent yet cancelled; an address is found in the text as it is shown,
    # Markdown's escapes undone)
    # nothing of a person
    "inbound_sequences": Rule(KEPT, "a counter per chat"),
    "courses": Rule(KEPT, "course content"),
    "team_lesson_posts": Rule(KEPT, "which lesson a team's channel was posted on which day; no one named"),
    "course_modules": Rule(KEPT, "course content"),
    "lessons": Rule(KEPT, "course content"),
    "questions": Rule(KEPT, "course content"),
    "payments": Rule(
        SCRUBBED,
        "a sale is a record the law asks a seller to keep (course, amount, currency, dates, "
        "the provider's reference): kept, detached from the person (user, the learner it was offered to), chat "
        "and sender blanked; an admin's address "
        "in a note (\"refunded by …\") replaced by ERASED_ACTOR",
    ),
    "payment_charges": Rule(KEPT, "each charge of a sale (amount, dates, the provider's id for it); no one named: the "
                                  "sale they belong to is kept detached from the person"),
    "payment_events": Rule(
        SCRUBBED,
        "event ids stay so a repeated delivery is still ignored; the payloads of their "
        "payments' events, which carry the buyer's e-mail, are blanked",
    ),
    "access_codes": Rule(
        SCRUBBED,
        "codes an admin made for a course (who made one: ERASED_ACTOR once that admin is erased); who redeemed one "
        "is an entitlement, erased",
    ),
    "knowledge_model_calls": Rule(KEPT, "model calls counted per day over all learners, no one named"),
    "knowledge_answer_cache": Rule(
        ERASED,
        "answers the model composed for their questions (which may say again what they typed), reused for whoever "
        "asks the same until they expire; an answer composed for another's question, given to them too, stays",
    ),
    "clock_cursors": Rule(KEPT, "scheduler bookkeeping"),
    "clock_runs": Rule(KEPT, "scheduler bookkeeping"),
    "scheduler_jobs": Rule(KEPT, "the clock's recurring jobs (planner, nudges, dispatch), none per person"),
    "leader_leases": Rule(KEPT, "which process holds a role"),
    "nudge_template_stats": Rule(KEPT, "counts per reminder template, no one named"),
    "broadcasts": Rule(SCRUBBED, "announcements written by admins; the author's address ERASED_ACTOR once erased"),
    "slack_installations": Rule(
        SCRUBBED,
        "a workspace's install of the app, removed by uninstalling it there; who installed it (and any token of "
        "theirs) cleared",
    ),
    "slack_oauth_states": Rule(KEPT, "short-lived install states"),
    "dashboard_figures": Rule(
        SCRUBBED,
        "the dashboard's counts, no one named; the knowledge page's, which quote "
        "questions learners asked, are dropped and counted again without theirs",
    ),
    "alembic_version": Rule(KEPT, "the schema's version"),
}

# The columns that can hold something of a person (their user number, an address or a chat, a name, words they typed,
# a platform's id of what they paid) in the tables whose rows outlive their erasure (SCRUBBED and KEPT, and the
# messages and replies kept blank), and what the erasure does to each: ERASED (emptied, or the person's rows go),
# SCRUBBED (what names them taken out, the rest kept) or KEPT with why. tests/storage/test_personal_data.py finds such
# columns by their names, their types and their links to `users`, and fails for one not named here; a table ERASED
# loses the person's whole rows, every column with them.
COLUMNS: dict[str, dict[str, Rule]] = {
    "access_codes": {
        "code": Rule(KEPT, "a code an admin made for a course, no one's"),
        "created_by": Rule(SCRUBBED, "the admin who made it: ERASED_ACTOR once erased"),
    },
    "admin_audit": {
        "identity": Rule(SCRUBBED, "who typed the command: ERASED_ACTOR once erased"),
        "arguments": Rule(SCRUBBED, "an argument naming their address: ERASED_ARGUMENTS"),
    },
    "broadcasts": {
        "text": Rule(KEPT, "an announcement an admin wrote to many"),
        "segment": Rule(KEPT, "which learners, by course, channel and inactivity: no one named"),
        "created_by": Rule(SCRUBBED, "its author: ERASED_ACTOR once erased"),
        "cursor_user_id": Rule(KEPT, "how far the fan-out went through the users' numbers: a position, read as one"),
    },
    "clock_runs": {"error": Rule(KEPT, "why a scheduler job failed; the jobs run for everyone, none per person")},
    "conversations": {
        "channel": Rule(KEPT, "the chat's platform"),
        "chat_id": Rule(KEPT, "the chat's address: the confirmation reaches it, its STOP mark outlives the data"),
        "user_id": Rule(ERASED, "the link to them"),
        "state": Rule(SCRUBBED, "emptied in their own chats; in a group, the steps marked as theirs"),
    },
    "dashboard_figures": {"figures": Rule(SCRUBBED, "the figures that quote what learners typed are counted again")},
    "payment_charges": {
        "reference": Rule(KEPT, "the platform's id of a charge: the sale's record, kept by law"),
        "paid_by": Rule(KEPT, "what paid a charge at the platform: the sale's record, kept by law"),
    },
    "payment_events": {
        "event_id": Rule(KEPT, "a repeated delivery is still ignored"),
        "payload": Rule(ERASED, "blanked for their payments' events (the buyer's e-mail is in them)"),
        "outcome": Rule(KEPT, "what became of the event, in the bot's words: no one named"),
    },
    "payments": {
        "user_id": Rule(ERASED, "the buyer"),
        "offered_to": Rule(ERASED, "the learner the offer was made to"),
        "chat_id": Rule(ERASED, "where they bought"),
        "sender_id": Rule(ERASED, "who bought"),
        "channel": Rule(KEPT, "the platform of the sale"),
        "reference": Rule(KEPT, "the provider's reference of the sale, kept by law"),
        "charge_reference": Rule(KEPT, "the provider's reference of its payment, kept by law"),
        "subscription_reference": Rule(KEPT, "the provider's reference of its subscription, kept by law"),
        "checkout_url": Rule(KEPT, "the provider's page of the sale, kept with it"),
        "receipt_url": Rule(KEPT, "the provider's receipt of the sale, kept with it by law"),
        "note": Rule(SCRUBBED, "an admin's address in it (\"refunded by …\"): ERASED_ACTOR"),
    },
    "slack_installations": {
        "enterprise_name": Rule(KEPT, "the workspace's org"), "enterprise_url": Rule(KEPT, "the workspace's org"),
        "team_name": Rule(KEPT, "the workspace"),
        "bot_token": Rule(KEPT, "the workspace's bot"), "bot_refresh_token": Rule(KEPT, "the workspace's bot"),
        "bot_user_id": Rule(KEPT, "the workspace's bot"),
        "user_id": Rule(ERASED, "who installed the app"),
        "user_token": Rule(ERASED, "the installer's token"),
        "user_refresh_token": Rule(ERASED, "the installer's token"),
        "incoming_webhook_url": Rule(KEPT, "the workspace's channel for the app"),
        "incoming_webhook_configuration_url": Rule(KEPT, "the workspace's channel for the app"),
    },
    "slack_oauth_states": {"state": Rule(KEPT, "a short-lived install state, no one named")},
    "team_members": {
        "member": Rule(KEPT, "their member id in the bare opt-out: the member sync does not make them again"),
        "user_id": Rule(ERASED, "the link to them"),
        "direct_chat": Rule(ERASED, "the team's direct chat with them"),
    },
    "teams": {
        "channel": Rule(KEPT, "the team's platform"), "chat_id": Rule(KEPT, "the team's channel"),
        "workspace": Rule(KEPT, "the team's workspace"),
        "created_by": Rule(ERASED, "who set the team up"),
        "digest_chat": Rule(ERASED, "where its digest went, one of their chats"),
    },
    "inbound_messages": {
        "channel": Rule(KEPT, "the platform of a message kept (the one that asked, or another's)"),
        "platform_id": Rule(KEPT, "the message that asked: its redelivery is still ignored"),
        "sender_id": Rule(ERASED, "blank in the message that asked; their other messages go"),
        "payload": Rule(ERASED, "blank in the message that asked, and in an admin's command naming them"),
        "error": Rule(ERASED, "cleared in the message that asked"),
    },
    "outbox_messages": {
        "channel": Rule(KEPT, "the platform of a reply kept"),
        "chat_id": Rule(KEPT, "where a reply withheld would have gone (a chat's address, as `conversations` keeps)"),
        "payload": Rule(ERASED, "blank in a reply withheld or naming them; a team's post shows ERASED_ACTOR"),
        "platform_message_id": Rule(KEPT, "the platform's id of a reply sent, for its delivery reports"),
        "idempotency_key": Rule(ERASED, "given up in a reply withheld (a lesson's key names their user number)"),
        "last_error": Rule(KEPT, "why a reply failed, in the dispatcher's words; a withheld one says so"),
        "delivery_error": Rule(ERASED, "cleared in a reply withheld; the platform's words otherwise"),
        "parts_sent": Rule(ERASED, "cleared in a reply withheld; the platform's ids of the parts sent otherwise"),
    },
}

# Where each table that holds something of the person is in `export_person`'s document (None: the table keeps
# nothing of theirs that the document does not show elsewhere, and why).
EXPORTED: dict[str, str | None] = {
    "users": "profile", "channel_identities": "profile", "learners": "profile", "enrollments": "enrollments",
    "lesson_progress": "progress", "question_cards": "answers", "certificates": "certificates",
    "entitlements": "entitlements", "scheduled_lessons": "scheduled_lessons", "nudge_log": "nudges",
    "broadcast_recipients": "broadcasts_received", "knowledge_allowances": "question_allowance",
    "knowledge_questions": "questions", "admin_roles": "admin_roles", "admin_sessions": "dashboard_sign_ins",
    "link_attempts": "link_attempts", "offered_choices": "choices_offered", "team_members": "teams",
    "team_admins": "team_admin_of", "inbound_messages": "messages", "outbox_messages": "replies",
    "payments": "payments",
    "conversations": None,  # their chats' addresses are the profile's; the state is the dialogs' bookkeeping
    "teams": None,  # a team they set up is the channel's; their part in it is `teams`
    "admin_audit": "admin_commands",
    "payment_events": None,  # the platforms' own copies of what `payments` shows
    "access_codes": None, "broadcasts": None,  # what they made as an admin: the channel's, not about them
    "slack_installations": None,  # a workspace's install; who installed it is their Slack address, in the profile
    "dashboard_figures": None,  # counts over everyone
    "knowledge_answer_cache": None,  # the answers they were given are `replies`
}

# Records the law obliges us to keep (a payment, an invoice) name their table here: `erase_person` then detaches
# them from the person (no name, no address) instead of deleting them.
PAYMENT_RECORDS: tuple[str, ...] = ("payments",)

BLANK_REPLY: dict[str, Any] = {"kind": "text", "text": ""}
BLANK_INBOUND: dict[str, Any] = {"text": ""}
ERASED_ARGUMENTS = "(a learner's address, erased)"
SLACK = "slack"  # the channel whose people are "<workspace>/<member>"
ERASED_ACTOR = "(erased)"  # who did something (an admin command, a grant, a refund), once that person is erased


@dataclass(slots=True)
class Person:
    """Who a person is across the tables: their user row id and their platform addresses."""

    user_id: int
    identities: list[tuple[str, str]] = field(default_factory=list)  # (channel, external id)

    @property
    def addresses(self) -> list[str]:
        return [f"{channel}:{external}" for channel, external in self.identities]

    @property
    def written_as(self) -> list[str]:
        """How a text names them: their addresses, and a Slack person's member id alone, as Slack's commands take
        it (`/lessonbot team admin U012ABCDEF`)."""
        members = [external.partition("/")[2] for channel, external in self.identities if channel == SLACK]
        return [*self.addresses, *(member for member in members if member)]

    def sent(self) -> ColumnElement[bool]:
        """Inbound messages this person sent."""
        if not self.identities:
            return false()
        return or_(*(and_(InboundMessage.channel == c, InboundMessage.sender_id == e) for c, e in self.identities))


@dataclass(slots=True)
class Erasure:
    """What an erasure did: how many messages and replies went, and the files of the rows (certificates) to delete."""

    user_id: int
    files: list[str] = field(default_factory=list)
    messages: int = 0
    replies: int = 0
    identities: list[tuple[str, str]] = field(default_factory=list)  # (channel, external id) they had
    own_conversations: set[int] = field(default_factory=set)  # chats only they wrote in: their state went whole


async def person_of(session: AsyncSession, user_id: int) -> Person:
    rows = await session.execute(
        select(ChannelIdentity.channel, ChannelIdentity.external_id).where(ChannelIdentity.user_id == user_id)
    )
    return Person(user_id, [(row.channel, row.external_id) for row in rows])


async def find_person(session: AsyncSession, address: str) -> Person | None:
    """The person at `channel:id` (as /admin and the CLI name them), or None."""
    channel, _, external = address.strip().partition(":")
    if not channel or not external:
        return None
    user_id = await session.scalar(
        select(ChannelIdentity.user_id).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external
        )
    )
    return None if user_id is None else await person_of(session, user_id)


# Erasing --------------------------------------------------------------------------------------------------------------


async def erase_person(session: AsyncSession, user_id: int, *, by: str, keep_inbound_id: int | None = None) -> Erasure:
    """Carry out `PLAN` for one person, in the caller's transaction.

    `by` is who asked ("learner", an admin's address, "cli:<login name>"), written to the audit line.
    `keep_inbound_id` is the message being processed now (its text and name are removed, the row stays until it is
    marked done). The turn that asked may go on using its (deleted) user object: nothing it writes afterwards reaches
    the database.
    """
    person = await person_of(session, user_id)
    erasure = Erasure(user_id, identities=list(person.identities))
    own = await own_conversations(session, person)
    erasure.own_conversations = own
    erasure.replies = await _erase_replies(session, person, own)
    erasure.messages = await _erase_messages(session, person, keep_inbound_id)
    await _unlink_conversations(session, person, own)
    await _erase_offered_choices(session, person, own)
    await _detach_payments(session, user_id)
    await _unname_in_team_posts(session, person)
    await forget_member(session, user_id, person.identities)
    await forget_digest_chats(session, own)
    await forget_identities(session, person.addresses)
    await forget_quoted_figures(session)
    await forget_answers_for(session, str(user_id))  # keyed as their question allowance is
    await _erase_addresses(session, person)
    erasure.files = await drop_user(session, user_id)
    actor = ERASED_ACTOR if by in person.addresses else by[:240]  # an admin who erased themselves: not named again
    session.add(AdminAuditEntry(identity=actor, command="erase", arguments=f"user {user_id}", outcome="ok"))
    await session.flush()
    return erasure


async def drop_user(session: AsyncSession, user_id: int) -> list[str]:
    """Delete a user row and every row that is theirs by user id (not their messages or addresses: `erase_person`
    takes those; /link moves them to the learner it joins, and what the bot queued for the one it drops gives up its
    key, `forget_keys_of`). Returns the files of their certificates, to delete."""
    files = list(await session.scalars(select(Certificate.file_path).where(Certificate.user_id == user_id)))
    await forget_keys_of(session, user_id, reason="not sent: the chat was linked to another learner's lessons")
    await drop_learning(session, user_id)
    for model in (Entitlement, ScheduledLesson, NudgeLog, BroadcastRecipient, KnowledgeQuestion):
        await session.execute(delete(model).where(model.user_id == user_id))
    await session.execute(delete(KnowledgeAllowance).where(KnowledgeAllowance.learner == str(user_id)))
    user = await session.get(User, user_id)
    if user is not None:
        await session.delete(user)
    return files


async def own_conversations(session: AsyncSession, person: Person) -> set[int]:
    """The chats where only this person ever wrote (their private chats, and a team's direct chat with them where
    only the bot wrote): everything in them is theirs. A team's channel is never one member's, even where only they
    wrote in it themselves (the others answer its lessons from their own places): its posts and the buttons they
    offer everyone stay."""
    candidates = set(await session.scalars(select(Conversation.id).where(Conversation.user_id == person.user_id)))
    candidates |= set(await session.scalars(select(InboundMessage.conversation_id).where(person.sent()).distinct()))
    # A team's direct chat with them, where the bot wrote first (an invitation, a nudge) and they may never have.
    candidates |= set(await session.scalars(direct_chats_of(person.user_id, person.identities)))
    home = await session.scalar(select(Learner.home_conversation_id).where(Learner.user_id == person.user_id))
    if home is not None:
        candidates.add(home)
    if not candidates:
        return set()
    shared = set(
        await session.scalars(
            select(InboundMessage.conversation_id)
            .where(InboundMessage.conversation_id.in_(candidates), ~person.sent())
            .distinct()
        )
    )
    teams = set(await session.scalars(team_chats_among(candidates)))
    return candidates - shared - teams


def _their_replies(person: Person, own: set[int]) -> ColumnElement[bool]:
    """Replies in their own chats, and anywhere (a group) replies to their messages and what the bot queued for them
    on its own (a lesson, a reminder, an announcement: `queued_for`)."""
    answering = or_(OutboxMessage.inbound_message_id.in_(select(InboundMessage.id).where(person.sent())),
                    queued_for(person.user_id))
    return or_(OutboxMessage.conversation_id.in_(own), answering) if own else answering


async def _erase_replies(session: AsyncSession, person: Person, own: set[int]) -> int:
    """Unsent replies are cancelled and blanked (never sent); the others are deleted."""
    theirs = _their_replies(person, own)
    deleted = await session.execute(
        delete(OutboxMessage)
        .where(theirs, OutboxMessage.status.not_in(_UNSENT))
        .execution_options(synchronize_session=False)
    )
    cancelled = await session.execute(
        update(OutboxMessage)
        .where(theirs, OutboxMessage.status.in_(_UNSENT))
        .values(**_WITHHELD)
        .execution_options(synchronize_session=False)
    )
    return _count(cancelled) + _count(deleted)


_UNSENT = [status.value for status in (*ACTIVE, OutboxStatus.WAITING)]
# An unsent reply of theirs, or naming them: cancelled and blank, never sent.
_WITHHELD: dict[str, Any] = {
    "status": OutboxStatus.CANCELLED.value,
    "payload": BLANK_REPLY,
    "lease_until": None,
    "parts_sent": None,
    "last_error": "not sent: the person's data was erased",
    "refusal": None,
    "delivery_error": None,
    "idempotency_key": None,
}


async def _erase_messages(session: AsyncSession, person: Person, keep_inbound_id: int | None) -> int:
    """Everything they sent goes, unread messages too; the one being processed stays, blank, until it is done."""
    statement = delete(InboundMessage).where(person.sent())
    if keep_inbound_id is not None:
        statement = statement.where(InboundMessage.id != keep_inbound_id)
        await session.execute(
            update(InboundMessage)
            .where(InboundMessage.id == keep_inbound_id, person.sent())
            .values(payload=BLANK_INBOUND, error=None, sender_id="")
            .execution_options(synchronize_session=False)
        )
    return _count(await session.execute(statement.execution_options(synchronize_session=False)))


async def _unlink_conversations(session: AsyncSession, person: Person, own: set[int]) -> None:
    await session.execute(update(Conversation).where(Conversation.user_id == person.user_id).values(user_id=None))
    if own:
        await session.execute(update(Conversation).where(Conversation.id.in_(own)).values(state={}))
    # Another chat's state (a group's) keeps each member's steps marked with their sender id: theirs go.
    for channel, external in person.identities:
        marked = cast(Conversation.state, Text).contains(f'"{external}"', autoescape=True)
        rows = await session.execute(
            select(Conversation.id, Conversation.state).where(Conversation.channel == channel, marked)
        )
        for conversation_id, state in rows.all():
            kept = without_member(state, external)
            if kept != state:
                await session.execute(update(Conversation).where(Conversation.id == conversation_id).values(state=kept))


def without_member(value: Any, member: str) -> Any:
    """`value` (a conversation's state) without the entries of lists that are marked as `member`'s (a turn's own
    copy of the state it will write back goes through this too: dialogs.personal.forget_in_state)."""
    if isinstance(value, dict):
        return {key: without_member(item, member) for key, item in value.items()}
    if isinstance(value, list):
        return [without_member(item, member) for item in value
                if not (isinstance(item, dict) and item.get("member") == member)]
    return value


async def _erase_offered_choices(session: AsyncSession, person: Person, own: set[int]) -> None:
    """The choices offered in their own chats, and in groups the ones offered to them (by their sender id)."""
    theirs = [
        and_(
            OfferedChoice.member == external,
            OfferedChoice.conversation_id.in_(select(Conversation.id).where(Conversation.channel == channel)),
        )
        for channel, external in person.identities
    ]
    if own:
        theirs.append(OfferedChoice.conversation_id.in_(own))
    if theirs:
        await session.execute(delete(OfferedChoice).where(or_(*theirs)))


async def _unname_in_team_posts(session: AsyncSession, person: Person) -> None:
    """A team's posts that named them, kept in the outbox as records, show ERASED_ACTOR in their name's place: a
    leaderboard's line ("3. NAME: 25 points …"), a list of names ("Behind: A, NAME (2 members).", the admin's digest)
    and a list with points (/home's "Top: A (25), NAME (10)" in a team admin's chat), in any language; nothing else
    is touched. The name may stand there escaped for the platform's Markdown (Ann\\_Lee), which the match allows for."""
    user = await session.get(User, person.user_id)
    names = {name.strip() for name in ((user.display_name if user else None),
                                       *(external.partition("/")[2] or external for _c, external in person.identities))
             if name and name.strip()}
    teams = list(await session.scalars(
        select(Team).join(TeamMember, TeamMember.team_id == Team.id).where(TeamMember.user_id == person.user_id)
    ))
    if not names or not teams:
        return
    theirs = names_pattern(names)
    for team in teams:
        chats = [chat for chat in (team.chat_id, team.digest_chat) if chat]
        admins = select(TeamAdmin.member).where(TeamAdmin.channel == team.channel,
                                                TeamAdmin.workspace == team.workspace)
        admins_own = select(ChannelIdentity.user_id).where(
            ChannelIdentity.channel == team.channel,
            or_(ChannelIdentity.external_id == team.created_by, ChannelIdentity.external_id.in_(admins)))
        in_team = select(Conversation.id).where(Conversation.channel == team.channel, or_(
            Conversation.chat_id.in_(chats), Conversation.chat_id.startswith(f"{team.chat_id}@", autoescape=True),
            Conversation.user_id.in_(admins_own)))  # an admin's own chats: /home's "Top: NAME (25), …"
        rows = await session.execute(
            select(OutboxMessage.id, OutboxMessage.payload).where(OutboxMessage.conversation_id.in_(in_team))
        )
        for outbox_id, payload in rows.all():
            text = payload.get("text") if isinstance(payload, dict) else None
            if not isinstance(text, str):
                continue
            unnamed = renamed(text, theirs, ERASED_ACTOR)
            if unnamed != text:
                await session.execute(update(OutboxMessage).where(OutboxMessage.id == outbox_id)
                                      .values(payload={**payload, "text": unnamed}))


def names_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """Any of `names`, as it stands in a message: each character may be escaped for the platform's Markdown."""
    return re.compile("|".join("".join(r"\\?" + re.escape(c) for c in name) for name in names))


_BOARD_LINE = re.compile(r"^(\d+\. )(.+?)(: .*)$")  # "3. NAME: 25 points · …"
_NAMES_LINE = re.compile(r"^([^:]+: )(.+)( \(\d+ [^()]+\)\.)$")  # "Behind: A, B (2 members)."
_TOP_LINE = re.compile(r"^([^:]+: )(.+ \(\d+\))$")  # /home's "Top: A (25), B (10)"


def renamed(text: str, names: re.Pattern[str], instead: str) -> str:
    """`text` with `instead` in place of each of `names` where a team's post names a member (the line shapes above);
    a name may hold ", " itself (Slack's "Lee, Ann")."""
    return "\n".join(_renamed_line(line, names, instead) for line in text.split("\n"))


def _renamed_line(line: str, names: re.Pattern[str], instead: str) -> str:
    board = _BOARD_LINE.match(line)
    if board and names.fullmatch(board[2]):
        return board[1] + instead + board[3]
    listed = _NAMES_LINE.match(line)
    if listed:
        return listed[1] + re.sub(rf"(?:^|(?<=, ))(?:{names.pattern})(?=, |$)", instead, listed[2]) + listed[3]
    top = _TOP_LINE.match(line)
    if top:
        return top[1] + re.sub(rf"(?:^|(?<=, ))(?:{names.pattern})(?= \(\d+\)(?:, |$))", instead, top[2])
    return line


async def _detach_payments(session: AsyncSession, user_id: int) -> None:
    """Keep their sales as records without them: no user, chat or sender; their events' payloads blanked."""
    sales = list(await session.scalars(select(Payment).where(Payment.user_id == user_id)))
    for reference in sorted(await _platform_references(session, sales)):
        await session.execute(
            update(PaymentEvent).where(cast(PaymentEvent.payload, Text).contains(reference)).values(payload={})
        )
    await session.execute(
        update(Payment).where(Payment.user_id == user_id).values(user_id=None, offered_to=None, chat_id="",
                                                                 sender_id="")
    )


async def _platform_references(session: AsyncSession, sales: Sequence[Payment]) -> set[str]:
    """The platforms' ids of these sales, which their events carry: the checkout, what paid it, the subscription, and
    each charge (a renewal's invoice, and what paid each month: a refund of one month names that alone)."""
    charged = await charges_of(session, [sale.id for sale in sales])
    references = {ref for sale in sales for ref in (sale.reference, sale.charge_reference, sale.subscription_reference)}
    references |= {ref for charges in charged.values() for charge in charges
                   for ref in (charge.paid_by, None if charge.reference == PURCHASE_CHARGE else charge.reference)}
    return {ref for ref in references if ref}


async def _erase_addresses(session: AsyncSession, person: Person) -> None:
    if not person.addresses:
        return
    await session.execute(delete(LinkAttempt).where(LinkAttempt.identity.in_(person.addresses)))
    # Where an admin named them: the audit's arguments, the command the admin typed, the answer the admin got.
    named: list[tuple[Any, Any, dict[str, Any]]] = [
        (AdminAuditEntry, AdminAuditEntry.arguments, {"arguments": ERASED_ARGUMENTS}),
        (InboundMessage, InboundMessage.payload, {"payload": BLANK_INBOUND}),
    ]
    for model, column, blank in named:
        ids = [row_id for row_id, _value in await _rows_naming(session, model.id, column, person.written_as)]
        if ids:
            await session.execute(
                update(model).where(model.id.in_(ids)).values(**blank).execution_options(synchronize_session=False)
            )
    answers = await _rows_naming(session, OutboxMessage.id, OutboxMessage.payload, person.written_as)
    await _withhold_or_blank(session, [row_id for row_id, _payload in answers])
    await _pseudonymise_actor(session, person)
    await session.execute(delete(ChannelIdentity).where(ChannelIdentity.user_id == person.user_id))


# A reply naming them that has not gone: in line, waiting, or failed (an admin's requeue would send it).
_NOT_GONE = [*_UNSENT, OutboxStatus.DEAD.value]


async def _withhold_or_blank(session: AsyncSession, ids: list[int]) -> None:
    """Replies naming them: one not sent yet (failed ones too) is cancelled (never sent, as their own are), a sent
    one blanked."""
    if not ids:
        return
    chosen = OutboxMessage.id.in_(ids)
    await session.execute(update(OutboxMessage).where(chosen, OutboxMessage.status.in_(_NOT_GONE)).values(**_WITHHELD)
                          .execution_options(synchronize_session=False))
    await session.execute(update(OutboxMessage).where(chosen, OutboxMessage.status.not_in(_NOT_GONE))
                          .values(payload=BLANK_REPLY).execution_options(synchronize_session=False))


async def _pseudonymise_actor(session: AsyncSession, person: Person) -> None:
    """Where they are named as who did something (typed an admin command, granted a role, made a code or a
    broadcast, added a team admin, refunded a sale), ERASED_ACTOR stands in their place: the record stays."""
    addresses = person.addresses
    for column in (AdminAuditEntry.identity, AdminRole.granted_by, Broadcast.created_by, AccessCode.created_by):
        await session.execute(
            update(column.class_).where(column.in_(addresses)).values({column.key: ERASED_ACTOR})
            .execution_options(synchronize_session=False)
        )
    for channel, external in person.identities:
        await session.execute(
            update(TeamAdmin).where(TeamAdmin.channel == channel, TeamAdmin.added_by == external)
            .values(added_by=ERASED_ACTOR)
        )
        workspace, _slash, member = external.partition("/")
        if channel == SLACK and member:  # a Slack person is "<workspace>/<member>"
            await forget_installer(session, workspace, member)
    for payment_id, note in await _rows_naming(session, Payment.id, Payment.note, addresses):
        for address in addresses:
            note = _naming(address).sub(ERASED_ACTOR, note)
        await session.execute(update(Payment).where(Payment.id == payment_id).values(note=note))


async def _rows_naming(
    session: AsyncSession, id_column: Any, column: Any, addresses: list[str]
) -> list[tuple[int, Any]]:
    """(id, value) of the rows whose `column` (a text, or a JSON payload) names one of `addresses` as a whole word,
    read as it is shown: a payload's text values (its text, caption, labels) decoded, so a line break is one, and a
    Markdown escape undone (the dialogs' translator writes test:ann_lee into a reply as test:ann\\_lee)."""
    as_text = cast(column, Text)
    found = await session.execute(
        select(id_column, column).where(or_(*(_may_name(as_text, address) for address in addresses)))
    )
    words = [_naming(address) for address in addresses]
    numbers = {address for address in addresses if address.startswith(WHATSAPP_PREFIX)}
    return [(row_id, value) for row_id, value in found.all()
            if any(_names(text, words, numbers) for text in _texts(value))]


def _names(text: str, words: list[re.Pattern[str]], numbers: set[str]) -> bool:
    """`text` names one of the addresses (`words`, as `_naming` reads them), or one of the WhatsApp `numbers` however
    an admin wrote it (`whatsapp_as_named`: whatsapp:15551234567 is whatsapp:+15551234567)."""
    return any(word.search(text) for word in words) or bool(numbers) and any(
        whatsapp_as_named(written[0]) in numbers for written in _WRITTEN_NUMBER.finditer(text))


# A WhatsApp number written in a text as a whole word, however an admin typed it: ADMINS, roles and the admin commands
# read whatsapp:15551234567, whatsapp:+1-555-123-4567 and whatsapp:0015551234567 as whatsapp:+15551234567.
WHATSAPP_PREFIX = "whatsapp:"
_WRITTEN_NUMBER = re.compile(r"(?<![\w:+/.-])whatsapp:[+\d().-]++(?![\w:/])")
_NUMBER_MARKS = re.compile(r"[\s().-]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def whatsapp_as_named(written: str) -> str | None:
    """A WhatsApp address as Twilio names the person, in E.164 ("whatsapp:+15551234567"), or None where no one can
    have it, as bot.messages.address_as_named reads one (storage imports nothing of the project; a test holds the
    two together)."""
    number = _NUMBER_MARKS.sub("", written.removeprefix(WHATSAPP_PREFIX))
    number = "+" + number[2:] if number.startswith("00") else number if number.startswith("+") else "+" + number
    return WHATSAPP_PREFIX + number if _E164.fullmatch(number) else None


# What the stored text may write otherwise than the address itself: the characters a Markdown escape goes before
# (bot.messages.MARKDOWN_ESCAPES), and those JSON escapes (a quote, a backslash, a control character).
_MARKDOWN_ESCAPES = "\\*_`[]~#-+>.)"
_WRITTEN_OTHERWISE = re.compile("[" + re.escape(_MARKDOWN_ESCAPES + '"') + r"\x00-\x1f]")
_ESCAPE = re.compile(r"\\([" + re.escape(_MARKDOWN_ESCAPES) + "])")


def _may_name(text: ColumnElement[str], address: str) -> ColumnElement[bool]:
    """The database's first cut: the stored text holds every piece of the address between the characters it may
    write otherwise (`_rows_naming` then reads the rows found as they are shown)."""
    pieces = [piece for piece in _WRITTEN_OTHERWISE.split(address) if piece]
    as_stored = and_(true(), *(text.contains(piece, autoescape=True) for piece in pieces))
    return or_(as_stored, _may_name_number(text, address)) if address.startswith(WHATSAPP_PREFIX) else as_stored


def _may_name_number(text: ColumnElement[str], address: str) -> ColumnElement[bool]:
    """The first cut for a WhatsApp number however it was written (`whatsapp_as_named`): the text, without the marks
    a number may be written with and the escapes' backslashes, holds its digits after "whatsapp:", with or without
    "+" (taken out) or "00" before them."""
    bare = text
    for mark in "\\+().-":
        bare = func.replace(bare, mark, "")
    digits = address.removeprefix(WHATSAPP_PREFIX + "+")
    return and_(text.contains(WHATSAPP_PREFIX), or_(bare.contains(WHATSAPP_PREFIX + digits),
                                                    bare.contains(f"{WHATSAPP_PREFIX}00{digits}")))


def _texts(value: Any) -> Iterator[str]:
    """Every text in a column's value (a payload's strings, at any depth), with Markdown's escapes undone."""
    if isinstance(value, str):
        yield unescaped(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)


def unescaped(text: str) -> str:
    """What Markdown's escapes in `text` stand for, as bot.messages.unescaped reads them (storage imports nothing of
    the project; a test holds the two together)."""
    return _ESCAPE.sub(r"\1", text)


def _naming(address: str) -> re.Pattern[str]:
    """`address` as a whole word of a text: telegram:12 is not in telegram:123."""
    return re.compile(rf"(?<![\w:+/.-]){re.escape(address)}(?![\w:+/.-])")


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


# Exporting ------------------------------------------------------------------------------------------------------------


async def export_person(session: AsyncSession, user_id: int, *, now: datetime) -> dict[str, Any]:
    """Everything `PLAN` lists as the person's, as one JSON-ready document."""
    person = await person_of(session, user_id)
    user = await session.get(User, user_id)
    own = await own_conversations(session, person)
    bought = list(await session.scalars(select(Payment).where(Payment.user_id == user_id).order_by(Payment.id)))
    charged = await charges_of(session, [row.id for row in bought])
    return {
        "exported_at": now.isoformat(),
        "profile": await _profile(session, user, person),
        "enrollments": await _enrollments(session, user_id),
        "progress": await _progress(session, user_id),
        "answers": await _answers(session, user_id),
        "certificates": [
            {"code": row.code, "course": row.course_title, "name": row.learner_name, "issued_at": _iso(row.issued_at),
             "issued_on": row.issued_on.isoformat() if row.issued_on else None}
            for row in await session.scalars(select(Certificate).where(Certificate.user_id == user_id))
        ],
        "payments": [
            {
                "course_id": row.course_id,
                "provider": row.provider,
                "amount_minor": row.amount_minor,
                "currency": row.currency,
                "status": row.status,
                "created_at": _iso(row.created_at),
                "paid_at": _iso(row.paid_at),
                "refunded_at": _iso(row.refunded_at),
                "receipt": row.receipt_url,
                "discount_minor": row.discount_minor,
                "period": row.period,
                "subscription_status": row.subscription_status,
                "period_end": _iso(row.period_end),
                "renewal_cancelled_at": _iso(row.renewal_cancelled_at),
                "charges": [
                    {"amount_minor": charge.amount_minor, "charged_at": _iso(charge.charged_at),
                     "refunded_at": _iso(charge.refunded_at), "refunded_minor": charge.refunded_minor}
                    for charge in charged.get(row.id, [])
                ],
            }
            for row in bought
        ],
        "questions": [
            {"question": row.question, "outcome": row.outcome, "asked_at": _iso(row.asked_at)}
            for row in await session.scalars(
                select(KnowledgeQuestion).where(KnowledgeQuestion.user_id == user_id).order_by(KnowledgeQuestion.id)
            )
        ],
        "teams": await memberships_of(session, user_id),
        "messages": await _messages(session, person),
        "replies": await _replies(session, person, own),
        **{key: [_row(row) for row in await session.scalars(select(model).where(where))]
           for key, (model, where) in _other_rows(person, own).items()},
    }


# The rest of what is theirs, each as its rows' columns (a secret, such as a sign-in link's hash, left out).
_SECRET_COLUMNS = frozenset({"link_hash", "link_code"})


def _other_rows(person: Person, own: set[int]) -> dict[str, tuple[Any, ColumnElement[bool]]]:
    addresses = person.addresses
    mine = [and_(OfferedChoice.member == external,
                 OfferedChoice.conversation_id.in_(select(Conversation.id).where(Conversation.channel == channel)))
            for channel, external in person.identities]
    if own:
        mine.append(OfferedChoice.conversation_id.in_(own))
    return {
        "entitlements": (Entitlement, Entitlement.user_id == person.user_id),
        "scheduled_lessons": (ScheduledLesson, ScheduledLesson.user_id == person.user_id),
        "nudges": (NudgeLog, NudgeLog.user_id == person.user_id),
        "broadcasts_received": (BroadcastRecipient, BroadcastRecipient.user_id == person.user_id),
        "question_allowance": (KnowledgeAllowance, KnowledgeAllowance.learner == str(person.user_id)),
        "admin_roles": (AdminRole, AdminRole.identity.in_(addresses)),
        "dashboard_sign_ins": (AdminSession, AdminSession.identity.in_(addresses)),
        # what they did as an admin, in chat and on the dashboard (a sign-in, an export, a grant, an erasure): the
        # lines their erasure takes their address out of
        "admin_commands": (AdminAuditEntry, AdminAuditEntry.identity.in_(addresses)),
        "link_attempts": (LinkAttempt, LinkAttempt.identity.in_(addresses)),
        "choices_offered": (OfferedChoice, or_(*mine) if mine else false()),
        "team_admin_of": (TeamAdmin, or_(*(and_(TeamAdmin.channel == channel, TeamAdmin.member == external)
                                           for channel, external in person.identities)) if person.identities
                          else false()),
    }


def _row(row: Any) -> dict[str, Any]:
    values = {column.key: getattr(row, column.key) for column in row.__table__.columns
              if column.key not in _SECRET_COLUMNS}
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in values.items()}


async def _profile(session: AsyncSession, user: User | None, person: Person) -> dict[str, Any]:
    learner = await session.get(Learner, person.user_id)
    profile: dict[str, Any] = {"addresses": person.addresses}
    if user is not None:
        profile |= {
            "name": user.display_name,
            "language": user.locale,
            "time_zone": user.timezone,
            "since": _iso(user.created_at),
            "last_active_at": _iso(user.last_active_at),
        }
    if learner is not None:
        profile |= {
            "status": learner.status,
            "consent_at": _iso(learner.consent_at),
            "lesson_time": learner.lesson_time.isoformat() if learner.lesson_time else None,
            "lesson_days": learner.lesson_days,
            "quiet_hours": [t.isoformat() for t in (learner.quiet_start, learner.quiet_end) if t is not None],
            "paused_until": _iso(learner.paused_until),
            "daily_goal": learner.daily_goal,
            "points": learner.points,
            "streak_days": learner.streak_days,
            "best_streak": learner.best_streak,
            "last_active_on": learner.last_active_on.isoformat() if learner.last_active_on else None,
            "language_chosen": learner.language_chosen,
            "next_lesson_at": _iso(learner.next_lesson_at),
            "course_id": learner.course_id,
            "home_conversation_id": learner.home_conversation_id,
            "learner_since": _iso(learner.created_at),
            "learner_updated_at": _iso(learner.updated_at),
        }
    return profile


async def _enrollments(session: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Enrollment, Course.slug, Course.title)
        .join(Course, Course.id == Enrollment.course_id)
        .where(Enrollment.user_id == user_id)
        .order_by(Enrollment.started_at)
    )
    return [
        {
            "course": slug,
            "title": title,
            "status": e.status,
            "started_at": _iso(e.started_at),
            "completed_at": _iso(e.completed_at),
        }
        for e, slug, title in rows.all()
    ]


async def _progress(session: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(LessonProgress, Lesson.title)
        .join(Lesson, Lesson.id == LessonProgress.lesson_id)
        .where(LessonProgress.user_id == user_id)
        .order_by(LessonProgress.started_at)
    )
    return [
        {
            "lesson": title,
            "parts_seen": p.parts_seen,
            "score": p.score,
            "started_at": _iso(p.started_at),
            "completed_at": _iso(p.completed_at),
        }
        for p, title in rows.all()
    ]


async def _answers(session: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(QuestionCard, Question.prompt)
        .join(Question, Question.id == QuestionCard.question_id)
        .where(QuestionCard.user_id == user_id)
        .order_by(QuestionCard.id)
    )
    return [
        {
            "question": prompt,
            "last_answer": c.last_answer,
            "attempts": c.attempts,
            "correct": c.correct,
            "right_at_first_try": c.scored_right,  # as the lesson's score counted it (None: lesson not finished)
            "last_reviewed_at": _iso(c.last_reviewed_at),
            "due": _iso(c.due),
        }
        for c, prompt in rows.all()
    ]


async def _messages(session: AsyncSession, person: Person) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(InboundMessage, Conversation.chat_id)
        .join(Conversation, Conversation.id == InboundMessage.conversation_id)
        .where(person.sent())
        .order_by(InboundMessage.id)
    )
    return [
        {
            "channel": m.channel,
            "chat": chat,
            "received_at": _iso(m.received_at),
            "text": m.payload.get("text", ""),
            **{key: m.payload[key] for key in ("choice", "sender_name", "meta") if m.payload.get(key)},
        }
        for m, chat in rows.all()
    ]


ANOTHER_MEMBER = "(another member)"  # in an export, who a team's standings or digest named besides the person
# The mark of a reply that carries a credential (bot.messages.SECRET, set by `Text.secret` where the reply is made:
# a dashboard sign-in link, a /link code); storage imports nothing of ours, a test holds the two together.
SECRET = "secret"
# In an export, such a reply's text: whoever reads the file (a support exporting an admin, anyone the file reaches)
# would otherwise sign in as the person, or take their progress, with a link or a code still unused.
WITHHELD = "(a sign-in link or a link code, not shown)"


async def _replies(session: AsyncSession, person: Person, own: set[int]) -> list[dict[str, Any]]:
    """The replies they were sent, as sent, but for the other members of their teams a team's standings, digest or
    /home named: those are another person's data, and read ANOTHER_MEMBER here; and for a reply that carried a
    credential (SECRET), which reads WITHHELD."""
    rows: Sequence[OutboxMessage] = (
        await session.scalars(select(OutboxMessage).where(_their_replies(person, own)).order_by(OutboxMessage.id))
    ).all()
    others = await _teammates_names(session, person)
    return [
        {
            "channel": r.channel,
            "chat": r.chat_id,
            "created_at": _iso(r.created_at),
            "status": r.status,
            "text": renamed(_reply_text(r), others, ANOTHER_MEMBER) if others else _reply_text(r),
        }
        for r in rows
    ]


def _reply_text(reply: OutboxMessage) -> str:
    """What a reply said, as an export shows it: its text (a file's caption, or its name), WITHHELD for one that
    carried a credential."""
    payload = reply.payload
    if payload.get(SECRET):
        return WITHHELD
    return str(payload.get("text") or payload.get("caption") or payload.get("filename") or "")


async def _teammates_names(session: AsyncSession, person: Person) -> re.Pattern[str] | None:
    """The names the other members of their teams go by in a team's posts (the teams they are in, made or
    administer), or None when there are none; a name that is also theirs is left to them."""
    externals = [external for _channel, external in person.identities]
    administered = select(Team.id).join(TeamAdmin, and_(TeamAdmin.channel == Team.channel,
                                                        TeamAdmin.workspace == Team.workspace))
    teams = select(Team.id).where(or_(
        Team.id.in_(select(TeamMember.team_id).where(TeamMember.user_id == person.user_id)),
        Team.created_by.in_(externals),
        Team.id.in_(administered.where(TeamAdmin.member.in_(externals))),
    ))
    user = await session.get(User, person.user_id)
    own = {((user.display_name if user else None) or "").strip(), *(e.rpartition("/")[2] for e in externals)}
    rows = await session.execute(
        select(User.display_name, TeamMember.member)
        .join(User, User.id == TeamMember.user_id, isouter=True)
        .where(TeamMember.team_id.in_(teams), or_(TeamMember.user_id.is_(None), TeamMember.user_id != person.user_id))
    )
    names = {(name or member.rpartition("/")[2]).strip() for name, member in rows.all()} - own - {""}
    return names_pattern(sorted(names, key=len, reverse=True)) if names else None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
