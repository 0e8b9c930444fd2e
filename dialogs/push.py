"""What the scheduler calls to message a learner on its own: today's lesson, and a reminder of due reviews.

Each function works inside the caller's transaction and writes its replies to the outbox of the learner's home
conversation (the chat they last learned in), so the dispatcher sends them like any reply. They respect pause,
stop, a platform opt-out, quiet hours and entitlements; the caller decides *when* (the learner's `lesson_time` on
their `lesson_days` in their zone). Each returns the number of replies queued: 0 means nothing was due or allowed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Choice, Reply, Text
from dialogs.i18n import translator
from dialogs.learner import is_set_up
from dialogs.lessons import NEXT, deliver_next_lesson, home_conversation
from dialogs.review import due_reviews
from storage.learners import Learner, in_quiet_hours, is_paused
from storage.models import Conversation, OutboxMessage, User


async def push_next_lesson(session: AsyncSession, user: User, now: datetime, *,
                           data_dir: Path | None = None) -> int:
    """Queue the learner's next lesson part (as /next would give it) unless it is their quiet hours."""
    learner = await session.get(Learner, user.id)
    if learner is None or in_quiet_hours(learner, user, now):
        return 0
    replies = await deliver_next_lesson(session, user, now=now, data_dir=data_dir)
    return await _queue(session, await home_conversation(session, user), replies)


async def push_review_reminder(session: AsyncSession, user: User, now: datetime) -> int:
    """Queue "N questions to review" with a button, when some are due and the learner may be messaged now."""
    learner = await session.get(Learner, user.id)
    if learner is None or not is_set_up(learner) or is_paused(learner, now) or in_quiet_hours(learner, user, now):
        return 0
    due = await due_reviews(session, user, now)
    conversation = await home_conversation(session, user)
    if not due or conversation is None or conversation.opted_out_at is not None:
        return 0
    _ = translator(user.locale)
    reminder = Text(_.plural("🔁 {n} question to review now", "🔁 {n} questions to review now", due),
                    (Choice(_("Review now"), "/review"), Choice(_("Next lesson"), NEXT)))
    return await _queue(session, conversation, [reminder])


async def _queue(session: AsyncSession, conversation: Conversation | None, replies: list[Reply]) -> int:
    if conversation is None:
        return 0
    for reply in replies:
        session.add(OutboxMessage(conversation_id=conversation.id, channel=conversation.channel,
                                  chat_id=conversation.chat_id, payload=reply.to_payload()))
    return len(replies)
