"""/home: the learner's page at a glance — their course, next lesson, streak, points and reviews due, with buttons —
and, for a team admin, each of their teams' numbers and settings. A platform with a home surface shows it there (the
Slack App Home tab, when it is opened); anywhere else it is an ordinary reply.
"""

from __future__ import annotations

from sqlalchemy import exists, or_, select

from dialogs import teams
from dialogs.i18n import N_, Translator
from dialogs.learner import current_course, learner_of, tr
from dialogs.lessons import NEXT, upcoming_lesson
from dialogs.review import due_reviews
from dialogs.turn import Command, Turn
from storage.courses import COMPLETED, Course, Lesson, course_lessons, enrollment_of
from storage.learners import current_streak
from storage.teams import (
    CHANNEL_MODE,
    MEMBER_ACTIVE,
    TEAM_ACTIVE,
    TEAM_GONE,
    Team,
    TeamAdmin,
    TeamMember,
    granted_to,
    standings,
)


async def home(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    learner = await learner_of(turn)
    course = await current_course(turn, learner)
    lines = [_("🏠 **Your learning**")]
    choices: list[tuple[str, str]] = []
    if course is None:
        lines.append(_("No course yet: send /start to pick one."))
    else:
        lines.append(_("Course: {title}", title=course.title))
        line, more = await _next_line(turn, _, course)
        lines.append(line)
        if more:  # (none on a finished course, as on /progress)
            choices.append((_("Next lesson"), NEXT))
    streak = current_streak(learner, turn.user, turn.now)
    due = await due_reviews(turn)
    lines.append(_("🔥 {streak} · ⭐ {points} points · 🔁 {due} to review",
                   streak=_.plural("{n} day", "{n} days", streak), points=learner.points, due=due))
    if due:
        choices.append((_("Review now"), "/review"))
    choices.append((_("My progress"), "/progress"))
    for team in await _teams_run_by(turn):
        lines += ["", *await _team_lines(turn, _, team)]
    turn.say("\n".join(lines), choices=choices)


async def _next_line(turn: Turn, _: Translator, course: Course) -> tuple[str, bool]:
    """The lesson /next brings (`lessons.upcoming_lesson`), or that the course is done; and whether there is one."""
    enrollment = await enrollment_of(turn.session, turn.user.id, course.id)
    lessons = await course_lessons(turn.session, course.id)
    if enrollment is None:
        current = lessons[0] if lessons else None
    else:
        current = await upcoming_lesson(turn, course, enrollment)
    if current is None:
        done = enrollment is not None and (enrollment.status == COMPLETED or bool(lessons))
        return (_("🏆 Finished. Well done!") if done else _("No lessons yet.")), False
    number = [lesson.id for lesson in lessons].index(current.id) + 1
    return _("📘 Next: lesson {number} of {count}, “{title}”", number=number, count=len(lessons),
             title=current.title), True


async def _teams_run_by(turn: Turn) -> list[Team]:
    """The teams this person set up, or may administer as someone a team admin added."""
    sender = turn.message.sender_id
    added = exists().where(TeamAdmin.channel == Team.channel, TeamAdmin.workspace == Team.workspace,
                           granted_to(sender))
    return list(await turn.session.scalars(
        select(Team).where(Team.channel == turn.message.channel, Team.status != TEAM_GONE,
                           or_(Team.created_by == sender, added)).order_by(Team.id)
    ))


async def _team_lines(turn: Turn, _: Translator, team: Team) -> list[str]:
    course = await turn.session.get(Course, team.course_id)
    members = len(list(await turn.session.scalars(
        select(TeamMember.id).where(TeamMember.team_id == team.id, TeamMember.status == MEMBER_ACTIVE)
    )))
    following = await turn.session.get(Lesson, team.next_lesson_id) if team.next_lesson_id else None
    lines = [_.plural("👥 **Team course you run**: {title}, {n} member",
                      "👥 **Team course you run**: {title}, {n} members", members,
                      title=course.title if course else "?"),
             teams.describe(_, team, course)]
    if team.status != TEAM_ACTIVE:
        lines.append(_("Lessons are turned off for now."))
    if team.mode == CHANNEL_MODE:  # (in the direct mode nothing is posted: each member goes at their own pace)
        lines.append(_("Next lesson posted: “{title}”", title=following.title) if following
                     else _("Every lesson has been posted."))
    if not team.leaderboard_on:
        lines.append(_("The leaderboard is off."))
    board = await standings(turn.session, team)
    if team.leaderboard_on and any(standing.points for standing in board):
        lines.append(_("Top: {names}", names=", ".join(f"{s.name} ({s.points})" for s in board[:3])))
    return lines


COMMANDS = (Command("home", home, N_("your course, next lesson, streak, points and reviews at a glance"),
                    listed=False),)
