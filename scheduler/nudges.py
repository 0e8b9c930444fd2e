"""Reminders that bring learners back: who gets which nudge now, and, later, whether it worked.

Kinds, in the order they win when several are due for one learner at once:
- `streak`: the learner has a streak of STREAK_AT_RISK days or more that ends at local midnight (today is the
  lesson day it needs, `storage.learners.streak_deadline`, and they have not learned yet today), and it is evening
  where they are (STREAK_SAVER_HOURS). On a day their own lesson comes in the evening, the saver waits until
  AFTER_OWN_LESSON after it (`streak_saver_from`; once the planner decided the day's lesson, the one it sent, whatever
  hour the learner moved to since). Only with a lesson to offer; without one, a review when
  questions are due, else nothing.
- `unfinished`: the learner left a lesson part way (a part or its quiz to go, their place moved by their own messages,
  not by a pushed lesson they have not answered: `taking_a_lesson`) today and has been quiet UNFINISHED_AFTER since:
  one reminder that day to pick it up, with its button (the planner pushes nothing into a lesson under way, and its
  next push is the next lesson day's; the come-back steps wait a day). In the local DAYTIME for a learner who set no
  quiet hours; an evening streak saver wins over it.
- `inactive`, then `farewell`: one nudge when the learner has been away INACTIVE_AFTER[0], [1], [2] (a day, three
  days, a week), and after FAREWELL_AFTER a last one that says the bot stops reminding. Steps count from when the
  learner was last with the bot (`away_since`): their last activity, or the end of a pause that has run out (time
  paused is not time away); so any message from them starts the sequence over, and a learner first seen long after
  a step skips the steps they have outgrown (no burst of catch-up nudges). Days are the learner's calendar days
  (`days_between`), for the steps and for "it's been N days", and no step comes sooner than a day after (on a channel
  whose window closes then, the first comes from FIRST_STEP_IN_WINDOW on, WINDOW_MARGIN before it closes at the
  latest). Only for a learner with a lesson to come back to (a course chosen
  and not finished, or a lesson added to it since, its next lesson open to them, and shown in their home chat: not
  a paid one in a group); never
  within LESSON_REMINDS after a lesson the planner queued to them (the lesson is the reminder; for the first step
  inside a closing window, LESSON_REMINDS_IN_WINDOW); only on a lesson day
  (one due on a day off waits for the next); and, for a learner who set no quiet hours, only in the local DAYTIME.
- `review`: spaced-review questions are due for a learner active in the last day, in the afternoon (REVIEW_HOURS),
  unless their streak is at risk (the evening's streak saver covers both). Counted as /review counts them
  (`dialogs.review.open_due_reviews`): questions of a lesson the learner may no longer open are not announced.

At most one nudge per sweep per learner, none within NUDGE_GAP of the one before, none in quiet hours (the next
sweep after them sends it), none to paused or stopped learners, to a chat that opted out or to one no process serves
on its own (ONLY_WHILE_OPEN); a nudge decided withdraws the learner's earlier ones still unsent. A channel may have
a rule of its own for messages the learner did not ask for (`JobContext.unprompted_windows`, declared by the channel: on
WhatsApp, only within 24 hours of the learner's last message unless an approved template is configured); past it the
nudge is skipped and recorded (`skipped_window`) instead of queued to wait for the learner to write (when it would be
pointless).

Each nudge is decided once: a `nudge_log` row under the nudge's key (`nudge:{user}:{kind}:…`) and its outbox row
with the same key, in one transaction. The template is the bandit's choice (dialogs/bandit.py); `settle` later
records whether the learner came back to learn (not merely wrote: pausing or stopping is no success) within the
reward window of the nudge going out, which is what the bandit learns from; one still unsent after
UNDELIVERED_AFTER is settled as undelivered, and withdrawn.

Coming back after a nudge is not coming back because of it: many learners would have written anyway. So a share of
decided nudges (`JobContext.nudge_holdout`, NUDGE_HOLDOUT) is held out: recorded as decided but never sent, chosen by
the nudge's key (so a decision made twice holds out the same nudge). They are settled the same way, from the moment
they were decided, and kept per kind under the template HELD_OUT: the rate without a reminder, which /admin nudges
and the dashboard show beside each template's. The bandit never sees them.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import ScalarSelect, and_, case, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from dialogs import nudges as wording
from dialogs.bandit import Arm, arms_for, choose, record_outcome
from dialogs.learner import named_in_a_group
from dialogs.nudges import FAREWELL, INACTIVE, REVIEW, STREAK, UNFINISHED, NudgeFacts
from dialogs.review import open_due_reviews
from scheduler.context import JobContext
from storage.courses import (
    COMPLETED,
    FREE,
    Course,
    Enrollment,
    Lesson,
    LessonProgress,
    Question,
    QuestionCard,
    accessible,
    in_free_preview,
)
from storage.learners import (
    ACTIVITY_PRECISION,
    LONGEST_STREAK_GAP,
    Learner,
    in_quiet_hours,
    is_lesson_day,
    learned_between,
    streak_deadline,
    zone_for,
)
from storage.models import Conversation, OutboxMessage, User
from storage.outbox import NUDGE_KEY, OutboxEntry, enqueue, withdraw_unsent_nudges
from storage.queries import insert_ignoring_conflicts, member_id, rows_affected
from storage.scheduling import (
    HELD_OUT,
    NUDGE_REWARD_WINDOW,
    QUEUED,
    SKIPPED_WINDOW,
    NudgeLog,
    ScheduledLesson,
    may_be_messaged,
)

log = logging.getLogger(__name__)

INACTIVE_AFTER = (timedelta(days=1), timedelta(days=3), timedelta(days=7))
FAREWELL_AFTER = timedelta(days=14)
STEPS = (*INACTIVE_AFTER, FAREWELL_AFTER)  # the farewell is the last step
LOOK_BACK = timedelta(days=30)  # learners away longer had their farewell: left alone
NUDGE_GAP = timedelta(hours=12)
STREAK_AT_RISK = 2
STREAK_SAVER_HOURS = (time(19, 0), time(23, 0))  # local; a streak ends at local midnight
AFTER_OWN_LESSON = timedelta(hours=1)  # an evening lesson is its own reminder: the saver waits this long after it
REVIEW_HOURS = (time(12, 0), time(21, 0))  # local
# a lesson left part way is worth a reminder once the learner has been quiet this long (not back from a short break)
UNFINISHED_AFTER = timedelta(hours=2)
# the kinds `decide` gives (a team's nudges are its admin's: dialogs/teams.py): the sweep reads their records only
DECIDED_KINDS = (STREAK, UNFINISHED, INACTIVE, FAREWELL, REVIEW)
DAYTIME = (time(9, 0), time(21, 0))  # local: inactivity nudges and the farewell, for a learner who set no quiet hours
LESSON_REMINDS = timedelta(days=1)  # a lesson the planner queued is itself the reminder: no inactivity nudge this long
UNDELIVERED_AFTER = timedelta(days=2)  # a nudge still not sent by then taught nothing: settled without a verdict
# On a channel that may send unprompted messages only for a while after the learner writes (WhatsApp without a
# template: 24 hours), the first come-back nudge may go this soon, while the window is still open (in the learner's
# daytime and out of their quiet hours: from 12 hours on, a learner last here at 08:00 has that evening), and no later
# than WINDOW_MARGIN before it closes (one decided in its last minute would wait for them to write, and arrive stale
# ahead of the reply to what they wrote).
FIRST_STEP_IN_WINDOW = timedelta(hours=12)
WINDOW_MARGIN = timedelta(minutes=30)
# There, a lesson the planner queued holds that first step back only this long (LESSON_REMINDS would outlast the
# window: a learner who wrote at 08:05 and was pushed a lesson at 09:00 would get no come-back nudge at all); so a
# morning lesson leaves the evening to it, and an evening one is not followed by a nudge on its heels.
LESSON_REMINDS_IN_WINDOW = timedelta(hours=6)
# Channels no process serves on its own: the terminal (`lessonbot chat`, bot.channel.ServesOneChat) reaches its
# learner only while they have it open, so a reminder would wait there and arrive stale, with the others, when they
# next open it. No nudge is decided for a learner whose home chat is on one.
ONLY_WHILE_OPEN = frozenset({"console"})
BATCH = 500


@dataclass(frozen=True)
class Past:
    """A nudge this learner got before (from `nudge_log`)."""

    kind: str
    step: int
    template: str
    created_at: datetime


@dataclass(frozen=True)
class Nudge:
    """A nudge decided for one learner: its kind, step, idempotency key and what it may mention."""

    kind: str
    step: int
    key: str
    facts: NudgeFacts


def decide(learner: Learner, user: User, history: list[Past], now: datetime, *, due_reviews: int = 0,
           last_lesson: datetime | None = None, lesson_to_come: bool = True,
           window_closes: datetime | None = None,
           lessons_decided: Mapping[date, datetime | None] | None = None, mid_lesson: bool = False) -> Nudge | None:
    """The nudge this learner should get now, if any. `history`: their earlier nudges, newest first; `due_reviews`:
    the review questions /review would ask them now; `last_lesson`: when the last lesson the planner queued to them
    was due; `lesson_to_come`: whether they have a lesson to come back to (a course chosen, not finished, and its
    next lesson open to them there); `window_closes`: when their chat's channel may no longer send them what they
    did not ask for (None: no such limit); `lessons_decided`: the local dates of late whose lesson the planner
    decided, each with when it queued the lesson (None: none went that day); `mid_lesson`: whether they are part way
    through a lesson."""
    if in_quiet_hours(learner, user, now):
        return None
    if history and now - history[0].created_at < NUDGE_GAP:
        return None
    local = now.astimezone(zone_for(user.timezone))
    today, clock = local.date(), local.time().replace(tzinfo=None)
    uid = user.id
    lesson_day = is_lesson_day(learner, today)
    # Tonight only if the streak ends at midnight: today is the lesson day it needs (a day off ends none).
    last_day = learner.last_active_on
    saver_tonight = ((learner.streak_days or 0) >= STREAK_AT_RISK and last_day is not None
                     and last_day < today == streak_deadline(learner.lesson_days, last_day))
    if saver_tonight and streak_saver_from(learner, today, _lesson_of(today, lessons_decided, local.tzinfo)) <= clock \
            < STREAK_SAVER_HOURS[1]:
        if lesson_to_come:
            return Nudge(STREAK, 0, f"{NUDGE_KEY}{uid}:streak:{today.isoformat()}",
                         NudgeFacts(streak=learner.streak_days))
        if due_reviews:  # no lesson to offer (a course finished, the next lesson closed): a review keeps it too
            return Nudge(REVIEW, 0, f"{NUDGE_KEY}{uid}:review:{today.isoformat()}",
                         NudgeFacts(due_reviews=due_reviews))
    last_active = user.last_active_at
    # Left a lesson part way today, and quiet since: one reminder to finish it (the key is the day's), a reminder and
    # not the lesson (nothing is pushed into a lesson under way)
    if (mid_lesson and lesson_to_come and last_active is not None and now - last_active >= UNFINISHED_AFTER
            and last_active.astimezone(local.tzinfo).date() == today
            and (has_quiet_hours(learner) or DAYTIME[0] <= clock < DAYTIME[1])):
        return Nudge(UNFINISHED, 0, f"{NUDGE_KEY}{uid}:unfinished:{today.isoformat()}", NudgeFacts())
    since = away_since(learner, user, now)
    # A channel whose window closes a day after the learner wrote gets the first step before it does.
    first_step = STEPS[0] if window_closes is None else FIRST_STEP_IN_WINDOW
    if last_active is not None and since is not None and first_step <= now - since < LOOK_BACK:
        if (not lesson_to_come  # nothing to come back to: "your next lesson is ready" would not be true
                or (last_lesson is not None and now - last_lesson < lesson_reminds(now - since, window_closes))
                or (not has_quiet_hours(learner) and not DAYTIME[0] <= clock < DAYTIME[1])
                or not lesson_day  # a day off is not a day to be reminded: the next lesson day is
                or (now - since < STEPS[0] and (window_closes is None or now >= window_closes - WINDOW_MARGIN))
                # the farewell promised to stop: nothing more until the learner writes
                or any(past.kind == FAREWELL and past.created_at > last_active for past in history)):
            return None
        # Steps count the learner's calendar days away, as what they are told does ("it's been 3 days" on the third
        # day since the one they were last here), and never less than a day (FIRST_STEP_IN_WINDOW) after.
        away = days_between(since, now, user)
        due_step = max((step for step, after in enumerate(STEPS) if away >= after.days), default=-1)
        if now - since < STEPS[0]:  # the first step inside a closing window (above): due whatever the calendar says
            due_step = max(due_step, 0)
        done = max((past.step for past in history if past.kind in (INACTIVE, FAREWELL)
                    and past.created_at > since), default=-1)
        if due_step > done:
            kind = FAREWELL if due_step == len(STEPS) - 1 else INACTIVE
            # The key names the absence it belongs to: a learner who comes back and drifts off again starts over.
            key = f"{NUDGE_KEY}{uid}:{kind}:{due_step}:{int(since.timestamp())}"
            # (the first step inside a closing window may come the same evening: "a day" then, never "0 days")
            return Nudge(kind, due_step, key, NudgeFacts(days_away=max(days_between(last_active, now, user), 1)))
        return None
    # A streak at risk gets its saver in the evening instead: one nudge a day, and a lesson keeps both.
    if (due_reviews and not saver_tonight and last_active is not None and now - last_active < STEPS[0]
            and REVIEW_HOURS[0] <= clock < REVIEW_HOURS[1]):
        return Nudge(REVIEW, 0, f"{NUDGE_KEY}{uid}:review:{today.isoformat()}", NudgeFacts(due_reviews=due_reviews))
    return None


def lesson_reminds(away: timedelta, window_closes: datetime | None) -> timedelta:
    """How long a lesson the planner queued holds back a come-back step due after `away`: a day, but only
    LESSON_REMINDS_IN_WINDOW for the first step inside a window that closes before then."""
    return LESSON_REMINDS if window_closes is None or away >= STEPS[0] else LESSON_REMINDS_IN_WINDOW


def days_between(earlier: datetime, now: datetime, user: User) -> int:
    """Calendar days from `earlier` to `now` where the learner is: Monday 23:30 to Friday 09:00 is 4."""
    zone = zone_for(user.timezone)
    return (now.astimezone(zone).date() - earlier.astimezone(zone).date()).days


def away_since(learner: Learner, user: User, now: datetime) -> datetime | None:
    """Since when the learner has been away: their last activity, or the end of a pause that has run out by `now` if
    later (a pause they asked for is not being away). None: never active."""
    last_active = user.last_active_at
    if last_active is None:
        return None
    paused_until = learner.paused_until
    if paused_until is not None and last_active < paused_until <= now:
        return paused_until
    return last_active


def has_quiet_hours(learner: Learner) -> bool:
    """Whether the learner set quiet hours of their own (`storage.learners.in_quiet_hours` reads them)."""
    start, end = learner.quiet_start, learner.quiet_end
    return start is not None and end is not None and start != end


@dataclass(frozen=True)
class DayLesson:
    """The lesson the planner decided for one of the learner's local dates: the local time it went (None: none did)."""

    went_at: time | None


def _lesson_of(day: date, decided: Mapping[date, datetime | None] | None, zone: tzinfo | None) -> DayLesson | None:
    """The lesson decided for `day` (None: not decided yet), from when each was queued (`decide`'s lessons_decided)."""
    if decided is None or day not in decided:
        return None
    queued = decided[day]
    return DayLesson(None if queued is None else queued.astimezone(zone).time().replace(tzinfo=None))


def streak_saver_from(learner: Learner, today: date, decided: DayLesson | None = None) -> time:
    """The local time from which tonight's streak saver may go: the evening, but when the learner's own lesson comes
    that day, no sooner than AFTER_OWN_LESSON after it (a lesson at 22:30 leaves no room for a saver before 23:00).
    Once the planner decided the day's lesson (`decided`: when it queued it, None when it sent none), that is the
    lesson of the day, whatever hour the learner has moved to since: no other comes that day."""
    if decided is not None:
        return STREAK_SAVER_HOURS[0] if decided.went_at is None else _after_lesson(today, decided.went_at)
    at, days = learner.lesson_time, learner.lesson_days or ""
    if at is None or str(today.isoweekday()) not in days:
        return STREAK_SAVER_HOURS[0]
    return _after_lesson(today, at)


def _after_lesson(today: date, at: time) -> time:
    """The saver's evening, from no sooner than AFTER_OWN_LESSON after a lesson at `at` today."""
    after = datetime.combine(today, at) + AFTER_OWN_LESSON
    if after.date() != today:
        return STREAK_SAVER_HOURS[1]
    return max(STREAK_SAVER_HOURS[0], after.time())


def pick_template(arms: Sequence[Arm], nudge: Nudge, history: list[Past], rng: random.Random) -> str:
    """The template for a decided nudge: the bandit's choice, steered away from what this learner got lately."""
    return choose(arms, rng, recent=[past.template for past in history if past.kind == nudge.kind])


def held_out(nudge: Nudge, share: float) -> bool:
    """Whether this nudge is one of the `share` held back to measure the rate without a reminder: the same answer
    for the same nudge (its key) every time it is decided."""
    if share <= 0:
        return False
    draw = int.from_bytes(hashlib.blake2b(nudge.key.encode(), digest_size=8).digest(), "big") / 2**64
    return draw < share


def window_closes(ctx: JobContext, conversation: Conversation) -> datetime | None:
    """Until when the conversation's channel may send the learner what they did not ask for; None: no limit."""
    window = ctx.unprompted_windows.get(conversation.channel)
    return None if window is None else window(conversation.last_inbound_at)


def outside_window(ctx: JobContext, conversation: Conversation, now: datetime) -> bool:
    """Whether the conversation's channel may no longer send the learner what they did not ask for."""
    until = window_closes(ctx, conversation)
    return until is not None and now >= until


# The sweep -----------------------------------------------------------------------------------------------------------


def _due_cards(now: datetime):
    """Due cards of live questions: what may be open to the learner, read for many at once. /review's own rule
    (`open_due_reviews`) decides which of them are, for the learners a review reminder is decided for."""
    return (
        select(QuestionCard.user_id)
        .join(Question, Question.id == QuestionCard.question_id)
        .where(QuestionCard.due <= now, Question.retired.is_(False))
    )


@dataclass(frozen=True)
class Candidate:
    """A learner who may be due a nudge, with what `decide` needs to know beyond their rows."""

    learner: Learner
    user: User
    conversation: Conversation
    last_lesson: datetime | None  # when the last lesson the planner queued to them was due (lately; None: none)
    lesson_to_come: bool  # a course chosen, not finished (or a lesson added since), and its next lesson open to them
    # the local dates of late whose lesson the planner decided: when it queued it (None: it sent none that day); read
    # for a learner with a streak to save
    lessons_decided: Mapping[date, datetime | None] = field(default_factory=dict)
    mid_lesson: bool = False  # part way through a lesson: a part or its quiz still to go


async def candidates(session: AsyncSession, now: datetime) -> list[Candidate]:
    """Learners who may be due a nudge (the exact rules are in `decide`): away a day or more but not past the
    farewell, with a lesson to come back to; with a streak that could end tonight; or active lately with reviews
    due."""
    farewell_sent = (
        select(NudgeLog.id)
        .where(NudgeLog.user_id == User.id, NudgeLog.kind == FAREWELL, NudgeLog.created_at > User.last_active_at)
        .exists()
    )
    # `away_since`: the last activity, or the end of a pause that has run out if later.
    pause_over = and_(Learner.paused_until.is_not(None), Learner.paused_until <= now)
    first_step = min(STEPS[0], FIRST_STEP_IN_WINDOW)
    away = and_(
        User.last_active_at <= now - first_step,
        or_(~pause_over, Learner.paused_until <= now - first_step),
        or_(User.last_active_at > now - LOOK_BACK, and_(pause_over, Learner.paused_until > now - LOOK_BACK)),
        ~farewell_sent,
    )
    # ... and open to them: a paid course's next lesson past the free preview is no lesson "ready" to come back to;
    # nor, in a chat of many (their home chat a group), one that is not free to try: it is not shown there
    # (dialogs.access, NOT_HERE)
    # A finished course has one again when its author adds a lesson the learner has not done: the push goes on with
    # it (dialogs.lessons.next_lesson, `lesson_to_do`).
    current = aliased(Lesson)
    added = _first_lesson_not_done()
    position = case((Enrollment.status == COMPLETED, added), else_=func.coalesce(current.position, 1))
    lesson_to_come = and_(Learner.course_id.is_not(None),
                          or_(Enrollment.status.is_(None), Enrollment.status != COMPLETED, added.is_not(None)),
                          accessible(Learner.user_id, Course, position, now),
                          or_(Conversation.shared.is_not(True), Course.access == FREE,
                              in_free_preview(Course, position)))
    # (a streak holds up to LONGEST_STREAK_GAP after its last day; a day more for the zones' dates)
    streak = and_(Learner.streak_days >= STREAK_AT_RISK,
                  Learner.last_active_on >= (now - LONGEST_STREAK_GAP - timedelta(days=2)).date())
    reviews = and_(User.last_active_at > now - STEPS[0],
                   exists(_due_cards(now).where(QuestionCard.user_id == Learner.user_id)))
    # (today where they are is within a day of now; `taking_a_lesson` tells who is part way through one)
    unfinished = and_(Enrollment.current_part > 0, User.last_active_at <= now - UNFINISHED_AFTER,
                      User.last_active_at > now - STEPS[0])
    last_lesson = (
        select(func.max(ScheduledLesson.due_at))
        .where(ScheduledLesson.user_id == Learner.user_id, ScheduledLesson.outcome == QUEUED,
               # only a lesson recent enough to matter; the local date keeps the read to the key's last few rows
               ScheduledLesson.local_date >= (now - LESSON_REMINDS - timedelta(days=1)).date(),
               ScheduledLesson.due_at > now - LESSON_REMINDS)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Learner, User, Conversation, last_lesson, lesson_to_come, Enrollment.current_part,
               Enrollment.updated_at)
        .join(User, User.id == Learner.user_id)
        .join(Conversation, Conversation.id == Learner.home_conversation_id)
        .outerjoin(Enrollment, and_(Enrollment.user_id == Learner.user_id, Enrollment.course_id == Learner.course_id))
        .outerjoin(Course, Course.id == Learner.course_id)
        .outerjoin(current, current.id == Enrollment.current_lesson_id)
        .where(*may_be_messaged(now), Conversation.channel.not_in(ONLY_WHILE_OPEN),
               or_(and_(away, lesson_to_come), streak, reviews, and_(unfinished, lesson_to_come)))
        .order_by(Learner.user_id)
    )
    found = rows.all()
    # (the day's lesson matters to the streak saver alone: read for the learners who have a streak to save)
    decided = await _lessons_decided(session, [learner.user_id for learner, *_rest in found
                                               if (learner.streak_days or 0) >= STREAK_AT_RISK], now)
    return [Candidate(learner, user, conversation, lesson_at, bool(to_come), decided.get(learner.user_id, {}),
                      taking_a_lesson(user, part, moved))
            for learner, user, conversation, lesson_at, to_come, part, moved in found]


def taking_a_lesson(user: User, part: int | None, moved: datetime | None) -> bool:
    """Whether the learner is part way through a lesson they were taking (`part`: their place in it; `moved`: when it
    last moved): moved there by their own messages (no later than their last activity, kept to the minute), not by
    a lesson the planner pushed that they have not answered (the come-back nudges' case)."""
    active = user.last_active_at
    return bool(part) and moved is not None and active is not None and moved <= active + ACTIVITY_PRECISION


def _first_lesson_not_done() -> ScalarSelect[Any]:
    """The position of the first live lesson of the learner's course they have not finished (None: none is left), as
    `dialogs.access.lesson_to_do` finds it, for many learners at once."""
    lesson = aliased(Lesson)
    done = exists().where(LessonProgress.user_id == Learner.user_id, LessonProgress.lesson_id == lesson.id,
                          LessonProgress.completed_at.is_not(None))
    return (select(func.min(lesson.position))
            .where(lesson.course_id == Learner.course_id, lesson.retired.is_(False), ~done)
            .scalar_subquery())


async def _lessons_decided(session: AsyncSession, user_ids: list[int], now: datetime,
                           ) -> dict[int, dict[date, datetime | None]]:
    """Per learner, the local dates around today whose lesson the planner decided, with when it queued the lesson
    (None: it sent none, for a reason of its own). (A local date is within a day of UTC's.)"""
    found: dict[int, dict[date, datetime | None]] = defaultdict(dict)
    for offset in range(0, len(user_ids), BATCH):
        rows = await session.execute(
            select(ScheduledLesson.user_id, ScheduledLesson.local_date, ScheduledLesson.due_at,
                   ScheduledLesson.outcome)
            .where(ScheduledLesson.user_id.in_(user_ids[offset:offset + BATCH]),
                   ScheduledLesson.local_date >= (now - timedelta(days=1)).date())
        )
        for user_id, local_date, due_at, outcome in rows.all():
            found[user_id][local_date] = due_at if outcome == QUEUED else None
    return found


async def _histories(session: AsyncSession, user_ids: list[int], now: datetime) -> dict[int, list[Past]]:
    found: dict[int, list[Past]] = defaultdict(list)
    for offset in range(0, len(user_ids), BATCH):
        rows = await session.execute(
            select(NudgeLog.user_id, NudgeLog.kind, NudgeLog.step, NudgeLog.template, NudgeLog.created_at)
            .where(NudgeLog.user_id.in_(user_ids[offset:offset + BATCH]), NudgeLog.created_at > now - LOOK_BACK)
            .order_by(NudgeLog.created_at.desc(), NudgeLog.id.desc())
        )
        for user_id, kind, step, template, created_at in rows.all():
            found[user_id].append(Past(kind, step, template, created_at))
    return found


async def _due_review_counts(session: AsyncSession, user_ids: list[int], now: datetime) -> dict[int, int]:
    counts: dict[int, int] = {}
    for offset in range(0, len(user_ids), BATCH):
        rows = await session.execute(
            _due_cards(now).add_columns(func.count())
            .where(QuestionCard.user_id.in_(user_ids[offset:offset + BATCH]))
            .group_by(QuestionCard.user_id)
        )
        counts.update({user_id: count for user_id, count in rows.all()})
    return counts


async def sweep(ctx: JobContext) -> Counter[str]:
    """Decide and queue every nudge due now; returns how many of each kind were queued (or skipped, `…:skipped`)."""
    now = ctx.now()
    async with ctx.db.sessions() as session:
        found = await candidates(session, now)
        ids = [candidate.user.id for candidate in found]
        histories = await _histories(session, ids, now)
        reviews = await _due_review_counts(session, ids, now)
        arms = {kind: await arms_for(session, kind, wording.templates(kind)) for kind in DECIDED_KINDS}
    counts: Counter[str] = Counter()
    stale = (now - timedelta(days=2)).date()  # (a local date is within a day of UTC's)
    for user_id in [user_id for user_id, day in ctx.nothing_to_review.items() if day < stale]:
        del ctx.nothing_to_review[user_id]
    for candidate in found:
        user, conversation = candidate.user, candidate.conversation
        history = histories.get(user.id, [])
        closes = window_closes(ctx, conversation)
        decided = _decide(candidate, history, now, due_reviews=reviews.get(user.id, 0), window_closes=closes)
        if decided is not None and decided.kind == REVIEW:
            # Announce only what /review will ask: the due questions still open to the learner (a refund, an
            # entitlement run out or a retired lesson closes some). Found none: not asked again that day.
            today = now.astimezone(zone_for(user.timezone)).date()
            if ctx.nothing_to_review.get(user.id) == today:
                continue
            async with ctx.db.sessions() as session:
                due = await open_due_reviews(session, user, now, conversation)
                decided = _decide(candidate, history, now, due_reviews=due, window_closes=closes)
            if decided is None:
                ctx.nothing_to_review[user.id] = today
        if decided is None:
            continue
        holding = held_out(decided, ctx.nudge_holdout)
        template = HELD_OUT if holding else pick_template(arms[decided.kind], decided, history, ctx.rng)
        outcome = await queue_nudge(ctx, decided, template, user, conversation, now)
        if outcome is not None:
            counts[decided.kind if outcome == QUEUED else f"{decided.kind}:{OUTCOME_COUNTED[outcome]}"] += 1
    if sum(n for kind, n in counts.items() if ":" not in kind):
        ctx.notify()
    if counts:
        log.info("nudges decided", extra={"nudges": dict(counts)})
    return counts


def _decide(candidate: Candidate, history: list[Past], now: datetime, *, due_reviews: int,
            window_closes: datetime | None) -> Nudge | None:
    return decide(candidate.learner, candidate.user, history, now, due_reviews=due_reviews,
                  last_lesson=candidate.last_lesson, lesson_to_come=candidate.lesson_to_come,
                  window_closes=window_closes, lessons_decided=candidate.lessons_decided,
                  mid_lesson=candidate.mid_lesson)


OUTCOME_COUNTED = {SKIPPED_WINDOW: "skipped", HELD_OUT: "held out"}


async def queue_nudge(ctx: JobContext, nudge: Nudge, template: str, user: User, conversation: Conversation,
                      now: datetime) -> str | None:
    """Record the nudge and queue it (or record why not: skipped, or held out when `template` is HELD_OUT).
    None: it was decided before."""
    skipped = outside_window(ctx, conversation, now)
    outcome = SKIPPED_WINDOW if skipped else HELD_OUT if template == HELD_OUT else QUEUED
    async with ctx.db.transaction() as session:
        if not await still_as_decided(session, user, conversation, now):
            return None
        claimed = await session.execute(insert_ignoring_conflicts(session, NudgeLog, {
            "user_id": user.id, "kind": nudge.kind, "step": nudge.step, "template": template,
            "idempotency_key": nudge.key, "outcome": outcome, "created_at": now,
            # a skipped nudge was never seen, nor would it have been: nothing to learn from it
            "settled_at": now if skipped else None,
        }).returning(NudgeLog.id))
        if claimed.first() is None:
            return None
        # A nudge decided now supersedes the learner's earlier ones still unsent: none goes out late, in a burst.
        await withdraw_unsent_nudges(session, conversation.id, f"{NUDGE_KEY}{user.id}:",
                                     reason=f"not sent: superseded by {nudge.kind} nudge {nudge.step}")
        if skipped:
            log.info("nudge skipped: %s may send unprompted messages only for a while after the learner writes",
                     conversation.channel, extra={"user_id": user.id, "kind": nudge.kind})
        if outcome != QUEUED:
            return outcome
        [reply] = named_in_a_group([wording.nudge(nudge.kind, template, language=user.locale, facts=nudge.facts)],
                                   user, conversation)
        await enqueue(session, [OutboxEntry(
            conversation_id=conversation.id, channel=conversation.channel, chat_id=conversation.chat_id,
            payload=reply.to_payload(), idempotency_key=nudge.key,
            member=await member_id(session, user.id, conversation) or "",  # its buttons are the learner's
        )])
    return QUEUED


async def still_as_decided(session: AsyncSession, user: User, conversation: Conversation, now: datetime) -> bool:
    """Whether the learner is as their nudge was decided from: still one the bot may message on its own, in the same
    home chat, and not active since (the sweep reads every candidate first and queues one by one after: one who
    paused, stopped or came back meanwhile is not sent what was decided before).

    The learner's row stays locked (shared) until the nudge commits, so a /pause or /stop cannot commit between this
    check and the nudge's outbox row: it waits, then withdraws the nudge with what else it withdraws; one that came
    first is read here. Locked in the order the turns and the planner take them: the conversation's row (as `enqueue`
    takes it), then the learner's."""
    await session.execute(select(Conversation.id).where(Conversation.id == conversation.id)
                          .with_for_update(key_share=True))
    found = await session.scalar(
        select(Learner.user_id)
        .join(User, User.id == Learner.user_id)
        .join(Conversation, Conversation.id == Learner.home_conversation_id)
        .where(Learner.user_id == user.id, Conversation.id == conversation.id, *may_be_messaged(now),
               User.last_active_at.is_not_distinct_from(user.last_active_at))
        .with_for_update(read=True, of=Learner)
    )
    return found is not None


# Settling: did the nudge bring the learner back? -----------------------------------------------------------------


async def settle(ctx: JobContext) -> Counter[str]:
    """Settle every nudge whose outcome is known: came back, did not (the window passed), or never delivered.

    Each is settled once (guarded by `settled_at`), and its template's record is updated in the same transaction; a
    held-out nudge is settled from when it was decided, into its kind's HELD_OUT record.
    """
    now = ctx.now()
    counts: Counter[str] = Counter()
    after_id = 0
    while True:
        async with ctx.db.sessions() as session:
            rows = (await session.execute(
                select(NudgeLog.id, NudgeLog.user_id, NudgeLog.kind, NudgeLog.template, NudgeLog.created_at,
                       NudgeLog.outcome, NudgeLog.idempotency_key, OutboxMessage.status, OutboxMessage.sent_at,
                       OutboxMessage.conversation_id, User.last_active_at)
                .join(User, User.id == NudgeLog.user_id)
                .outerjoin(OutboxMessage, OutboxMessage.idempotency_key == NudgeLog.idempotency_key)
                .where(NudgeLog.settled_at.is_(None), NudgeLog.outcome.in_((QUEUED, HELD_OUT)),
                       NudgeLog.id > after_id)
                .order_by(NudgeLog.id)
                .limit(BATCH)
            )).all()
            if not rows:
                break
            after_id = rows[-1].id
            verdicts = []
            for row in rows:
                verdict = await _verdict(session, row, now)
                if verdict is not None:
                    verdicts.append((row, verdict))
        for row, (delivered, came_back) in verdicts:
            async with ctx.db.transaction() as session:
                settled = rows_affected(await session.execute(
                    update(NudgeLog)
                    .where(NudgeLog.id == row.id, NudgeLog.settled_at.is_(None))
                    .values(settled_at=now, sent_at=row.sent_at, came_back=came_back if delivered else None)
                ))
                if settled and delivered:
                    await record_outcome(session, row.kind, row.template, came_back=came_back, now=now)
                elif settled and row.conversation_id is not None:  # settled unsent: it does not go out days late
                    await withdraw_unsent_nudges(session, row.conversation_id, row.idempotency_key,
                                                 reason="not sent: still unsent when its reminder was settled")
            if settled:
                counts[("held out: " if row.outcome == HELD_OUT else "")
                       + ("came back" if came_back else "no answer" if delivered else "undelivered")] += 1
    return counts


async def _verdict(session: AsyncSession, row: Any, now: datetime) -> tuple[bool, bool] | None:
    """(delivered, came back), or None while it is too early to say. A held-out nudge counts as delivered when it
    was decided: the question is the same, whether the learner came back to learn within the window."""
    if row.outcome == HELD_OUT:
        came_back = await _came_back(session, row, row.created_at, now)
        return None if came_back is None else (True, came_back)
    if row.status == "sent" and row.sent_at is not None:
        came_back = await _came_back(session, row, row.sent_at, now)
        return None if came_back is None else (True, came_back)
    if row.status in ("dead", "suppressed", "cancelled"):  # never to go (cancelled: the learner paused or stopped)
        return False, False
    if row.status in (None, "pending", "waiting") and now - row.created_at >= UNDELIVERED_AFTER:
        return False, False  # its outbox row is gone (the learner's data was deleted), or it is still not sent
    return None


async def _came_back(session: AsyncSession, row: Any, since: datetime, now: datetime) -> bool | None:
    """Whether the learner came back to learn within the reward window from `since`: a lesson part they asked for, a
    quiz or review answer, a lesson finished (`storage.learners.learned_between`). Writing only to pause, stop or
    opt out is not coming back. None while the window is still open and they have not."""
    window_end = since + NUDGE_REWARD_WINDOW
    active = row.last_active_at
    # Learning is done in messages, and each sets `last_active_at` (to within a minute): none since, none to look for.
    if (active is not None and active >= since - timedelta(minutes=1)
            and await learned_between(session, row.user_id, since, window_end)):
        return True
    return False if now >= window_end else None
