"""Teams on the clock: each team's lesson at its hour in its own zone, its weekly leaderboard, and its members read
from the platform.

`post_team_lessons` walks behind a durable cursor ("team-lessons") as the learners' planner does
(scheduler/planner.py): each run handles the lesson moments in (cursor, now], computed with the planner's
`lesson_dates` in the team's zone, so a daylight-saving day has one lesson moment like any other and runs missed
during a failover are made up (up to LESSON_LATE_LIMIT late). A team's lesson for a local date is posted once: its
`team_lesson_posts` row (unique per team and date) is written in the same transaction as the post's outbox row.
On the team's last lesson day of an ISO week the leaderboard follows the lesson (once a week: its outbox row's key
names the week); on its first, the team admin's digest of the week before goes to their direct chat first. A
direct-mode team posts no lesson (its members' lessons come in their direct chats): only its weekly leaderboard and
digest, at the team's hour in the team's zone.

`sync_team_members` reads each team's chat members through the channel's `ListsMembers` (Slack's
conversations.members, every page; users.info only for people not seen before, and for those who come back;
Retry-After honoured by the channel; someone it will not describe, `NotShown`, left out until the next read, the
others read as ever), at set-up and every SYNC_EVERY after: people in the chat become active members
(guests and bots are left out), people no longer there are paused (`left`, and the direct-mode lessons they started
through the team with them), and one who comes back is a member again unless they are now a guest or a bot; a
member's own opt-out stands, and so does the bare opt-out an erased member's row is left as
(storage.teams.forget_member): they are neither made again from their profile nor invited until they act
themselves. In the direct mode each newcomer, and each member who comes back, gets the team's invitation in their
direct chat (dialogs/teams.py `invite_unasked`: not one whose learner stopped everything the bot sends on its own,
who asks with /lessonbot team join); the lessons of those who press Start are then the planner's
(scheduler/planner.py), at the team's hour in each one's own zone.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channel import ChatMember, ListsMembers, NotShown, PermanentSendError, SendError
from bot.text import person_name
from dialogs.teams import (
    announce,
    digest_message,
    invite_unasked,
    leaderboard,
    lesson_to_post,
    pause_direct_lessons,
    post_lesson,
    send_to,
    take_back_undelivered,
    team_translator,
)
from scheduler.context import JobContext
from scheduler.planner import LESSON_LATE_LIMIT, lesson_dates
from storage.learners import take_profile_zone, zone_for
from storage.models import User
from storage.queries import get_or_create_identity
from storage.scheduling import advance_cursor, read_cursor
from storage.teams import (
    CHANNEL_MODE,
    MEMBER_ACTIVE,
    MEMBER_EXCLUDED,
    MEMBER_LEFT,
    TEAM_ACTIVE,
    Team,
    TeamMember,
    membership,
    person_of,
    record_post,
    set_member,
    standings,
)

log = logging.getLogger(__name__)

CURSOR = "team-lessons"
SYNC_EVERY = timedelta(hours=6)
PROFILE_BATCH = 50


async def post_team_lessons(ctx: JobContext) -> int:
    """Post every team lesson due since the last run; the number posted."""
    now = ctx.now()
    async with ctx.db.sessions() as session:
        cursor = await read_cursor(session, CURSOR)
        teams = list(await session.scalars(
            select(Team).where(Team.status == TEAM_ACTIVE).order_by(Team.id)
        ))
    start = now if cursor is None else max(cursor, now - LESSON_LATE_LIMIT)
    posted = 0
    for team in teams if start < now else ():
        zone = zone_for(team.timezone)
        for day in lesson_dates(start, now, zone=zone, at=team.lesson_time, days=team.lesson_days):
            try:
                posted += await _post_once(ctx, team.id, day, now)
            except Exception:
                log.exception("posting a team's lesson failed", extra={"team_id": team.id, "date": day.isoformat()})
    async with ctx.db.transaction() as session:
        await advance_cursor(session, CURSOR, now)
    if posted:
        ctx.notify()
        log.info("team lessons posted: %d", posted)
    return posted


async def _post_once(ctx: JobContext, team_id: int, day: date, now: datetime) -> int:
    async with ctx.db.transaction() as session:
        team = await session.get(Team, team_id)
        if team is None or team.status != TEAM_ACTIVE:
            return 0
        direct = team.mode != CHANNEL_MODE  # each member's lessons come from the planner: no post here
        if not direct and await take_back_undelivered(session, team):
            return 0  # the channel is gone: its lessons are off, none used up
        lesson = None if direct else await lesson_to_post(session, team)
        if not await record_post(session, team, day, lesson.id if lesson else None):
            return 0  # posted before (a repeated run, or a second leader)
        if team.digest_chat and _first_lesson_day_of_week(team.lesson_days, day):
            digest = await digest_message(session, team, day=day, now=now)
            if digest is not None:
                await send_to(session, team, team.digest_chat, digest, key=f"team-digest:{team.id}:{day.isoformat()}")
        if lesson is not None:
            await post_lesson(session, team, lesson, day, now=now)
        if (_last_lesson_day_of_week(team.lesson_days, day) and team.leaderboard_on
                and any(standing.points for standing in await standings(session, team))):
            year, week, _ = day.isocalendar()
            await announce(session, team, await leaderboard(session, team, await team_translator(session, team)),
                           key=f"team-board:{team.id}:{year}-W{week:02d}")
        return int(lesson is not None)


def _last_lesson_day_of_week(days: str, day: date) -> bool:
    return bool(days) and str(day.isoweekday()) == max(days)


def _first_lesson_day_of_week(days: str, day: date) -> bool:
    return bool(days) and str(day.isoweekday()) == min(days)


# Members -------------------------------------------------------------------------------------------------------------


async def sync_team_members(ctx: JobContext) -> int:
    """Read the members of every team due for it; the number of teams read."""
    now = ctx.now()
    async with ctx.db.sessions() as session:
        due = list(await session.scalars(
            select(Team).where(
                Team.status == TEAM_ACTIVE,
                or_(Team.members_synced_at.is_(None), Team.members_synced_at < now - SYNC_EVERY),
            ).order_by(Team.id)
        ))
    read = 0
    for team in due:
        lister = ctx.member_lists.get(team.channel)
        if lister is None:
            continue
        try:
            await sync_one(ctx, team, lister, now)
        except PermanentSendError as exc:
            # The bot is not in the channel, or the workspace is gone: asking again every minute will not help.
            log.warning("reading a team's members was refused; tried again in %s", SYNC_EVERY,
                        extra={"team_id": team.id, "error": str(exc)})
            async with ctx.db.transaction() as session:
                row = await session.get(Team, team.id)
                if row is not None:
                    row.members_synced_at = now
            continue
        except SendError as exc:
            log.warning("reading a team's members failed; next run tries again",
                        extra={"team_id": team.id, "error": str(exc)})
            continue
        read += 1
    return read


async def sync_one(ctx: JobContext, team: Team, lister: ListsMembers, now: datetime) -> None:
    """One team's members, as the platform lists them now. Newcomers' profiles are read at the platform's pace and
    written PROFILE_BATCH at a time, so a large channel's members start learning before the last is read."""
    present = await lister.chat_members(team.chat_id)
    async with ctx.db.sessions() as session:
        rows = (await session.execute(select(TeamMember.member, TeamMember.status, TeamMember.standing_read)
                                      .where(TeamMember.team_id == team.id))).all()
    known = {member: status for member, status, _read in rows}
    unread = {person_of(member): member for member, _status, read in rows if not read}
    # People are matched by their own id: a channel's member list names each by the workspace it is read in, the
    # member rows by their own workspace (a Slack Connect member's is another organisation's)
    here = {person_of(member): member for member in present}
    # Who comes back is read again: a guest of the workspace now, or a bot, stays out
    returning = {member: profile for member, status in known.items()
                 if status == MEMBER_LEFT and person_of(member) in here
                 and (profile := await _profile(lister, here[person_of(member)])) is not None}
    async with ctx.db.transaction() as session:
        row = await session.get(Team, team.id)
        if row is None:
            return
        for member, status in known.items():
            if member in returning:
                await _came_back(session, row, member, returning[member], now)
            elif person_of(member) not in here and status == MEMBER_ACTIVE:
                await set_member(session, row, member, MEMBER_LEFT, user_id=None, now=now)
                await pause_direct_lessons(session, row, member)
    seen = {person_of(member) for member in known}
    newcomers = [member for member in present if person_of(member) not in seen]
    for start in range(0, len(newcomers), PROFILE_BATCH):
        # users.info only for people not seen before: a 500-member channel costs its calls once.
        profiles = [profile for member in newcomers[start:start + PROFILE_BATCH]
                    if (profile := await _profile(lister, member)) is not None]
        async with ctx.db.transaction() as session:
            await _enroll(session, team.id, profiles, now)
    # And for those let in before their profile could be read (a button pressed before this read): a guest or a bot
    # among them is left out now.
    for member in [member for member in present if person_of(member) in unread]:
        if (profile := await _profile(lister, member)) is None:
            continue
        async with ctx.db.transaction() as session:
            await _standing_read(session, team.id, unread[person_of(member)], profile, now)
    async with ctx.db.transaction() as session:
        row = await session.get(Team, team.id)
        if row is not None:
            row.members_synced_at = now


async def _profile(lister: ListsMembers, member: str) -> ChatMember | None:
    """What the platform says of one member; None for one it will not describe (NotShown), who is left out of this
    read, not holding back everyone read after them, and read again the next time."""
    try:
        return await lister.member_profile(member)
    except NotShown as exc:
        log.info("a chat member's profile was not shown; left out of this read", extra={"error": str(exc)})
        return None


async def _came_back(session: AsyncSession, team: Team, member: str, profile: ChatMember, now: datetime) -> None:
    """A member who had left is in the chat again: a member once more, invited again in the direct mode; left out
    when the platform now says they are a guest or a bot."""
    if profile.guest or profile.bot:
        await set_member(session, team, member, MEMBER_EXCLUDED, user_id=None, now=now)
        return
    back = await set_member(session, team, member, MEMBER_ACTIVE, user_id=None, now=now)
    await invite_unasked(session, team, back, again=now)  # the direct mode's invitation, once more


async def _standing_read(session: AsyncSession, team_id: int, member: str, profile: ChatMember, now: datetime) -> None:
    """What the platform says of a member let in unread: a guest or a bot is left out (their team lessons stop)."""
    team = await session.get(Team, team_id)
    row = await membership(session, team, member) if team is not None else None
    if team is None or row is None:
        return
    row.standing_read = True
    if row.user_id is not None and (user := await session.get(User, row.user_id)) is not None:
        await take_profile_zone(session, user, profile.timezone)  # (one let in unread: a lead whose users.info failed)
    if (profile.guest or profile.bot) and row.status != MEMBER_EXCLUDED:
        row.status, row.changed_at = MEMBER_EXCLUDED, now
        await pause_direct_lessons(session, team, member)


async def _enroll(session: AsyncSession, team_id: int, profiles: list[ChatMember], now: datetime) -> None:
    team = await session.get(Team, team_id)
    if team is None:
        return
    for profile in profiles:
        name = person_name(profile.name) or None  # (cut to the column by the channel)
        identity = await get_or_create_identity(session, team.channel, profile.sender_id, name)
        if (user := await session.get(User, identity.user_id)) is not None:  # (a zone unreadable here: the team's)
            await take_profile_zone(session, user, profile.timezone)
        status = MEMBER_EXCLUDED if profile.guest or profile.bot else MEMBER_ACTIVE
        member = await set_member(session, team, profile.sender_id, status, user_id=identity.user_id, now=now,
                                  direct_chat=profile.direct_chat)
        if status == MEMBER_ACTIVE:
            await invite_unasked(session, team, member)  # the direct mode's invitation (not in the channel mode)
