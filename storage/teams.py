"""Teams: a group chat that takes a course together (a Slack channel), its members, the lessons posted to it, and who
may administer the teams of a workspace.

A `Team` is keyed by the chat it learns in (`channel`, `chat_id`, as conversations are) and scoped by its
`workspace` (the platform's own id of the organisation, a Slack T…): every query here takes the team or the
workspace, so two workspaces never see each other's rows. Its lesson moment on a local date is its `lesson_time` on
that date in its `timezone`, on its `lesson_days` (ISO weekday digits), as a learner's is (scheduler/teams.py).

A `TeamMember` is one person of the chat (`member`: their sender id, "T01/U02"); `status` says whether they take
the course (`active`), left the chat (`left`: nothing is sent to them until they join again), opted out themselves
(`opted_out`; an erased member's row stays so, bare: `forget_member`) or are left out by rule (`excluded`: guests and
bots). `hidden`: not shown on the leaderboard.
`started_at`: they pressed Start on the direct mode's invitation, so their own lessons follow the team's (its hour,
days and course; `started_learners`).
A `TeamLessonPost` records that a team's lesson for a local date was posted, once (its unique key makes a repeated
run a no-op), and which lesson it was: what a member's private "quiz me" is checked against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Select,
    String,
    Time,
    UniqueConstraint,
    and_,
    delete,
    false,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column

from storage.courses import Course, Lesson, LessonProgress, Question, QuestionCard
from storage.learners import ACTIVE, PAUSED, STOPPED, Learner, in_quiet_hours, is_paused, streak_on, zone_for
from storage.models import Base, BigId, Conversation, User, utcnow
from storage.queries import insert_ignoring_conflicts, rows_affected, starts_with

# Team.mode values
CHANNEL_MODE, DIRECT_MODE = "channel", "direct"
MODES = (CHANNEL_MODE, DIRECT_MODE)
# Team.status values
TEAM_ACTIVE, TEAM_OFF, TEAM_GONE = "active", "off", "gone"  # gone: the app was uninstalled from the workspace
# TeamMember.status values
MEMBER_ACTIVE, MEMBER_LEFT, MEMBER_OPTED_OUT, MEMBER_EXCLUDED = "active", "left", "opted_out", "excluded"
# Why a member behind is not nudged now (`nudge_held`): they paused or stopped their lessons, their chat opted out of
# messages (STOP), or it is their quiet hours
HELD_PAUSED, HELD_STOPPED, HELD_OPTED_OUT, HELD_QUIET = PAUSED, STOPPED, "opted_out", "quiet_hours"


class Team(Base):
    """A chat taking one course together: what, when (in the team's zone) and how (`mode`)."""

    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("channel", "chat_id"), Index("ix_teams_workspace", "channel", "workspace"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(200))  # where the team learns ("T01:C02")
    workspace: Mapped[str] = mapped_column(String(64))  # the organisation it belongs to ("T01")
    course_id: Mapped[int] = mapped_column(ForeignKey("courses.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(16), default=CHANNEL_MODE)
    lesson_time: Mapped[time] = mapped_column(Time)  # local wall-clock time in `timezone`
    lesson_days: Mapped[str] = mapped_column(String(7), default="12345")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(16), default="en")  # its course's language when set up
    leaderboard_on: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(16), default=TEAM_ACTIVE, index=True)
    next_lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"))
    created_by: Mapped[str] = mapped_column(String(200))
    digest_chat: Mapped[str | None] = mapped_column(String(200))  # the admin's direct chat: the weekly digest
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    members_synced_at: Mapped[datetime | None] = mapped_column()  # the last full read of the chat's members


class TeamMember(Base):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "member"), Index("ix_team_members_status", "team_id", "status"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    member: Mapped[str] = mapped_column(String(200))  # the sender id, "T01/U02"
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=MEMBER_ACTIVE)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)  # left off the leaderboard
    direct_chat: Mapped[str | None] = mapped_column(String(200))  # their direct chat with the bot: a nudge goes there
    started_at: Mapped[datetime | None] = mapped_column()  # pressed Start on the direct mode's invitation
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Whether the platform's word on who they are (a guest of the workspace, a bot) was read: False for one let in
    # while it could not be (users.info refused or slow); the next read of the members reads them
    standing_read: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The course they were taking on their own, and at what hour, when they pressed Start: theirs again when the
    # team's lessons stop for them (`pause_direct_lessons`)
    own_course_id: Mapped[int | None] = mapped_column(BigId)
    own_lesson_time: Mapped[time | None] = mapped_column(Time)
    own_lesson_days: Mapped[str | None] = mapped_column(String(7))


class TeamLessonPost(Base):
    __tablename__ = "team_lesson_posts"
    __table_args__ = (UniqueConstraint("team_id", "local_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    local_date: Mapped[date] = mapped_column(Date)
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lessons.id", ondelete="SET NULL"), index=True)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamAdmin(Base):
    """Someone a team admin added: they may administer the workspace's teams too."""

    __tablename__ = "team_admins"
    __table_args__ = (UniqueConstraint("channel", "workspace", "member"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    workspace: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(200))
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


# Queries ------------------------------------------------------------------------------------------------------------


async def team_in(session: AsyncSession, channel: str, chat_id: str) -> Team | None:
    """The team learning in a chat, if any (whatever its status)."""
    return await session.scalar(select(Team).where(Team.channel == channel, Team.chat_id == chat_id))


async def membership(session: AsyncSession, team: Team, member: str) -> TeamMember | None:
    return await session.scalar(select(TeamMember).where(TeamMember.team_id == team.id, TeamMember.member == member))


async def set_member(
    session: AsyncSession,
    team: Team,
    member: str,
    status: str,
    *,
    user_id: int | None,
    now: datetime,
    direct_chat: str | None = None,
    standing_read: bool = True,
) -> TeamMember:
    """Insert or update one member's row (race-free: insert-or-nothing, then update). `standing_read`: whether the
    caller knows what the platform says of them (a guest, a bot); a row made without it is read again by the member
    sync, and one read stays read."""
    await session.execute(
        insert_ignoring_conflicts(
            session,
            TeamMember,
            {
                "team_id": team.id,
                "member": member,
                "user_id": user_id,
                "status": status,
                "hidden": False,
                "joined_at": now,
                "changed_at": now,
                "standing_read": standing_read,
            },
        )
    )
    row = await membership(session, team, member)
    assert row is not None
    if row.status != status:
        row.status, row.changed_at = status, now
    if standing_read and not row.standing_read:
        row.standing_read = True
    if user_id is not None and row.user_id is None:
        row.user_id = user_id
    if direct_chat and row.direct_chat != direct_chat:
        row.direct_chat = direct_chat
    return row


async def started_learners(
    session: AsyncSession, team: Team, *, course_id: int | None = None, member: str | None = None
) -> list[Learner]:
    """The active learners of the team's course (`course_id`: another, the one it had) who started it through the
    team's invitation (`member`: that one only); a member taking the course on their own is not among them."""
    return [learner for learner, _row in await started_members(session, team, course_id=course_id, member=member)]


async def started_members(
    session: AsyncSession, team: Team, *, course_id: int | None = None, member: str | None = None
) -> list[tuple[Learner, TeamMember]]:
    """`started_learners`, each with their membership row."""
    query = (
        select(Learner, TeamMember)
        .join(TeamMember, TeamMember.user_id == Learner.user_id)
        .where(
            TeamMember.team_id == team.id,
            TeamMember.started_at.is_not(None),
            Learner.course_id == (course_id or team.course_id),
            Learner.status == ACTIVE,
        )
    )
    if member is not None:
        query = query.where(TeamMember.member == member)
    return [(learner, row) for learner, row in (await session.execute(query)).all()]


def person_of(member: str) -> str:
    """A member's own id on the platform, whichever workspace names them ("T01/U02" → "U02")."""
    return member.rpartition("/")[2]


def granted_to(member: str) -> ColumnElement[bool]:
    """The TeamAdmin rows that name this person. A grant names them by the workspace it was given in ("E01/U02" in an
    app installed for a whole Enterprise Grid org), their messages by their own ("T01/U02"): the person is matched by
    their own id."""
    person = person_of(member)
    if not person:
        return TeamAdmin.member == member
    return or_(TeamAdmin.member == member, TeamAdmin.member.endswith("/" + person, autoescape=True))


async def is_team_admin(session: AsyncSession, channel: str, workspace: str, member: str) -> bool:
    return bool(
        await session.scalar(
            select(func.count())
            .select_from(TeamAdmin)
            .where(TeamAdmin.channel == channel, TeamAdmin.workspace == workspace, granted_to(member))
        )
    )


async def add_team_admin(session: AsyncSession, channel: str, workspace: str, member: str, *, by: str) -> None:
    await session.execute(
        insert_ignoring_conflicts(
            session,
            TeamAdmin,
            {
                "channel": channel,
                "workspace": workspace,
                "member": member,
                "added_by": by,
                "added_at": utcnow(),
            },
        )
    )


async def record_post(session: AsyncSession, team: Team, local_date: date, lesson_id: int | None) -> bool:
    """Note the team's lesson for `local_date`; False when it was noted before (nothing to post again)."""
    result = await session.execute(
        insert_ignoring_conflicts(
            session,
            TeamLessonPost,
            {
                "team_id": team.id,
                "local_date": local_date,
                "lesson_id": lesson_id,
                "posted_at": utcnow(),
            },
        ).returning(TeamLessonPost.id)
    )
    return result.scalar() is not None


async def last_post(session: AsyncSession, team: Team) -> TeamLessonPost | None:
    """The team's latest lesson post that showed a lesson."""
    return await session.scalar(
        select(TeamLessonPost).where(TeamLessonPost.team_id == team.id, TeamLessonPost.lesson_id.is_not(None))
        .order_by(TeamLessonPost.local_date.desc()).limit(1)
    )


async def posted_lessons(session: AsyncSession, team: Team) -> set[int]:
    """The lessons the team's posts showed."""
    rows = await session.scalars(select(TeamLessonPost.lesson_id).where(TeamLessonPost.team_id == team.id))
    return {lesson_id for lesson_id in rows if lesson_id is not None}


async def was_posted(session: AsyncSession, team: Team, lesson_id: int) -> bool:
    return bool(
        await session.scalar(
            select(func.count())
            .select_from(TeamLessonPost)
            .where(TeamLessonPost.team_id == team.id, TeamLessonPost.lesson_id == lesson_id)
        )
    )


async def stop_workspace(session: AsyncSession, channel: str, workspace: str, *, chat_prefix: str) -> int:
    """The app left a workspace: its teams post nothing more, and every learner whose lessons go there (their home
    conversation is one of its chats, `chat_prefix`…) is stopped as /stop stops them: nothing is sent on its own,
    their data is kept as /stop keeps it (docs/data.md); a learner whose lessons go elsewhere is left alone.
    The number of teams stopped."""
    now = utcnow()
    result = await session.execute(
        update(Team)
        .where(Team.channel == channel, Team.workspace == workspace, Team.status != TEAM_GONE)
        .values(status=TEAM_GONE, updated_at=now)
    )
    homes = select(Conversation.id).where(
        Conversation.channel == channel, starts_with(Conversation.chat_id, chat_prefix)
    )
    # Parked as /stop parks them (`lesson_schedule_changed`: next_lesson_at NULL, the row marked changed), in the
    # one statement: the platform waits for this transaction, and a workspace may hold thousands of learners.
    await session.execute(
        update(Learner)
        .where(Learner.home_conversation_id.in_(homes), Learner.status != STOPPED)
        .values(status=STOPPED, next_lesson_at=None, updated_at=now)
    )
    return rows_affected(result)


@dataclass(frozen=True, slots=True)
class Standing:
    """One member's line on a team's leaderboard, in the team's course."""

    member: str
    name: str
    lessons_done: int
    answered: int  # quiz answers given in the course (every attempt)
    right: int
    streak: int
    points: int

    @property
    def accuracy(self) -> float | None:
        return self.right / self.answered if self.answered else None


async def member_zones(session: AsyncSession, team: Team) -> list[tuple[str, int]]:
    """(zone, how many) of the team's active members whose own time zone is known (their profile's), the most
    members first."""
    count = func.count(TeamMember.id)
    rows = await session.execute(
        select(User.timezone, count).join(User, User.id == TeamMember.user_id)
        .where(TeamMember.team_id == team.id, TeamMember.status == MEMBER_ACTIVE, User.timezone.is_not(None))
        .group_by(User.timezone).order_by(count.desc(), User.timezone)
    )
    return [(str(zone), int(n)) for zone, n in rows.all() if zone]


async def standings(session: AsyncSession, team: Team, *, include_hidden: bool = False,
                    now: datetime | None = None) -> list[Standing]:
    """The team's active members in its course, best first: points, then lessons done, then accuracy.

    Points are the learner's own total (lessons and quiz answers anywhere); lessons and accuracy count the team's
    course only; a streak is the one going on at `now` on the member's own local date (one that ended shows 0)."""
    now = now or utcnow()
    members = (
        await session.execute(
            select(TeamMember.member, TeamMember.user_id, User.display_name, User.timezone, Learner.points,
                   Learner.streak_days, Learner.last_active_on, Learner.lesson_days)
            .join(User, User.id == TeamMember.user_id)
            .outerjoin(Learner, Learner.user_id == TeamMember.user_id)
            .where(
                TeamMember.team_id == team.id,
                TeamMember.status == MEMBER_ACTIVE,
                *(() if include_hidden else (TeamMember.hidden.is_(False),)),
            )
        )
    ).all()
    user_ids = [row.user_id for row in members]
    if not user_ids:
        return []
    done = dict(
        (
            await session.execute(
                select(LessonProgress.user_id, func.count())
                .join(Lesson, Lesson.id == LessonProgress.lesson_id)
                .where(
                    LessonProgress.user_id.in_(user_ids),
                    Lesson.course_id == team.course_id,
                    LessonProgress.completed_at.is_not(None),
                )
                .group_by(LessonProgress.user_id)
            )
        ).all()
    )
    answers = {
        row[0]: (row[1], row[2])
        for row in (
            await session.execute(
                select(QuestionCard.user_id, func.sum(QuestionCard.attempts), func.sum(QuestionCard.correct))
                .join(Question, Question.id == QuestionCard.question_id)
                .where(QuestionCard.user_id.in_(user_ids), Question.course_id == team.course_id)
                .group_by(QuestionCard.user_id)
            )
        ).all()
    }
    lines = [
        Standing(
            member=row.member,
            name=row.display_name or row.member.rpartition("/")[2],
            lessons_done=int(done.get(row.user_id, 0)),
            answered=int(answers.get(row.user_id, (0, 0))[0] or 0),
            right=int(answers.get(row.user_id, (0, 0))[1] or 0),
            streak=streak_on(row.streak_days, row.last_active_on, now.astimezone(zone_for(row.timezone)).date(),
                             row.lesson_days),
            points=int(row.points or 0),
        )
        for row in members
    ]
    return sorted(lines, key=lambda s: (-s.points, -s.lessons_done, -(s.accuracy or 0.0), s.name.casefold()))


@dataclass(frozen=True, slots=True)
class LessonLine:
    """One posted lesson in a digest: how many active members finished it, and their quiz answers to it."""

    lesson_id: int
    title: str
    done: int
    answered: int
    right: int


@dataclass(frozen=True, slots=True)
class QuestionLine:
    prompt: str
    answered: int
    right: int


@dataclass(frozen=True, slots=True)
class Digest:
    """A team's week: its active members, the lessons posted for the local dates in [since, until), the questions by
    accuracy (hardest first), and the members who have not finished every one of those lessons. In the direct mode,
    where nothing is posted, the lessons are those its members finished in the week (in the team's zone), and the
    members behind are those who finished fewer than the week's lesson days. A member who paused or stopped their
    lessons (`storage.learners.is_paused` at `now`) is not behind: a paused one is counted in `paused`, a stopped one
    (/stop) left out."""

    members: int
    lessons: list[LessonLine]
    questions: list[QuestionLine]
    behind: list[tuple[int, str, str | None]]  # (user id, name, direct chat)
    paused: int = 0  # members who would be behind but have paused their lessons


async def weekly_digest(session: AsyncSession, team: Team, *, since: date, until: date,
                        now: datetime | None = None) -> Digest:
    active = (
        await session.execute(
            select(TeamMember.user_id, User.display_name, TeamMember.member, TeamMember.direct_chat, Learner)
            .join(User, User.id == TeamMember.user_id)
            .outerjoin(Learner, Learner.user_id == TeamMember.user_id)
            .where(TeamMember.team_id == team.id, TeamMember.status == MEMBER_ACTIVE)
        )
    ).all()
    now = now or utcnow()
    resting = {row.user_id: row.Learner.status for row in active
               if row.Learner is not None and is_paused(row.Learner, now)}
    if team.mode == DIRECT_MODE:
        return await _direct_week(session, team, active, resting, since=since, until=until)
    posted = (
        await session.execute(
            select(Lesson.id, Lesson.title)
            .join(TeamLessonPost, TeamLessonPost.lesson_id == Lesson.id)
            .where(
                TeamLessonPost.team_id == team.id, TeamLessonPost.local_date >= since, TeamLessonPost.local_date < until
            )
            .order_by(TeamLessonPost.local_date)
        )
    ).all()
    lesson_ids = [row.id for row in posted]
    return await _week(
        session,
        active,
        [(row.id, row.title) for row in posted],
        behind=lambda user, finished: any((user, lesson) not in finished for lesson in lesson_ids),
        resting=resting,
    )


async def _direct_week(session: AsyncSession, team: Team, active: Sequence[Any], resting: dict[int, str], *,
                       since: date, until: date) -> Digest:
    """The direct mode's week: the course's lessons the active members finished in it, in the course's order."""
    zone = zone_for(team.timezone)
    start, end = (datetime.combine(day, time(0), tzinfo=zone).astimezone(timezone.utc) for day in (since, until))
    users = [row.user_id for row in active]
    done_in_week = (
        (
            await session.execute(
                select(LessonProgress.user_id, Lesson.id, Lesson.title, Lesson.position)
                .join(Lesson, Lesson.id == LessonProgress.lesson_id)
                .where(
                    LessonProgress.user_id.in_(users),
                    Lesson.course_id == team.course_id,
                    LessonProgress.completed_at >= start,
                    LessonProgress.completed_at < end,
                )
            )
        ).all()
        if users
        else []
    )
    lessons = sorted({(row.position, row.id, row.title) for row in done_in_week})
    expected = sum(
        1
        for offset in range((until - since).days)
        if str((since + timedelta(days=offset)).isoweekday()) in team.lesson_days
    )
    count = {user: sum(1 for row in done_in_week if row.user_id == user) for user in users}
    return await _week(
        session,
        active,
        [(lesson_id, title) for _position, lesson_id, title in lessons],
        behind=lambda user, _finished: count[user] < expected,
        resting=resting,
    )


async def _week(
    session: AsyncSession,
    active: Sequence[Any],
    posted: list[tuple[int, str]],
    *,
    behind: Callable[[int, set[tuple[int, int]]], bool],
    resting: dict[int, str],
) -> Digest:
    """The digest of `posted` lessons (id, title) for the `active` members; `behind(user, finished)` says who is,
    unless they paused or stopped their lessons (`resting`: user id → the learner's status)."""
    users = [row.user_id for row in active]
    lesson_ids = [lesson_id for lesson_id, _title in posted]
    finished = (
        {
            (row[0], row[1])
            for row in await session.execute(
                select(LessonProgress.user_id, LessonProgress.lesson_id).where(
                    LessonProgress.user_id.in_(users),
                    LessonProgress.lesson_id.in_(lesson_ids),
                    LessonProgress.completed_at.is_not(None),
                )
            )
        }
        if users and lesson_ids
        else set()
    )
    per_question = (
        (
            await session.execute(
                select(
                    Question.id,
                    Question.lesson_id,
                    Question.prompt,
                    func.sum(QuestionCard.attempts),
                    func.sum(QuestionCard.correct),
                )
                .join(QuestionCard, QuestionCard.question_id == Question.id)
                .where(Question.lesson_id.in_(lesson_ids), QuestionCard.user_id.in_(users))
                .group_by(Question.id, Question.lesson_id, Question.prompt)
            )
        ).all()
        if users and lesson_ids
        else []
    )
    lessons = []
    for lesson_id, title in posted:
        of = [q for q in per_question if q.lesson_id == lesson_id]
        lessons.append(
            LessonLine(
                lesson_id=lesson_id,
                title=title,
                done=sum(1 for user in users if (user, lesson_id) in finished),
                answered=sum(int(q[3] or 0) for q in of),
                right=sum(int(q[4] or 0) for q in of),
            )
        )
    questions = sorted(
        (QuestionLine(prompt=q.prompt, answered=int(q[3] or 0), right=int(q[4] or 0)) for q in per_question),
        key=lambda line: line.right / line.answered if line.answered else 1.0,
    )
    late = [row for row in active if behind(row.user_id, finished)]
    return Digest(
        members=len(users),
        lessons=lessons,
        questions=questions,
        behind=[
            (row.user_id, row.display_name or row.member.rpartition("/")[2], row.direct_chat)
            for row in late
            if row.user_id not in resting
        ],
        paused=sum(1 for row in late if resting.get(row.user_id) == PAUSED),
    )


async def nudge_held(session: AsyncSession, team: Team, user: User, chat: str, now: datetime) -> str | None:
    """Why a team admin's nudge may not go to this member's direct chat `chat` now, by the rules the scheduler keeps
    for what it sends on its own (`storage.scheduling.may_be_messaged`, and quiet hours as scheduler/nudges.py holds
    them): HELD_STOPPED or HELD_PAUSED (their learner stopped, or paused and the pause not yet run out:
    `storage.learners.is_paused`), HELD_OPTED_OUT (that chat, or their home conversation, sent STOP), HELD_QUIET
    (their quiet hours hold `now`); None: it may go. Consent is not asked, unlike `may_be_messaged`: a member of a
    channel team takes its quizzes without onboarding, and the nudge, like the team's invitation, is the team's."""
    learner = await session.get(Learner, user.id)
    if learner is not None and is_paused(learner, now):
        return HELD_STOPPED if learner.status == STOPPED else HELD_PAUSED
    chats = [and_(Conversation.channel == team.channel, Conversation.chat_id == chat)]
    if learner is not None and learner.home_conversation_id is not None:
        chats.append(Conversation.id == learner.home_conversation_id)
    opted_out = await session.scalar(
        select(func.count()).select_from(Conversation).where(Conversation.opted_out_at.is_not(None), or_(*chats))
    )
    if opted_out:
        return HELD_OPTED_OUT
    if learner is not None and in_quiet_hours(learner, user, now):
        return HELD_QUIET
    return None


# A person's erasure (storage/personal_data.py) ------------------------------------------------------------------------


def _as_member(identities: list[tuple[str, str]]) -> ColumnElement[bool]:
    return or_(
        false(), *(and_(Team.channel == channel, TeamMember.member == external) for channel, external in identities)
    )


async def memberships_of(session: AsyncSession, user_id: int) -> list[dict[str, Any]]:
    """The person's team memberships, for their export (with the course of their own that waits behind one)."""
    own = aliased(Course)
    rows = await session.execute(
        select(
            Team.chat_id,
            Course.title,
            TeamMember.status,
            TeamMember.hidden,
            TeamMember.joined_at,
            TeamMember.started_at,
            own.title.label("own_course"),
        )
        .join(Team, Team.id == TeamMember.team_id)
        .join(Course, Course.id == Team.course_id)
        .outerjoin(own, own.id == TeamMember.own_course_id)
        .where(TeamMember.user_id == user_id)
    )
    return [
        {
            "chat": row.chat_id,
            "course": row.title,
            "status": row.status,
            "hidden": row.hidden,
            "joined_at": row.joined_at.isoformat(),
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "own_course_waiting": row.own_course,
        }
        for row in rows
    ]


def direct_chats_of(user_id: int, identities: list[tuple[str, str]]) -> Select[int]:
    """The conversations of the person's direct chats with the bot that their teams know (where an invitation or a
    nudge went, maybe before they ever wrote there)."""
    theirs = or_(TeamMember.user_id == user_id, _as_member(identities))
    return (
        select(Conversation.id)
        .select_from(TeamMember)
        .join(Team, Team.id == TeamMember.team_id)
        .join(Conversation, and_(Conversation.channel == Team.channel, Conversation.chat_id == TeamMember.direct_chat))
        .where(theirs)
    )


def team_chats_among(conversation_ids: Collection[int]) -> Select[int]:
    """Those of `conversation_ids` that are a team's chat (its channel): the team's, never one member's own, however
    few of its members ever wrote there."""
    return (
        select(Conversation.id)
        .join(Team, and_(Team.channel == Conversation.channel, Team.chat_id == Conversation.chat_id))
        .where(Conversation.id.in_(conversation_ids))
    )


async def link_direct_chat(session: AsyncSession, conversation_id: int, user_id: int) -> None:
    """A member's direct chat is theirs before they write in it: its conversation names them (as their first message
    there would), so that their erasure takes what was sent there."""
    await session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id, Conversation.user_id.is_(None))
        .values(user_id=user_id)
        .execution_options(synchronize_session=False)
    )


async def forget_member(session: AsyncSession, user_id: int, identities: list[tuple[str, str]]) -> None:
    """Erase a person from every team: their admin grants go; a team they set up stays, without their address (its
    digest goes nowhere until another admin sets the team up again). Each membership stays as a bare opt-out
    (`_ERASED_MEMBER`: the team and their member id, no person, chat or dates of theirs), as a chat's STOP mark
    outlives an erasure: the member sync neither makes them again from the platform's profile nor invites them,
    until they act themselves (/lessonbot team join, Start on an invitation)."""
    members = select(TeamMember.id).join(Team, Team.id == TeamMember.team_id).where(_as_member(identities))
    now = utcnow()
    await session.execute(
        update(TeamMember)
        .where(or_(TeamMember.user_id == user_id, TeamMember.id.in_(members)))
        .values(**_ERASED_MEMBER, joined_at=now, changed_at=now)
        .execution_options(synchronize_session=False)
    )
    for channel, external in identities:
        await session.execute(delete(TeamAdmin).where(TeamAdmin.channel == channel, granted_to(external)))
        await session.execute(
            update(Team)
            .where(Team.channel == channel, Team.created_by == external)
            .values(created_by="", digest_chat=None)
        )


async def forget_digest_chats(session: AsyncSession, conversation_ids: Collection[int]) -> None:
    """An erased person's own chats (`conversation_ids`): a team whose weekly digest went to one of them (set up, or
    set again, by that person as its admin) sends it nowhere until an admin sets the team up again."""
    if not conversation_ids:
        return
    chats = (await session.execute(
        select(Conversation.channel, Conversation.chat_id).where(Conversation.id.in_(conversation_ids))
    )).all()
    for channel, chat_id in chats:
        await session.execute(
            update(Team).where(Team.channel == channel, Team.digest_chat == chat_id).values(digest_chat=None)
        )


# What an erased member's row keeps: that they opted out, nothing of them.
_ERASED_MEMBER: dict[str, Any] = {
    "user_id": None, "status": MEMBER_OPTED_OUT, "hidden": False, "direct_chat": None, "started_at": None,
    "own_course_id": None, "own_lesson_time": None, "own_lesson_days": None,
}
