"""Lessons: one bite-size part per message, with "next", "more" and "later"; then the quiz; then the next lesson.

The learner's place lives in the database, not in the conversation: `Enrollment.current_lesson_id` and
`current_part` (the index of the next part to send), saved as each part goes out. So the same learner continues on
any channel where they left off, and a pressed "Next" button works however late it arrives.

`deliver_next_lesson(session, user)` is what the scheduler calls at the learner's hour: it does what /next does,
in the learner's home conversation, and sends nothing to a learner who is paused, stopped, not set up, or not
entitled to the next lesson.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import GROUP_CHAT, Reply
from dialogs import access, flow, onboarding
from dialogs.i18n import Translator
from dialogs.learner import (
    POINTS_LESSON,
    current_course,
    enroll,
    is_set_up,
    learner_of,
    local_now,
    mark_home,
    named_in_a_group,
    tr,
)
from dialogs.prices import buy_choices
from dialogs.turn import Exchange, Turn
from storage.courses import (
    ACTIVE,
    COMPLETED,
    Course,
    Enrollment,
    Lesson,
    LessonProgress,
    answered_questions,
    completed_lessons,
    course_by_id,
    course_lessons,
    lesson_cards,
    lesson_questions,
    progress_of,
)
from storage.db import SessionOnDemand
from storage.learners import Learner, current_streak, is_paused, quiet_at, record_activity, zone_for
from storage.models import Conversation, User, utcnow
from storage.outbox import lesson_going_since
from storage.prepared import add_row
from storage.queries import member_id
from storage.scheduling import ScheduledLesson

NEXT, MORE, LATER = "lesson:next", "lesson:more", "lesson:later"


async def next_command(turn: Turn, _args: str) -> None:
    """/next (and "next", "more", "continue"): the next part, the quiz, or the next lesson."""
    await next_lesson(turn)


async def later_command(turn: Turn, _args: str) -> None:
    """/later (and "later"): stop here for now; in the middle of setting up, the set-up is put off (it waits where it
    is)."""
    if flow.is_active(turn, "onboarding"):
        _ = tr(turn)
        turn.say(_("OK. Send /start whenever you want to finish setting up: I'll pick up where we left off."))
        return
    await later(turn)


async def on_button(turn: Turn, value: str) -> None:
    if value == LATER:
        await later(turn)
    else:
        await next_lesson(turn)


# The learner's place -------------------------------------------------------------------------------------------------


async def _progress(x: Exchange, lesson: Lesson) -> LessonProgress:
    row = await progress_of(x.transaction, x.user.id, lesson.id)
    if row is None:
        row = LessonProgress(user_id=x.user.id, lesson_id=lesson.id, parts_seen=0, started_at=x.now)
        await add_row(x.transaction, row)
    return row


async def lesson_at(x: Exchange, enrollment: Enrollment, lessons: list[Lesson]) -> Lesson | None:
    """The lesson the learner is in, of `lessons` (their course's live ones): their enrollment's; where the author
    retired it (the live lessons numbered again without it), the first live one they have not done; None when every
    one is done."""
    for lesson in lessons:
        if lesson.id == enrollment.current_lesson_id:
            return lesson
    done = await completed_lessons(x.transaction, x.user.id)
    return next((lesson for lesson in lessons if lesson.id not in done), None)


async def upcoming_lesson(x: Exchange, course: Course, enrollment: Enrollment) -> Lesson | None:
    """The lesson /next brings in `course` (a lesson the author added after the learner finished it, too); None
    when the course is done."""
    if enrollment.status == COMPLETED:
        return await access.lesson_to_do(x, course)
    return await lesson_at(x, enrollment, await course_lessons(x.transaction, course.id))


async def _current_lesson(x: Exchange, enrollment: Enrollment, lessons: list[Lesson]) -> Lesson | None:
    """The lesson the learner is in (`lesson_at`), their place moved to it from one the author retired."""
    lesson = await lesson_at(x, enrollment, lessons)
    if lesson is None:
        enrollment.current_lesson_id = None
    elif lesson.id != enrollment.current_lesson_id:
        enrollment.current_lesson_id, enrollment.current_part = lesson.id, 0
    return lesson


async def unanswered_questions(x: Exchange, lesson: Lesson) -> list[int]:
    """The lesson's live questions this learner has not answered yet, in order."""
    answered = await answered_questions(x.transaction, x.user.id)
    return [q.id for q in await lesson_questions(x.transaction, lesson.id) if q.id not in answered]


async def open_course(turn: Turn, course: Course) -> None:
    """The course was opened to the learner (bought, or an access code redeemed): once they are set up, it becomes
    their current course and its next lesson comes at once."""
    learner = await learner_of(turn)
    if is_set_up(learner):
        await enroll(turn, learner, course)
        await next_lesson(turn)


# /next ---------------------------------------------------------------------------------------------------------------


async def next_lesson(x: Exchange, *, pushed: bool = False) -> None:
    """What comes next for this learner: a part of the lesson, its quiz, or the next lesson.

    `pushed`: the bot starts this on its own (the scheduler), so it stays silent where a learner who asked would
    hear why nothing comes (not set up, no course, a locked lesson).
    """
    _ = tr(x)
    learner = await learner_of(x)
    if not is_set_up(learner):
        if not pushed:
            await onboarding.require_set_up(x)
        return
    if not pushed and await _lesson_on_its_way(x):
        return
    course = await current_course(x, learner)
    if course is None:
        if not pushed:
            x.say(_("You have no course yet. Pick one:"))
            await flow.start(x, "settings", {"after": "saved"}, step="course")
        return
    enrollment = await enroll(x, learner, course)
    if enrollment.status == COMPLETED and (added := await access.lesson_to_do(x, course)) is not None:
        # a lesson the author added after the learner finished: the course goes on with it (the certificate stays)
        enrollment.status, enrollment.current_lesson_id, enrollment.current_part = ACTIVE, added.id, 0
    if enrollment.status == COMPLETED:
        if not pushed:
            x.say(_("You have finished {title}. Send /settings to pick another course, or /review to keep it fresh.",
                    title=course.title))
        return
    lessons = await course_lessons(x.transaction, course.id)
    lesson = await _current_lesson(x, enrollment, lessons)
    if lesson is None:
        await complete_course(x, course, enrollment)
        return
    number = lessons.index(lesson) + 1
    closed = await access.lesson_closed(x, lesson)
    if closed is not None:
        if pushed:
            return
        if closed is access.Closed.NOT_HERE:
            x.say(access.not_here(_))
        else:
            x.say(locked(_, course, number), choices=buy_choices(_, course, later=LATER))
        return
    if not pushed:
        mark_home(x, learner)
    flow.leave(x, "quiz")
    if enrollment.current_part < len(lesson.parts):
        await _send_part(x, learner, enrollment, lesson, number, len(lessons), pushed=pushed)
        return
    pending = await unanswered_questions(x, lesson)
    if pending:
        if not pushed:
            enrollment.updated_at = x.now  # a step of learning taken (a reminder's reward reads it), as a part is
        total = len(await lesson_questions(x.transaction, lesson.id))
        if enrollment.current_part == len(lesson.parts) and total == len(pending):
            x.say(_.plural("Quiz time: {n} question about “{title}”.", "Quiz time: {n} questions about “{title}”.",
                           total, title=lesson.title))
        await flow.start(x, "quiz", {"lesson_id": lesson.id, "queue": pending, "total": total})
        return
    await finish_lesson(x, lesson)


async def _lesson_on_its_way(x: Exchange) -> bool:
    """Whether the lesson pushed at the learner's hour is going to them now, not sent yet: it is what comes next, and a
    /next written before they saw it does not move past it. One the dispatcher has not got to yet (behind others, at
    the platform's pace) they are told is on its way; one their message has just let go (set aside until they wrote:
    WhatsApp's window) goes ahead of the reply, and is that reply."""
    if not isinstance(x, Turn) or x.conversation is None:
        return False
    since = await lesson_going_since(x.transaction, x.conversation.id, x.user.id, by=x.now)
    if since is None:
        return False
    if since < x.now:  # (in line before this message came: not let go by it)
        _ = tr(x)
        x.say(_("Your lesson is on its way."))
    return True


def lesson_heading(_: Translator, title: str, minutes: int | None, number: int, count: int) -> str:
    """A lesson's heading line, as a learner sees it above its first part and a team above its post in the channel:
    "📘 Lesson 2 of 5: Title · about 4 min"."""
    return (_("📘 Lesson {number} of {count}: {title}", number=number, count=count, title=title)
            + (_(" · about {n} min", n=minutes) if minutes else ""))


def part_message(_: Translator, title: str, minutes: int | None, parts: Sequence[str], index: int, number: int,
                 count: int, *, quiz_to_take: bool) -> tuple[str, list[tuple[str, str]]]:
    """Part `index` of a lesson, the `number`th of `count` in its course, as a learner is sent it: its text (the
    lesson's heading before the first part, "(2/3)" after each of several) and its choices (go on, or later). Also
    what `lessonbot course validate` measures against each platform's message (bot/cli/course_notes.py)."""
    text = parts[index]
    if index == 0:
        text = lesson_heading(_, title, minutes, number, count) + "\n\n" + text
    if len(parts) > 1:
        text += f"\n\n({index + 1}/{len(parts)})"
    if index + 1 < len(parts):
        go_on = _("Next ▸")
    else:
        go_on = _("Take the quiz ▸") if quiz_to_take else _("Finish the lesson ▸")
    return text, [(go_on, NEXT), (_("Later"), LATER)]


async def _send_part(x: Exchange, learner: Learner, enrollment: Enrollment, lesson: Lesson, number: int,
                     count: int, *, pushed: bool) -> None:
    index = enrollment.current_part
    last = index + 1 == len(lesson.parts)
    quiz_to_take = last and bool(await unanswered_questions(x, lesson))
    text, choices = part_message(tr(x), lesson.title, lesson.minutes, lesson.parts, index, number, count,
                                 quiz_to_take=quiz_to_take)
    x.say(text, choices=choices)
    progress = await _progress(x, lesson)
    progress.parts_seen = max(progress.parts_seen or 0, index + 1)
    enrollment.current_part = index + 1
    enrollment.updated_at = x.now
    if not pushed:
        record_activity(learner, x.user, x.now)


def locked(_: Translator, course: Course, number: int) -> str:
    return _.plural("Lesson {number} is part of the full course “{title}”: only the first lesson is free to try. "
                    "Your place is saved for when you have access.",
                    "Lesson {number} is part of the full course “{title}”: the first {n} lessons are free to try. "
                    "Your place is saved for when you have access.",
                    course.free_preview_lessons, number=number, title=course.title)


async def finish_lesson(x: Exchange, lesson: Lesson) -> None:
    """The lesson's parts are read and its questions answered: score it, award points, move to the next lesson.

    Only a lesson open to the learner (dialogs/access.py) and delivered to them in full is finished."""
    _ = tr(x)
    learner = await learner_of(x)
    course = await course_by_id(x.transaction, lesson.course_id)
    enrollment = await access.enrollment_in(x, lesson.course_id)
    if (course is None or enrollment is None or await access.lesson_closed(x, lesson) is not None
            or not await access.delivered(x, lesson)):
        return
    progress = await _progress(x, lesson)
    if progress.completed_at is not None and enrollment.current_lesson_id != lesson.id:
        # done before, and the learner has moved on since (a quiz left open in another chat of theirs, its last
        # answers counted there already): their place stays where they are now
        x.say(_("You have done this lesson already: well done."))
        return
    questions = await lesson_questions(x.transaction, lesson.id)
    lines = [_("🎉 Lesson done: {title}.", title=lesson.title)]
    if questions and progress.completed_at is None:
        cards = await lesson_cards(x.transaction, x.user.id, lesson.id)
        # right at the first try: a card answered wrong even once (the quiz, then a review before the lesson's end)
        # does not count, however often it was right since
        for card in cards:
            card.scored_right = bool(card.attempts) and card.correct == card.attempts
        right = sum(1 for card in cards if card.scored_right)
        progress.score = right / len(questions)
        lines.append(_("Quiz: {right} of {total} right.", right=right, total=len(questions)))
    if progress.completed_at is None:
        progress.completed_at = x.now
        learner.points += POINTS_LESSON
        lines.append(_("+{points} points (total {total}).", points=POINTS_LESSON, total=learner.points))
    record_activity(learner, x.user, x.now)
    streak = current_streak(learner, x.user, x.now)
    if streak > 1:
        lines.append(_.plural("🔥 {n}-day streak!", "🔥 {n}-day streak!", streak))
    lessons = await course_lessons(x.transaction, course.id)
    # the next lesson not done (a lesson added before this one since, or one done out of turn, comes up in order)
    done = set(await completed_lessons(x.transaction, x.user.id)) | {lesson.id}
    following = next((other for other in lessons if other.id not in done), None)
    enrollment.current_lesson_id = following.id if following else None
    enrollment.current_part = 0
    enrollment.updated_at = x.now
    if following is None:
        x.say("\n".join(lines))
        await complete_course(x, course, enrollment)
        return
    # (the mark itself, not teams.group_chat: dialogs.teams imports this module)
    if isinstance(x, Turn) and x.message.meta.get(GROUP_CHAT):
        # A member's private place in a team's channel: the team moves on together, at the team's hour.
        lines.append(_("The team's next lesson will be posted in the channel."))
        x.say("\n".join(lines))
        return
    lessons_today = await _lessons_done_today(x)
    if (lessons_today < learner.daily_goal and course.id == learner.course_id and following.parts
            and await access.lesson_closed(x, following) is None):
        # The daily goal is how many lessons a day brings: short of it, the next one of the course they are taking
        # follows at once, its first part ("Later" on any part stops there, the place saved). (Not /next's whole
        # path: this may run inside a quiz's last answer, where starting another flow would be left with the quiz.)
        lines.append(_("That's {done} of your {goal} lessons for today; here is the next one.",
                       done=lessons_today, goal=learner.daily_goal))
        x.say("\n".join(lines))
        await _send_part(x, learner, enrollment, following, lessons.index(following) + 1, len(lessons),
                         pushed=not isinstance(x, Turn))
        return
    if lessons_today >= learner.daily_goal:
        lines.append(_("That's your goal for today. More now, or the next one at your usual time?"))
    x.say("\n".join(lines), choices=[(_("More now"), MORE), (_("Later"), LATER)])


async def _lessons_done_today(x: Exchange) -> int:
    """How many lessons the learner finished on their date today."""
    today = local_now(x).date()
    zone = zone_for(x.user.timezone)
    done = await completed_lessons(x.transaction, x.user.id, since=x.now - timedelta(days=2))
    return sum(1 for at in done.values() if at.astimezone(zone).date() == today)


async def complete_course(x: Exchange, course: Course, enrollment: Enrollment) -> None:
    """The end of the course, once every live lesson of it is done: the learner's place goes to one that is not."""
    from dialogs import certificate  # the certificate dialog needs lessons only through this call

    _ = tr(x)
    missing = await access.lesson_to_do(x, course)
    if missing is not None:
        enrollment.current_lesson_id, enrollment.current_part = missing.id, 0
        x.say(_("Before the course is done: the lesson “{title}” is still to do.", title=missing.title),
              choices=[(_("Next ▸"), NEXT)])
        return
    if enrollment.status != COMPLETED:
        enrollment.status = COMPLETED
        enrollment.completed_at = x.now
    x.say(_("🏆 You finished the course “{title}”! Well done.", title=course.title))
    await certificate.send_certificate(x, course)


# "later" -------------------------------------------------------------------------------------------------------------


LEARNING_FLOWS = ("quiz", "review")  # what "later" stops: a lesson's quiz, a review (or a retake)


async def later(x: Exchange) -> None:
    """"Later": the quiz or review in progress stops (what is still to answer comes back with /next or /review),
    and the learner hears when the next lesson comes."""
    _ = tr(x)
    for name in LEARNING_FLOWS:
        flow.leave(x, name)
    learner = await learner_of(x)
    when = await next_lesson_moment(x, learner)
    if when is None or is_paused(learner, x.now):
        x.say(_("OK, your place is saved. Send /next whenever you're ready."))
        return
    local = when.astimezone(zone_for(x.user.timezone))
    x.say(_("OK, your place is saved. I'll be back on {weekday} at {time}; send /next any time before that.",
            weekday=onboarding.weekday_name(_, local.isoweekday()), time=f"{local:%H:%M}"))


async def next_lesson_moment(x: Exchange, learner: Learner) -> datetime | None:
    """When the learner's next lesson comes, as the planner will push it: `next_lesson_time`, past the local dates
    whose lesson was decided already (the planner decides a date once, so a learner who moved their hour or zone
    after the day's lesson has the next one on a later date). None when the push would bring them nothing
    (`lesson_to_push`): no lesson is promised that will not come."""
    if not await lesson_to_push(x, learner):
        return None
    today = x.now.astimezone(zone_for(x.user.timezone)).date()
    decided = set(await x.session.scalars(select(ScheduledLesson.local_date).where(
        ScheduledLesson.user_id == x.user.id, ScheduledLesson.local_date >= today - timedelta(days=1))))
    if await _lessons_done_today(x) >= learner.daily_goal:  # (the day's lessons taken already: none pushed today)
        decided.add(today)
    return next_lesson_time(learner, x.user, x.now, decided=decided)


async def lesson_to_push(x: Exchange, learner: Learner) -> bool:
    """Whether the lesson pushed at the learner's hour would bring them one, as `next_lesson` pushed decides: a
    course chosen and not finished (or a lesson added to it since), the lesson they are at open to them in their
    home chat, where it is pushed. Not so (a course finished, a paid lesson locked), the planner sends nothing."""
    course = await current_course(x, learner)
    if course is None:
        return False
    enrollment = await access.enrollment_in(x, course.id)
    if enrollment is None:
        return True  # enrolled at its first lesson when the push comes
    lesson = None
    if enrollment.status != COMPLETED:
        lesson = next((found for found in await course_lessons(x.transaction, course.id)
                       if found.id == enrollment.current_lesson_id), None)
    lesson = lesson or await access.lesson_to_do(x, course)
    if lesson is None:
        return False
    home = await home_conversation(x.session, x.user)
    there = x if home is None else Exchange(transaction=x.transaction, conversation=home, user=x.user, state={},
                                            now=x.now)
    # (a lesson that is not their place yet becomes it as the push comes: not out of order then)
    return await access.lesson_closed(there, lesson) in (None, access.Closed.OUT_OF_ORDER)


# How far ahead the next lesson may be: a week, and a day more for a learner who moved west over the date line after
# the day's lesson (it is yesterday again where they are, and tomorrow's date, decided, is not pushed twice).
DAYS_AHEAD = 9


def next_lesson_time(learner: Learner, user: User, now: datetime, *,
                     decided: Collection[date] = ()) -> datetime | None:
    """The next moment (UTC) the learner's lesson is due by their time, days and zone; None without a lesson time,
    or with one inside their quiet hours (the planner holds every such lesson back: none is promised).

    Wall-clock times that a daylight-saving change skips (02:30 on the spring-forward night) come at the same
    offset as before the change, so they fall an hour later on the clock; a repeated hour counts once (the first).
    """
    if learner.lesson_time is None or not learner.lesson_days or quiet_at(learner, learner.lesson_time):
        return None
    zone = zone_for(user.timezone)
    local_today = now.astimezone(zone).date()
    for ahead in range(DAYS_AHEAD):
        day = local_today + timedelta(days=ahead)
        if str(day.isoweekday()) not in learner.lesson_days or day in decided:
            continue
        at = datetime.combine(day, learner.lesson_time, tzinfo=zone)
        if at > now:
            return at.astimezone(now.tzinfo or zone)
    return None


# For the scheduler ---------------------------------------------------------------------------------------------------


async def home_conversation(session: AsyncSession, user: User) -> Conversation | None:
    learner = await session.get(Learner, user.id)
    if learner is None or learner.home_conversation_id is None:
        return None
    return await session.get(Conversation, learner.home_conversation_id)


async def deliver_next_lesson(session: AsyncSession, user: User, *, now: datetime | None = None,
                              data_dir: Path | None = None, site_url: str | None = None) -> list[Reply]:
    """Today's lesson for a learner, as /next would give it, for the learner's home conversation.

    Returns the replies to send to `home_conversation(session, user)` (the caller writes them to its outbox, as
    scheduler.planner does, after its own checks: quiet hours, the lesson time). Returns nothing for a learner who is
    not set up, is paused or stopped, has no home conversation, opted out on their platform, may not take the next
    lesson, or has finished as many lessons on their date today as their daily goal (taken before their hour: "That's
    your goal for today"). Updates the conversation's state (a quiz question asked now is answered there) and the
    learner's place, in `session`.
    """
    now = now or utcnow()
    learner = await session.get(Learner, user.id)
    if learner is None or not is_set_up(learner) or is_paused(learner, now):
        return []
    conversation = await home_conversation(session, user)
    if conversation is None or conversation.opted_out_at is not None:
        return []
    exchange = Exchange(transaction=SessionOnDemand.of(session), conversation=conversation, user=user,
                        state=dict(conversation.state or {}), data_dir=data_dir, site_url=site_url, now=now,
                        member=await member_id(session, user.id, conversation))  # (a quiz it starts is theirs)
    if await _lessons_done_today(exchange) >= learner.daily_goal:
        return []
    await next_lesson(exchange, pushed=True)
    conversation.state = exchange.state
    return named_in_a_group(exchange.replies, user, conversation)


__all__ = ["deliver_next_lesson", "home_conversation", "next_lesson", "next_lesson_time"]
