"""/progress: lessons done, quiz accuracy, streak (consecutive days with activity, in the learner's zone), points."""

from __future__ import annotations

from sqlalchemy import func, select

from dialogs import onboarding
from dialogs.learner import current_course, learner_of, tr
from dialogs.lessons import upcoming_lesson
from dialogs.review import due_reviews
from dialogs.turn import Turn
from storage.courses import LessonProgress, Question, QuestionCard, course_lessons, enrollment_of
from storage.learners import Certificate, current_streak


async def show(turn: Turn, _args: str) -> None:
    if not await onboarding.require_set_up(turn):
        return
    _ = tr(turn)
    learner = await learner_of(turn)
    course = await current_course(turn, learner)
    lines = []
    finished = False
    if course is not None:
        lessons = await course_lessons(turn.session, course.id)
        done = await turn.session.scalar(
            select(func.count()).select_from(LessonProgress).where(
                LessonProgress.user_id == turn.user.id, LessonProgress.completed_at.is_not(None),
                LessonProgress.lesson_id.in_([lesson.id for lesson in lessons]),
            )
        ) or 0
        lines.append(_("Your progress in “{title}”:", title=course.title))
        lines.append(_("📘 Lessons: {done} of {total} done", done=done, total=len(lessons)))
        enrollment = await enrollment_of(turn.transaction, turn.user.id, course.id)
        # nothing left for /next (a lesson the author added after the learner finished is left)
        finished = enrollment is not None and await upcoming_lesson(turn, course, enrollment) is None
    else:
        lines.append(_("Your progress:"))
    answered = (
        select(func.coalesce(func.sum(QuestionCard.attempts), 0), func.coalesce(func.sum(QuestionCard.correct), 0))
        .where(QuestionCard.user_id == turn.user.id)
    )
    if course is not None:  # the course the heading names: its live questions, not another course's
        answered = answered.join(Question, Question.id == QuestionCard.question_id).where(
            Question.course_id == course.id, Question.retired.is_(False))
    attempts, right = (await turn.session.execute(answered)).one()
    if attempts:
        lines.append(_.plural("✅ Quiz accuracy: {percent}% ({right} of {n} answer right)",
                              "✅ Quiz accuracy: {percent}% ({right} of {n} answers right)",
                              attempts, percent=round(100 * right / attempts), right=right))
    else:
        lines.append(_("✅ Quiz accuracy: no answers yet"))
    streak = current_streak(learner, turn.user, turn.now)
    lines.append(_.plural("🔥 Streak: {n} day", "🔥 Streak: {n} days", streak)
                 + " " + _("(best: {best})", best=max(learner.best_streak or 0, streak)))
    lines.append(_("⭐ Points: {points}", points=learner.points))
    due = await due_reviews(turn)
    choices = [] if finished else [(_("Next lesson"), "lesson:next")]
    if due:
        lines.append(_.plural("🔁 {n} question to review now", "🔁 {n} questions to review now", due))
        choices.append((_("Review now"), "/review"))
    certificates = await turn.session.scalar(
        select(func.count()).select_from(Certificate).where(Certificate.user_id == turn.user.id)
    )
    if certificates:
        lines.append(_.plural("🏆 {n} certificate (send /certificate to get it again)",
                              "🏆 {n} certificates (send /certificate to get them again)", certificates))
    turn.say("\n".join(lines), choices=choices)
