"""Teams: a group chat (a Slack channel) taking a course together.

- `/team` shows the chat's team course; a team admin sets it up with `/team set COURSE at HH:MM on DAYS in ZONE`,
  turns it `off` / `on`, turns the leaderboard off / on (`/team leaderboard off`), and adds admins (`/team admin
  ID`). Who may (`may_administer`, the one check): an owner or admin role covering the workspace (dialogs/roles.py,
  ADMINS included), the workspace's admins and owners and
  the person who installed the app (the channel marks them `meta[WORKSPACE_ADMIN]`), and whoever an admin added.
  Every attempt is written to the audit log, allowed or not.
- A member opts out (`/team leave`) and back in (`/team join`), and hides from the leaderboard (`/team hide`,
  `/team unhide`); `/leaderboard` shows the team's standings.
- The team's lesson is posted once in the chat (`post_lesson`, called by scheduler/teams.py at the team's hour),
  its parts in the post's thread; its button ("team:take:TEAM:LESSON") gives each member the lesson's quiz in their
  private place in the chat (a Slack ephemeral conversation), so nobody sees another's answers.
- In the direct mode (`/team set … mode direct`, or `in members`) nothing is posted: each member is invited in a
  direct message (`invite`); pressing Start ("team:start:TEAM:COURSE") makes them a learner of the team's course at the
  team's hour in their own time zone (their profile's, else the team's), whose lessons the planner pushes to that
  direct chat as to any learner (scheduler/planner.py). "No, thanks" ("team:skip:TEAM:COURSE") opts out; either
  pressed on an invitation to a course the team no longer takes changes nothing (`_earlier_invitation`). Who started
  through the team (`TeamMember.started_at`) follows it: its new hour and days become theirs (`follow_team_schedule`);
  `team off`, another course, the channel mode, opting out and leaving the chat pause their lessons, or give back
  the course they were taking on their own when they pressed Start (`pause_direct_lessons`); `team on` and another
  course invite them again.
- Joining the chat enrolls (`membership_changed`); leaving pauses; guests and bots are left out.

Where a member is: `meta[GROUP_CHAT]` (the chat's own id) and `meta[WORKSPACE]`, set by the channel on what
reaches a member's private place in a group chat.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections import Counter
from datetime import date, datetime, time, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import (
    DIRECT_ADDRESS,
    FROM_A_BOT,
    GROUP_CHAT,
    GUEST,
    MEMBERSHIP,
    ORG_WORKSPACE,
    TIMEZONE,
    WORKSPACE,
    WORKSPACE_ADMIN,
    Choice,
    Markup,
    Text,
    text_line,
)
from dialogs import bandit, flow, lessons, nudges, roles
from dialogs.choices import refuse
from dialogs.i18n import N_, Translator, translator
from dialogs.learner import enroll, joined_to, learner_of, tr
from dialogs.onboarding import days_label, finish, privacy_notice, schedule_summary, take_course
from dialogs.times import read_days, read_time, read_zone
from dialogs.turn import Command, Turn
from storage.courses import (
    FREE,
    Course,
    Lesson,
    LessonProgress,
    course_lessons,
    free_to_try,
    lesson_questions,
    may_access,
    progress_of,
)
from storage.learners import ACTIVE as LEARNER_ACTIVE
from storage.learners import PAUSED, STOPPED, Learner, lesson_schedule_changed, take_profile_zone, zone_for
from storage.models import AdminAuditEntry, User, utcnow
from storage.outbox import OutboxEntry, enqueue, why_undelivered
from storage.queries import get_or_create_conversation
from storage.scheduling import QUEUED, NudgeLog
from storage.teams import (
    CHANNEL_MODE,
    DIRECT_MODE,
    HELD_OPTED_OUT,
    HELD_PAUSED,
    HELD_QUIET,
    HELD_STOPPED,
    MEMBER_ACTIVE,
    MEMBER_EXCLUDED,
    MEMBER_LEFT,
    MEMBER_OPTED_OUT,
    MODES,
    TEAM_ACTIVE,
    TEAM_GONE,
    TEAM_OFF,
    Team,
    TeamMember,
    add_team_admin,
    is_team_admin,
    last_post,
    link_direct_chat,
    member_zones,
    membership,
    nudge_held,
    posted_lessons,
    set_member,
    standings,
    started_learners,
    started_members,
    team_in,
    was_posted,
    weekly_digest,
)

TAKE = "team:take"  # the lesson post's button: "team:take:TEAM:LESSON"
# A direct-mode invitation's buttons: "team:start:TEAM:COURSE" (the course it invites to; 0 on those sent before
# they named it)
START, SKIP = "team:start", "team:skip"
MEMBER_ZONES = ("members", "own")  # "in members": the team's hour in each member's own zone (the direct mode)
NUDGE = "team:nudge"  # the digest's button: "team:nudge:TEAM:DAY" (DAY: the digest's date, as an ordinal)
DIGEST_DAYS = 7
HARDEST = 3  # questions named in a digest
BOARD_LINES = 10  # members shown on a leaderboard

_SET_UP = re.compile(
    r"^(?P<course>\S+)(?:\s+at\s+(?P<time>\S+))?(?:\s+on\s+(?P<days>.+?))?(?:\s+in\s+(?P<zone>.+?))?"
    r"(?:\s+mode\s+(?P<mode>\S+))?$",
    re.IGNORECASE,
)

log = logging.getLogger(__name__)


class UsageError(Exception):
    """The command was typed wrong; the message says how to type it."""


# Where the member is -------------------------------------------------------------------------------------------------


def group_chat(turn: Turn) -> str | None:
    """The group chat this message was sent in, seen from the member's private place there; None elsewhere."""
    chat = turn.message.meta.get(GROUP_CHAT)
    return chat if isinstance(chat, str) and chat else None


def workspace_of(turn: Turn) -> str:
    workspace = turn.message.meta.get(WORKSPACE)
    return workspace if isinstance(workspace, str) else ""


async def may_administer(turn: Turn, workspace: str) -> bool:
    """The one check of who may change a workspace's teams: an owner or admin role covering the workspace
    (dialogs/roles.py; where the app is installed for a whole organisation, one covering the org's workspace the
    message came from covers the org's teams too: `covering`), the workspace's own admins and owners and the app's
    installer (as the channel marks them), or someone a team admin added."""
    held = await roles.grants(turn)
    if any(roles.permitted(held, "teams", scope) for scope in covering(turn, workspace)):
        return True
    if turn.message.meta.get(WORKSPACE_ADMIN) is True:
        return True
    return await is_team_admin(turn.session, turn.message.channel, workspace, turn.message.sender_id)


def covering(turn: Turn, workspace: str) -> list[roles.Scope]:
    """The scopes a role may name to cover the teams of `workspace` (an installation's id) for this message's sender:
    the workspace's own; and where it is an organisation the app is installed for as a whole (an Enterprise Grid org),
    the workspace of that org the message came from, as the platform names the two together
    (`meta[ORG_WORKSPACE]`, "E01/T02"): an admin of one of the org's workspaces administers the org's teams."""
    scopes = [roles.Scope("team", workspace)]
    named = turn.message.meta.get(ORG_WORKSPACE)
    org, _slash, org_workspace = named.partition("/") if isinstance(named, str) else ("", "", "")
    if org == workspace and org_workspace:
        scopes.append(roles.Scope("team", org_workspace))
    return scopes


async def _set_status(turn: Turn, team: Team, status: str) -> TeamMember:
    """The sender's membership of `team`, as `status`, with their direct chat where the channel says it. One let in
    without the platform's word on who they are (a button press carries none; users.info refused a command's) is
    read by the member sync, at once: a guest or a bot found there is left out."""
    member = await set_member(turn.session, team, turn.message.sender_id, status, user_id=turn.user.id, now=turn.now,
                              direct_chat=direct_address(turn), standing_read=GUEST in turn.message.meta)
    if not member.standing_read:
        team.members_synced_at = None
    return member


def direct_address(turn: Turn) -> str | None:
    """The sender's own address on the platform (their direct chat with the bot), where the channel gives it."""
    address = turn.message.meta.get(DIRECT_ADDRESS)
    return address if isinstance(address, str) and address else None


def _audit(turn: Turn, command: str, arguments: str, outcome: str) -> None:
    turn.session.add(AdminAuditEntry(identity=turn.identity.address, command=f"team {command}"[:64],
                                     arguments=arguments[:2000], outcome=outcome))


# /team ---------------------------------------------------------------------------------------------------------------


async def team_command(turn: Turn, args: str) -> None:
    _ = tr(turn)
    chat = group_chat(turn)
    if chat is None:
        turn.say(_("Team courses are set up in the channel where the team learns: type /lessonbot team there."))
        return
    name, _space, rest = args.strip().partition(" ")
    name, rest = name.lower(), rest.strip()
    team = await team_in(turn.session, turn.message.channel, chat)
    if name in MEMBER_COMMANDS:
        await MEMBER_COMMANDS[name](turn, team)
        return
    if name in ("", "help", "show"):
        await _show(turn, team)
        return
    if name not in ADMIN_COMMANDS:
        turn.say(_("There is no team command {name}. Try /lessonbot team help.", name=repr(name)))
        return
    if not await may_administer(turn, workspace_of(turn)):
        _audit(turn, name, rest, "denied")
        turn.say(_("Only a team admin may change this channel's team course: a workspace admin, the person who "
                   "installed the app, or someone they added."))
        return
    try:
        await ADMIN_COMMANDS[name](turn, chat, team, rest)
    except UsageError as exc:
        _audit(turn, name, rest, "invalid")
        turn.say(str(exc))
        return
    _audit(turn, name, rest, "ok")


async def _show(turn: Turn, team: Team | None) -> None:
    _ = tr(turn)
    if team is None:
        turn.say(_("This channel takes no course together yet. A team admin sets one up with\n"
                   "/lessonbot team set COURSE at 09:00 on weekdays in Europe/Lisbon"))
        return
    course = await turn.session.get(Course, team.course_id)
    member = await membership(turn.session, team, turn.message.sender_id)
    lines = [describe(_, team, course)]
    if team.status != TEAM_ACTIVE:
        lines.append(_("Lessons are turned off for now."))
    if member is not None and member.status == MEMBER_OPTED_OUT:
        lines.append(_("You opted out: /lessonbot team join to take part again."))
    elif member is None or member.status != MEMBER_EXCLUDED:
        lines.append(_("/lessonbot team leave to opt out, /lessonbot team hide to stay off the leaderboard."))
    if await may_administer(turn, workspace_of(turn)):
        if (hours := await hours_where_members_are(_, turn.session, team, turn.now)) is not None:
            lines.append(hours)
        lines.append(_admin_help(_))
    turn.say("\n".join(lines))


ZONES_LISTED = 5  # the zones with the most members named; the rest counted together


async def hours_where_members_are(_: Translator, session: AsyncSession, team: Team, now: datetime) -> str | None:
    """For a team admin, where a channel's lesson comes at one hour for everyone (the team's, in its zone): that
    hour in the zones of its members (their profiles'), for how many, on the team's day today; None where it is the
    same hour for all of them (or the lessons come to each in their own zone, the direct mode)."""
    if team.mode != CHANNEL_MODE:
        return None
    zone = zone_for(team.timezone)
    lesson = datetime.combine(now.astimezone(zone).date(), team.lesson_time, tzinfo=zone)
    zones = await member_zones(session, team)
    if all(lesson.astimezone(zone_for(name)).time() == team.lesson_time for name, _n in zones):
        return None
    hours = [_.plural("{time} in {zone} ({n} member)", "{time} in {zone} ({n} members)", n,
                      time=f"{lesson.astimezone(zone_for(name)):%H:%M}", zone=name.replace("_", " "))
             for name, n in zones[:ZONES_LISTED]]
    rest = sum(n for _name, n in zones[ZONES_LISTED:])
    if rest:
        hours.append(_.plural("{n} member in other zones", "{n} members in other zones", rest))
    return _("That hour where the members are: {hours}.", hours=Markup(", ".join(hours)))  # (each escaped)


def _admin_help(_: Translator) -> str:
    return _("For team admins:\n"
             "/lessonbot team set COURSE at 09:00 on weekdays in Europe/Lisbon (or mode direct: each member's lessons "
             "in a direct message, at that hour in their own time zone)\n"
             "/lessonbot team off · team on: stop the lessons, start them again\n"
             "/lessonbot team restart: post the course again from its first lesson\n"
             "/lessonbot team leaderboard off · on\n"
             "/lessonbot team admin @name: let another member run the workspace's teams")


async def _restart(turn: Turn, chat: str, team: Team | None, _args: str) -> None:
    """/team restart: the channel's course again from its first lesson (posted at the team's next lesson time)."""
    _ = tr(turn)
    if team is None:
        raise UsageError(_("This channel takes no course together yet."))
    if team.mode == DIRECT_MODE:
        raise UsageError(_("In the direct mode each member goes through the course at their own pace: there is no "
                           "team lesson to start again."))
    lessons_of_course = await course_lessons(turn.session, team.course_id)
    team.next_lesson_id = lessons_of_course[0].id if lessons_of_course else None
    team.updated_at = turn.now
    turn.say(_("Done: the next lesson posted here is the course's first."))


def describe(_: Translator, team: Team, course: Course | None) -> str:
    if team.mode == DIRECT_MODE:  # a member whose profile names no zone (or one unreadable here) has the team's
        return _("This channel takes “{title}” together: each member gets a lesson {days} at {time} in their own time "
                 "zone ({zone} for a member whose profile names none), in a direct message.",
                 title=course.title if course else "?", days=days_label(_, team.lesson_days),
                 time=f"{team.lesson_time:%H:%M}", zone=team.timezone.replace("_", " "))
    return _("This channel takes “{title}” together: a lesson {days} at {time} ({zone}).",
             title=course.title if course else "?", days=days_label(_, team.lesson_days),
             time=f"{team.lesson_time:%H:%M}", zone=team.timezone.replace("_", " "))


async def _set_up(turn: Turn, chat: str, team: Team | None, args: str) -> None:
    """/team set COURSE [at HH:MM] [on DAYS] [in ZONE | in members] [mode channel | mode direct]"""
    _ = tr(turn)
    usage = _("Usage: /lessonbot team set COURSE at 09:00 on weekdays in Europe/Lisbon")
    match = _SET_UP.match(args)
    if match is None:
        raise UsageError(usage)
    # a team keeps the course it has; a new one is one of those offered (published)
    offered = or_(Course.published.is_(True), Course.id == (team.course_id if team else None))
    course = await turn.session.scalar(select(Course).where(Course.slug == match["course"].lower(), offered))
    if course is None:
        slugs = ", ".join(await turn.session.scalars(
            select(Course.slug).where(Course.published.is_(True)).order_by(Course.slug))) or "—"
        raise UsageError(_("There is no course {slug}. Courses: {slugs}.", slug=repr(match["course"]), slugs=slugs))
    at = read_time(match["time"]) if match["time"] else (team.lesson_time if team else time(9, 0))
    if at is None:
        raise UsageError(_("I couldn't read “{text}” as a time. Try 08:00, 7:30, 6pm or 18h.", text=match["time"][:40]))
    days = read_days(match["days"]) if match["days"] else (team.lesson_days if team else "12345")
    if days is None:
        raise UsageError(_("I couldn't read those days. Name them (“mon, wed, fri”, “monday to friday”) or say “every "
                           "day”, “weekdays” or “weekends”."))
    member_zones = (match["zone"] or "").lower() in MEMBER_ZONES
    typed_zone = None if member_zones else match["zone"] or (None if team else turn.message.meta.get(TIMEZONE))
    zone = read_zone(typed_zone) if isinstance(typed_zone, str) and typed_zone else None
    if typed_zone and zone is None and match["zone"]:
        raise UsageError(_("I couldn't find a time zone for “{text}”. Try the nearest big city (Madrid, Chicago, "
                           "Tokyo), a zone name like Europe/Berlin, or an offset like UTC-3.", text=match["zone"][:40]))
    mode = (match["mode"] or (DIRECT_MODE if member_zones else CHANNEL_MODE)).lower()
    if mode not in MODES:
        raise UsageError(_("There is no mode “{mode}”: choose mode channel (lessons posted in the channel) or mode "
                           "direct (each member's in a direct message).", mode=mode[:40]))
    if member_zones and mode == CHANNEL_MODE:
        raise UsageError(_("A lesson posted in the channel comes at one hour: name its time zone, or choose mode "
                           "direct, where each member gets the lesson at that hour in their own time zone."))
    if mode == CHANNEL_MODE and course.access != FREE:
        raise UsageError(_("“{title}” is a paid course: posted in the channel, every member would read it. Choose "
                           "mode direct: each member gets, in a direct message, the lessons they may open (the free "
                           "preview, then the full course once they have access).", title=course.title))
    now = turn.now
    lessons_of_course = await course_lessons(turn.session, course.id)
    first = lessons_of_course[0].id if lessons_of_course else None
    # Invited again: the members whose lessons stopped with the team's (off, another course or mode).
    again = None if team is None or (team.status, team.course_id, team.mode) == (TEAM_ACTIVE, course.id, mode) else now
    if team is None:
        team = Team(channel=turn.message.channel, chat_id=chat, workspace=workspace_of(turn), course_id=course.id,
                    lesson_time=at, lesson_days=days, mode=mode, timezone=zone.name if zone else "UTC",
                    created_by=turn.message.sender_id, created_at=now, leaderboard_on=True, next_lesson_id=first)
        turn.session.add(team)
    elif team.course_id != course.id:
        team.next_lesson_id = first
    if team.mode == DIRECT_MODE and (team.course_id, team.mode) != (course.id, mode):
        await pause_direct_lessons(turn.session, team)  # the members' lessons of what the team had stop
    team.course_id, team.lesson_time, team.lesson_days, team.mode = course.id, at, days, mode
    team.timezone = zone.name if zone else team.timezone
    team.locale, team.status, team.updated_at = course.language, TEAM_ACTIVE, now
    team.members_synced_at = None  # the channel's members are read again
    await turn.session.flush()
    if (digest_chat := direct_address(turn)) is not None:
        team.digest_chat = digest_chat  # the admin's direct chat, theirs before they write there (their erasure's)
        await link_direct_chat(turn.session, await get_or_create_conversation(turn.session, team.channel, digest_chat),
                               turn.user.id)
    current = await membership(turn.session, team, turn.message.sender_id)
    if current is None or current.status not in (MEMBER_OPTED_OUT, MEMBER_EXCLUDED):  # their own opt-out stands
        await _set_status(turn, team, MEMBER_ACTIVE)
    # The lead is a member before the channel's members are read (which reads newcomers only): their zone, from the
    # profile read with this command, is known like any member's.
    await take_profile_zone(turn.session, turn.user, turn.message.meta.get(TIMEZONE))
    if team.mode == DIRECT_MODE:
        await follow_team_schedule(turn.session, team)
    described = describe(_, team, course)
    done = _("Done. {description} Each member takes the quizzes privately.", description=described)
    if (hours := await hours_where_members_are(_, turn.session, team, now)) is not None:
        done += "\n" + hours
    if team.mode == CHANNEL_MODE and team.next_lesson_id is None:
        done += "\n" + _("Every lesson of it has been posted already: /lessonbot team restart posts it again from "
                         "its first lesson.")
    turn.say(done)
    await announce(turn.session, team, _described_for_team(team, course))
    if team.mode == DIRECT_MODE:
        await invite_members(turn.session, team, again=again)


def team_speaks(team: Team, course: Course | None) -> Translator:
    """The language of what a team sees together (its announcements, lesson posts and leaderboard) and of its
    admin's digest: its course's, whoever set it up (as a learner who picks a course is spoken to in its language);
    the language the team was set up in when its course is gone."""
    return translator(course.language if course is not None else team.locale)


async def team_translator(session: AsyncSession, team: Team) -> Translator:
    """`team_speaks`, its course read."""
    return team_speaks(team, await session.get(Course, team.course_id))


def _described_for_team(team: Team, course: Course) -> str:
    _ = team_speaks(team, course)
    if team.mode == DIRECT_MODE:
        return _("📣 {description} Look for Lessonbot's invitation in your direct messages. /lessonbot team leave to "
                 "opt out.", description=describe(_, team, course))
    return _("📣 {description} Quizzes are private: only you see your answers. /lessonbot team leave to opt out.",
             description=describe(_, team, course))


async def _turn_off(turn: Turn, chat: str, team: Team | None, args: str) -> None:
    await _switch_lessons(turn, team, on=False)


async def _turn_on(turn: Turn, chat: str, team: Team | None, args: str) -> None:
    await _switch_lessons(turn, team, on=True)


async def _switch_lessons(turn: Turn, team: Team | None, *, on: bool) -> None:
    _ = tr(turn)
    team = _existing(turn, team)
    was_on = team.status == TEAM_ACTIVE
    team.status, team.updated_at = (TEAM_ACTIVE if on else TEAM_OFF), turn.now
    if not on and team.mode == DIRECT_MODE:
        await pause_direct_lessons(turn.session, team)  # the members' own lessons stop with the team's
    elif on and not was_on and team.mode == DIRECT_MODE:
        await invite_members(turn.session, team, again=turn.now)  # Start brings their lessons back
    turn.say(_("Team lessons are on again in this channel.") if on
             else _("Team lessons are off in this channel. /lessonbot team on turns them back on."))


def _existing(turn: Turn, team: Team | None) -> Team:
    """The chat's team, for a command that changes it; UsageError when the chat has none."""
    if team is None:
        raise UsageError(tr(turn)("This channel takes no course together yet."))
    return team


async def _leaderboard_switch(turn: Turn, chat: str, team: Team | None, args: str) -> None:
    _ = tr(turn)
    team = _existing(turn, team)
    if args.lower() not in ("on", "off"):
        raise UsageError(_("Usage: /lessonbot team leaderboard on (or off)"))
    team.leaderboard_on, team.updated_at = args.lower() == "on", turn.now
    turn.say(_("The leaderboard is on.") if team.leaderboard_on else _("The leaderboard is off."))


async def _add_admin(turn: Turn, chat: str, team: Team | None, args: str) -> None:
    _ = tr(turn)
    user = args.strip().lstrip("@<").rstrip(">").split("|")[0]
    if not re.fullmatch(r"[UW][A-Z0-9]{2,30}", user):
        raise UsageError(_("Usage: /lessonbot team admin @name (a mention of the member, or their Slack member id "
                           "such as U012ABCDEF)"))
    workspace = workspace_of(turn)
    await add_team_admin(turn.session, turn.message.channel, workspace, f"{workspace}/{user}",
                         by=turn.message.sender_id)
    turn.say(_("{user} may now administer this workspace's team courses.", user=user))


# A member's own choices ----------------------------------------------------------------------------------------------


async def _leave(turn: Turn, team: Team | None) -> None:
    _ = tr(turn)
    if team is None:
        turn.say(_("This channel takes no course together yet."))
        return
    current = await membership(turn.session, team, turn.message.sender_id)
    if current is not None and current.status == MEMBER_EXCLUDED:  # (not theirs to leave: joining again is not)
        turn.say(_excluded(_))
        return
    await _set_status(turn, team, MEMBER_OPTED_OUT)
    flow.leave(turn, "quiz")
    await pause_direct_lessons(turn.session, team, turn.message.sender_id)
    turn.say(_("You opted out of this channel's team course. /lessonbot team join to take part again."))


async def _join(turn: Turn, team: Team | None) -> None:
    _ = tr(turn)
    if team is None:
        turn.say(_("This channel takes no course together yet."))
        return
    current = await membership(turn.session, team, turn.message.sender_id)
    if (current is not None and current.status == MEMBER_EXCLUDED) or _not_a_member_by_standing(turn):
        if current is None:
            await _set_status(turn, team, MEMBER_EXCLUDED)
        turn.say(_excluded(_))
        return
    member = await _set_status(turn, team, MEMBER_ACTIVE)
    if team.mode == DIRECT_MODE and await invite(turn.session, team, member, again=turn.now):
        turn.say(_("Welcome back to the team course: your invitation is in your direct messages with Lessonbot."))
        return
    turn.say(_("Welcome back to the team course."))


async def _hide(turn: Turn, team: Team | None, *, hidden: bool = True) -> None:
    _ = tr(turn)
    member = await membership(turn.session, team, turn.message.sender_id) if team else None
    if team is None or member is None:
        turn.say(_("You are not in this channel's team course."))
        return
    member.hidden = hidden
    turn.say(_("You are off the leaderboard now; your progress still counts for you.") if hidden
             else _("You are on the leaderboard again."))


async def _unhide(turn: Turn, team: Team | None) -> None:
    await _hide(turn, team, hidden=False)


# /leaderboard --------------------------------------------------------------------------------------------------------


async def leaderboard_command(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    chat = group_chat(turn)
    team = await team_in(turn.session, turn.message.channel, chat) if chat else None
    if team is None:
        turn.say(_("Leaderboards are for team courses: type /lessonbot leaderboard in the team's channel."))
        return
    if not team.leaderboard_on:
        turn.say(_("This team's leaderboard is turned off."))
        return
    turn.say(await leaderboard(turn.session, team, _))


async def leaderboard(session: AsyncSession, team: Team, _: Translator) -> str:
    """The team's standings as a message: the top members by points, with lessons, accuracy and streak."""
    course = await session.get(Course, team.course_id)
    lines = [_("🏆 Leaderboard: {title}", title=course.title if course else "?")]
    board = await standings(session, team)
    if not board:
        lines.append(_("Nobody has points yet: the first quiz answers put names here."))
    for place, standing in enumerate(board[:BOARD_LINES], start=1):
        accuracy = f"{round(100 * standing.accuracy)} %" if standing.accuracy is not None else "–"
        lines.append(_.plural("{place}. {name}: {points} points · {n} lesson · {accuracy} right · 🔥 {streak}",
                              "{place}. {name}: {points} points · {n} lessons · {accuracy} right · 🔥 {streak}",
                              standing.lessons_done, place=place, name=standing.name, points=standing.points,
                              accuracy=accuracy, streak=standing.streak))
    return "\n".join(lines)


# The team's lesson, and each member's private quiz -------------------------------------------------------------------


async def announce(session: AsyncSession, team: Team, text: str, *, key: str | None = None,
                   choices: tuple[tuple[str, str], ...] = ()) -> None:
    """Post `text` in the team's chat, for everyone there (its buttons are anyone's to press)."""
    await send_to(session, team, team.chat_id, Text(text, tuple(Choice(label, value) for label, value in choices)),
                  key=key)


async def send_to(session: AsyncSession, team: Team, chat_id: str, reply: Text, *, key: str | None = None,
                  user_id: int | None = None) -> bool:
    """Queue `reply` to a chat of the team's platform, due now (real time: the dispatcher's clock); False when its
    key was queued before. `user_id`: the chat is that member's direct chat, theirs before they write in it."""
    conversation_id = await get_or_create_conversation(session, team.channel, chat_id)
    if user_id is not None:
        await link_direct_chat(session, conversation_id, user_id)
    return bool(await enqueue(session, [OutboxEntry(conversation_id=conversation_id, channel=team.channel,
                                                    chat_id=chat_id, payload=reply.to_payload(), idempotency_key=key)]))


async def lesson_to_post(session: AsyncSession, team: Team) -> Lesson | None:
    """The lesson the team's next post shows; None when there is nothing (more) to post. A lesson the author retired
    since it became the team's next hands over to the live one after the last the team posted (as a learner at it
    goes on at the next live one); one past a paid course's free preview (a course priced since the team chose it)
    is not posted in the channel."""
    lesson = await session.get(Lesson, team.next_lesson_id) if team.next_lesson_id else None
    if lesson is not None and lesson.retired:
        lesson = await _live_after_last_post(session, team)
        team.next_lesson_id = lesson.id if lesson else None
    if lesson is None:
        return None
    course = await session.get(Course, team.course_id)
    if course is None or not free_to_try(course, lesson.position):
        log.warning("a team's next lesson is beyond its paid course's free preview: not posted in the channel",
                    extra={"team_id": team.id, "lesson_id": lesson.id})
        return None
    return lesson


async def _live_after_last_post(session: AsyncSession, team: Team) -> Lesson | None:
    """The live lesson of the team's course after the last live one it posted; its first live lesson when it posted
    none of them."""
    live = await course_lessons(session, team.course_id)
    posted = await posted_lessons(session, team)
    last = next((index for index in range(len(live) - 1, -1, -1) if live[index].id in posted), None)
    following = live[0 if last is None else last + 1:]
    return following[0] if following else None


async def post_lesson(session: AsyncSession, team: Team, lesson: Lesson, local_date: date, *, now: datetime) -> None:
    """The team's lesson for `local_date` (`lesson_to_post`), posted once in its chat with the button to take its quiz
    privately; the team's place moves on to the next lesson."""
    _ = await team_translator(session, team)
    all_lessons = await course_lessons(session, team.course_id)
    number = _number_of(lesson, all_lessons)
    heading = lessons.lesson_heading(_, lesson.title, lesson.minutes, number, len(all_lessons))
    questions = await lesson_questions(session, lesson.id)
    label = _("Quiz me (only you see it)") if questions else _("Mark as done")
    following = next((other for other in all_lessons if other.position > lesson.position), None)
    team.next_lesson_id = following.id if following else None
    team.updated_at = now
    # The post carries the button; the lesson's parts follow in its thread (on a platform with threads).
    post = Text.threaded(heading, lesson.parts, (Choice(label, f"{TAKE}:{team.id}:{lesson.id}"),))
    await send_to(session, team, team.chat_id, post, key=post_key(team, local_date))


def post_key(team: Team, local_date: date) -> str:
    return f"team-lesson:{team.id}:{local_date.isoformat()}"


# Why Slack refuses a lesson post when no later post would fare better (its error codes, the dead letter's
# `refusal`): the channel cannot be posted in any more (archived, gone, the bot taken out of it), the bot may not
# post there (a workspace setting, a read-only or thread-only channel: restricted_action_…, the workspace's key
# management), or the bot may not post in the channel's workspace at all (an org-wide app's access to it taken back,
# its token revoked or expired, the workspace gone)
CHANNEL_GONE = ("is_archived", "channel_not_found", "not_in_channel")
POSTS_REFUSED = ("restricted_action", "ekm_access_denied")
ACCESS_GONE = ("team_access_not_granted", "token_revoked", "token_expired", "invalid_auth", "not_authed",
               "account_inactive")


async def take_back_undelivered(session: AsyncSession, team: Team) -> bool:
    """Before the team's next lesson is posted: if the platform never took the last post (a dead letter) because the
    channel cannot be posted in any more (`CHANNEL_GONE`, `POSTS_REFUSED`, `ACCESS_GONE`), its lesson was seen by no
    one: the team's place goes back to it (the day is left showing none), the team's lessons are turned off (a team
    admin's `team on` starts them again) instead of using up the course on posts no one sees, and the digest's
    reader is told why. Refused for a reason of that post alone (too long, say), the course goes on and the reader
    is told which lesson was not seen. True when the lessons were turned off."""
    last = await last_post(session, team)
    why = await why_undelivered(session, post_key(team, last.local_date)) if last is not None else None
    if last is None or why is None:
        return False
    _ = await team_translator(session, team)
    refusal = why.refusal or ""
    gone, refused, locked_out = refusal in CHANNEL_GONE, refusal.startswith(POSTS_REFUSED), refusal in ACCESS_GONE
    if not (gone or refused or locked_out):
        lesson = await session.get(Lesson, last.lesson_id) if last.lesson_id else None
        code = refusal or why.error[:64]
        if team.digest_chat and lesson is not None:
            await send_to(session, team, team.digest_chat, Text(_(
                "The team lesson “{title}” of {day} was not posted: Slack refused it ({error}). The course goes on "
                "with the next lesson; Lessonbot's administrators find the post among the replies not delivered.",
                title=lesson.title, day=last.local_date.isoformat(), error=code.replace("_", " "))),
                key=f"team-post-refused:{team.id}:{last.local_date.isoformat()}")
        return False
    team.next_lesson_id, last.lesson_id = last.lesson_id, None
    team.status = TEAM_OFF
    log.warning("a team's channel cannot be posted in any more; its lessons are turned off",
                extra={"team_id": team.id, "error": why.error})
    if team.digest_chat:
        await send_to(session, team, team.digest_chat, Text(
            _("The team course's lessons are turned off: Slack says its channel is archived, or Lessonbot is no "
              "longer in it. No lesson was lost. In the channel, /lessonbot team on starts them again.") if gone else
            _("The team course's lessons are turned off: Slack no longer lets Lessonbot into the channel's workspace "
              "(its access there was taken back, or its token revoked). No lesson was lost. Once Lessonbot is "
              "installed there again, /lessonbot team on in the channel starts them again.") if locked_out else
            _("The team course's lessons are turned off: Slack does not let Lessonbot post in its channel (a "
              "workspace setting, or a channel only some may post in). No lesson was lost. Once it may, "
              "/lessonbot team on in the channel starts them again.")))
    return True


def _number_of(lesson: Lesson, live: list[Lesson]) -> int:
    """A lesson's number among its course's live lessons, as learners see it (1 = first); 0 if it is not one."""
    return next((number for number, other in enumerate(live, start=1) if other.id == lesson.id), 0)


async def on_button(turn: Turn, value: str) -> None:
    """A team's button: "Quiz me" on a lesson post, or the digest's "Nudge" in an admin's direct chat."""
    if value.startswith(NUDGE + ":"):
        await nudge_behind(turn, value)
        return
    if value.startswith((START + ":", SKIP + ":")):
        await _answer_invitation(turn, value)
        return
    await _take(turn, value)


async def _take(turn: Turn, value: str) -> None:
    """team:take:TEAM:LESSON pressed in the team's chat: that member's private quiz on the posted lesson."""
    _ = tr(turn)
    team_id, lesson_id = _ids_in(value)
    team = await turn.session.get(Team, team_id) if team_id else None
    lesson = await turn.session.get(Lesson, lesson_id) if lesson_id else None
    if (team is None or lesson is None or team.chat_id != group_chat(turn) or lesson.course_id != team.course_id
            or not await was_posted(turn.session, team, lesson.id)):
        refuse(turn)
        return
    member = await membership(turn.session, team, turn.message.sender_id)
    if member is not None and member.status == MEMBER_EXCLUDED:
        turn.say(_excluded(_))
        return
    if member is not None and member.status in (MEMBER_OPTED_OUT, MEMBER_LEFT):  # (left: no longer in the channel)
        turn.say(_("You are not taking this channel's team course. /lessonbot team join to take part."))
        return
    await _set_status(turn, team, MEMBER_ACTIVE)
    await take_lesson(turn, team, lesson)


def _excluded(_: Translator) -> str:
    return _("The team course is for the workspace's members: guests of the workspace are not part of it.")


def _not_a_member_by_standing(turn: Turn) -> bool:
    """What the platform says of the sender (where the channel read it: channels/slack/routes.py) makes them no
    member of a team course: a guest of the workspace, or a bot."""
    meta = turn.message.meta
    return meta.get(GUEST) is True or meta.get(FROM_A_BOT) is True


def _ids_in(value: str, prefix: str = TAKE) -> tuple[int, int]:
    """(team id, the second number) of "PREFIX:TEAM:N"; (0, 0) for anything else."""
    match = re.fullmatch(re.escape(prefix) + r":(\d{1,18}):(\d{1,18})", value)
    return (int(match[1]), int(match[2])) if match else (0, 0)


async def take_lesson(turn: Turn, team: Team, lesson: Lesson) -> None:
    """The member read the lesson in the channel: it counts as delivered to them; then its quiz, privately."""
    _ = tr(turn)
    learner = await learner_of(turn)
    course = await turn.session.get(Course, team.course_id)
    assert course is not None
    if not await may_access(turn.transaction, turn.user.id, course, lesson.position, now=turn.now):
        number = _number_of(lesson, await course_lessons(turn.session, course.id)) or lesson.position
        turn.say(lessons.locked(_, course, number))
        return
    # The team's course counts for the member; their own course (and its lessons at their hour) stays theirs, unless
    # they have none yet.
    enrollment = await (take_course(turn, learner, course) if learner.course_id is None else joined_to(turn, course))
    progress = await progress_of(turn.session, turn.user.id, lesson.id)
    if progress is not None and progress.completed_at is not None:
        turn.say(_("You have done this lesson already: well done."))
        return
    if progress is None:
        progress = LessonProgress(user_id=turn.user.id, lesson_id=lesson.id, parts_seen=0, started_at=turn.now)
        turn.session.add(progress)
    progress.parts_seen = len(lesson.parts)
    enrollment.current_lesson_id, enrollment.current_part = lesson.id, len(lesson.parts)
    enrollment.updated_at = turn.now
    await turn.session.flush()
    pending = await lessons.unanswered_questions(turn, lesson)
    if not pending:
        await lessons.finish_lesson(turn, lesson)
        return
    total = len(await lesson_questions(turn.session, lesson.id))
    await flow.start(turn, "quiz", {"lesson_id": lesson.id, "queue": pending, "total": total})


# Joining and leaving the chat ----------------------------------------------------------------------------------------


async def membership_changed(turn: Turn) -> None:
    """The platform says someone joined or left the team's chat: enroll them, or pause them. While the team's lessons
    are off, who left is still noted (the platform says it once; turned on again, the team invites and counts those
    still there), and someone who joined is read with the chat's members when the lessons are on again."""
    chat = group_chat(turn)
    team = await team_in(turn.session, turn.message.channel, chat) if chat else None
    if team is None or team.status == TEAM_GONE:
        return
    meta = turn.message.meta
    member = await membership(turn.session, team, turn.message.sender_id)
    if meta.get(MEMBERSHIP) == "left":
        if member is not None and member.status == MEMBER_ACTIVE:
            member.status, member.changed_at = MEMBER_LEFT, turn.now
            await pause_direct_lessons(turn.session, team, member.member)
        return
    if team.status != TEAM_ACTIVE:
        team.members_synced_at = None  # (read, newcomer included, as soon as the lessons are on again)
        return
    if meta.get(FROM_A_BOT) is True:
        return
    if meta.get(GUEST) is True:
        await _set_status(turn, team, MEMBER_EXCLUDED)
        return
    if member is not None and member.status == MEMBER_EXCLUDED and GUEST not in meta:
        return  # left out before, and nothing said of them now: they stay out
    if member is None and GUEST not in meta:
        # Someone new whose standing Slack did not say (users.info refused or slow): the channel's members are read
        # again at once, which reads the newcomer's profile and enrols them (or not: a guest, a bot) as it does all
        team.members_synced_at = None
        return
    if member is not None and member.status == MEMBER_OPTED_OUT:
        return  # their own choice stands when they come back
    member = await _set_status(turn, team, MEMBER_ACTIVE)
    await take_profile_zone(turn.session, turn.user, meta.get(TIMEZONE))  # (none: the team's, when they start)
    _ = tr(turn)
    course = await turn.session.get(Course, team.course_id)
    if team.mode == DIRECT_MODE:
        if await invite(turn.session, team, member, again=turn.now):
            turn.say(_("Welcome! {description} Your invitation is in your direct messages with Lessonbot.",
                       description=describe(_, team, course)))
        else:
            turn.say(_("Welcome! {description} Press /lessonbot team join here to get your invitation.",
                       description=describe(_, team, course)))
        return
    turn.say(_("Welcome! {description} Press the lesson's button to take its quiz privately.",
               description=describe(_, team, course)))


# The direct mode: each member's lessons in their direct chat ---------------------------------------------------------


async def invite_members(session: AsyncSession, team: Team, *, again: datetime | None = None) -> int:
    """Invite every active member the team knows a direct chat of (a team set up, turned to the direct mode, or
    turned on again: `again`); the number invited now (an invitation is sent once per member and course, unless
    `again`)."""
    members = await session.scalars(select(TeamMember).where(
        TeamMember.team_id == team.id, TeamMember.status == MEMBER_ACTIVE, TeamMember.direct_chat.is_not(None)))
    return sum([await invite_unasked(session, team, member, again=again) for member in members])


async def invite_unasked(session: AsyncSession, team: Team, member: TeamMember, *, again: datetime | None = None
                         ) -> bool:
    """`invite`, sent on the bot's own (a member read from the channel, the team set up or turned on again): not to
    a member who stopped everything the bot sends on its own (/stop → Stop the lessons), who asks for it with
    /lessonbot team join; False when not sent."""
    if await _stopped_everything(session, member):
        return False
    return await invite(session, team, member, again=again)


async def _stopped_everything(session: AsyncSession, member: TeamMember) -> bool:
    learner = await session.get(Learner, member.user_id) if member.user_id is not None else None
    return learner is not None and learner.status == STOPPED


async def invite(session: AsyncSession, team: Team, member: TeamMember, *, again: datetime | None = None) -> bool:
    """A direct-mode team's invitation, in the member's direct chat: what the lessons are, the privacy notice, and
    Start / No, thanks. Once per member and course (`again`: once more, now); False when not sent."""
    if team.mode != DIRECT_MODE or team.status != TEAM_ACTIVE or not member.direct_chat:
        return False
    user = await session.get(User, member.user_id) if member.user_id else None
    course = await session.get(Course, team.course_id)
    _ = translator(user.locale) if user else team_speaks(team, course)
    text = "\n\n".join([
        _("👋 Your team takes “{title}” together: a lesson {days} at {time} in your time zone ({zone}), here in our "
          "direct messages, each with a short quiz. Your answers are yours alone; the team sees a leaderboard of "
          "points (/lessonbot team hide in the channel keeps you off it).", title=course.title if course else "?",
          days=days_label(_, team.lesson_days), time=f"{team.lesson_time:%H:%M}",
          zone=((user.timezone if user else None) or team.timezone).replace("_", " ")),
        privacy_notice(_),
    ])
    key = f"team-invite:{team.id}:{team.course_id}:{member.member}" + (f":{again.isoformat()}" if again else "")
    choices = (Choice(_("Start my lessons"), f"{START}:{team.id}:{team.course_id}"),
               Choice(_("No, thanks"), f"{SKIP}:{team.id}:{team.course_id}"))
    return await send_to(session, team, member.direct_chat, Text(text, choices), key=key, user_id=member.user_id)


async def _answer_invitation(turn: Turn, value: str) -> None:
    """Start: the member becomes a learner of the team's course at the team's hour in their own zone, their lessons
    pushed to this direct chat; No, thanks: they opt out."""
    _ = tr(turn)
    starting = value.startswith(START + ":")
    team_id, course_id = _ids_in(value, START if starting else SKIP)
    team = await turn.session.get(Team, team_id) if team_id else None
    if team is None or team.mode != DIRECT_MODE or team.status != TEAM_ACTIVE:
        refuse(turn)
        return
    if course_id not in (0, team.course_id):
        await _earlier_invitation(turn, team)
        return
    if not starting:
        await _set_status(turn, team, MEMBER_OPTED_OUT)
        await pause_direct_lessons(turn.session, team, turn.message.sender_id)
        turn.say(_("No problem: no team lessons for you. /lessonbot team join in the team's channel if you change "
                   "your mind."))
        return
    if group_chat(turn) is not None or not turn.message.private:
        turn.say(_("Press Start in your direct messages with Lessonbot: that is where your lessons will come."))
        return
    member = await membership(turn.session, team, turn.message.sender_id)
    if member is None or member.status not in (MEMBER_ACTIVE, MEMBER_OPTED_OUT):
        turn.say(_("You are not in the team's channel any more: join it again for a new invitation."))
        return
    member = await _set_status(turn, team, MEMBER_ACTIVE)
    member.started_at = turn.now
    learner = await learner_of(turn)
    course = await turn.session.get(Course, team.course_id)
    assert course is not None
    learner.consent_at = learner.consent_at or turn.now  # Start, under the privacy notice, is their consent
    own = (await turn.session.get(Course, learner.course_id)
           if learner.course_id not in (None, course.id) and learner.status == LEARNER_ACTIVE else None)
    if own is not None:  # given back when the team's lessons stop for them (`pause_direct_lessons`)
        member.own_course_id, member.own_lesson_time, member.own_lesson_days = (own.id, learner.lesson_time,
                                                                                learner.lesson_days)
    await (take_course(turn, learner, course) if learner.course_id is None else enroll(turn, learner, course))
    learner.lesson_time, learner.lesson_days = team.lesson_time, team.lesson_days
    turn.user.timezone = turn.user.timezone or team.timezone  # their own (their profile's), else the team's
    await lesson_schedule_changed(turn.session, turn.user.id)
    flow.leave(turn, "onboarding")
    await finish(turn)  # active, lessons pushed here, the schedule told, and the first lesson offered now
    if own is not None:  # one course at a time is a learner's: theirs waits, and they are told so
        turn.say(_("Your own course, “{title}”, waits while you take the team's: your place in it is kept, and it "
                   "comes back, at your own hour, when the team's lessons stop for you (/settings course takes you "
                   "back to it sooner).", title=own.title))


async def _earlier_invitation(turn: Turn, team: Team) -> None:
    """Start or "No, thanks" pressed on an invitation to a course the team took before: neither the course it takes
    now nor an opt-out of it is what the member answered, so nothing changes; they are told which invitation to
    answer."""
    _ = tr(turn)
    course = await turn.session.get(Course, team.course_id)
    turn.say(_("That invitation was for a course your team no longer takes. Your team now takes “{title}”: answer "
               "its invitation (/lessonbot team join in the team's channel brings a new one).",
               title=course.title if course else "?"))


async def pause_direct_lessons(session: AsyncSession, team: Team, member: str | None = None, *,
                               course_id: int | None = None) -> int:
    """The lessons of the team's course (`course_id`: the one it had) pushed to members who started them through the
    team's invitation (`member`: that one, who opted out or left the chat) stop: paused until they /resume on their
    own, or press Start on the team's next invitation; one who had a course of their own when they pressed Start
    gets it back instead (`_give_back_own_course`). Someone taking the course on their own, and a learner who is
    not active (paused, stopped), are left as they are. The number stopped."""
    started = await started_members(session, team, course_id=course_id, member=member)
    for learner, row in started:
        if not await _give_back_own_course(session, team, learner, row):
            learner.status, learner.paused_until = PAUSED, None
    return len(started)


async def _give_back_own_course(session: AsyncSession, team: Team, learner: Learner, row: TeamMember) -> bool:
    """The course the member was taking on their own when they pressed Start, at their own hour, theirs again (their
    place in it was kept), and they are told in their direct chat; False when there was none (or it is gone)."""
    own = await session.get(Course, row.own_course_id) if row.own_course_id else None
    at, days = row.own_lesson_time, row.own_lesson_days
    row.own_course_id, row.own_lesson_time, row.own_lesson_days = None, None, None
    if own is None or own.id == learner.course_id:
        return False
    learner.course_id = own.id
    learner.lesson_time, learner.lesson_days = at or learner.lesson_time, days or learner.lesson_days
    await lesson_schedule_changed(session, learner.user_id)
    user = await session.get(User, learner.user_id)
    if row.direct_chat:
        _ = translator(user.locale) if user else await team_translator(session, team)
        text = "\n".join([
            _("The team's lessons stop here for you. Your own course, “{title}”, is back where you left it.",
              title=own.title),
            schedule_summary(_, learner.lesson_time, learner.lesson_days, user.timezone if user else None),
        ])
        key = f"team-own-course:{team.id}:{row.member}:{row.started_at.isoformat() if row.started_at else ''}"
        await send_to(session, team, row.direct_chat, Text(text), key=key, user_id=learner.user_id)
    return True


async def follow_team_schedule(session: AsyncSession, team: Team) -> None:
    """The team's new hour or days, for the members who started its lessons through its invitation."""
    for learner in await started_learners(session, team):
        learner.lesson_time, learner.lesson_days = team.lesson_time, team.lesson_days
        await lesson_schedule_changed(session, learner.user_id)


# The weekly digest, and the nudge it offers ------------------------------------------------------------------------


async def digest_message(session: AsyncSession, team: Team, *, day: date, now: datetime | None = None) -> Text | None:
    """The team admin's weekly digest on the team's local date `day`: completion and accuracy per lesson posted in
    the DIGEST_DAYS before it, the hardest questions, who is behind (and how many paused their lessons instead: not
    behind), and a button to nudge them, as at `now` (who is paused: the clock's, as the nudge's press reads it).
    None when no lesson was posted."""
    week = await weekly_digest(session, team, since=day - timedelta(days=DIGEST_DAYS), until=day, now=now)
    if not week.lessons:
        return None
    course = await session.get(Course, team.course_id)
    _ = team_speaks(team, course)
    lines = [_.plural("📊 This week in “{title}”: {n} member.", "📊 This week in “{title}”: {n} members.",
                      week.members, title=course.title if course else "?")]
    for line in week.lessons:
        lines.append(_("📘 {title}: {done} of {n} done · {accuracy} right", title=line.title, done=line.done,
                       n=week.members, accuracy=_percent(line.right, line.answered)))
    hardest = [q for q in week.questions if q.answered][:HARDEST]
    if hardest:
        lines.append(_("Hardest questions:"))
        # each named by its prompt's first line of text, whole, its Markdown as the author wrote it (a line cut short
        # would show a cut form's marks raw), for the channel to render
        lines += [f"• {_percent(q.right, q.answered)}: {text_line(q.prompt)}" for q in hardest]
    paused = _.plural("Paused their lessons: {n} member (not counted as behind).",
                      "Paused their lessons: {n} members (not counted as behind).", week.paused)
    if not week.behind:
        lines.append(_("Nobody is behind. 🎉"))
        return Text("\n".join(lines + ([paused] if week.paused else [])))
    names = ", ".join(name for _id, name, _chat in week.behind[:10])
    lines.append(_.plural("Behind: {names} ({n} member).", "Behind: {names} ({n} members).", len(week.behind),
                          names=names))
    if week.paused:
        lines.append(paused)
    label = _.plural("Nudge the {n} behind", "Nudge the {n} behind", len(week.behind))
    return Text("\n".join(lines), (Choice(label, f"{NUDGE}:{team.id}:{day.toordinal()}"),))


def _percent(right: int, answered: int) -> str:
    return f"{round(100 * right / answered)} %" if answered else "–"


async def nudge_behind(turn: Turn, value: str) -> None:
    """The digest's button: a friendly direct message to each member behind, chosen and counted by the nudge bandit
    like any reminder (kind `team`, or `team_direct` in the direct mode); once per member and digest, however often
    it is pressed. Who may not be messaged now (`storage.teams.nudge_held`: paused, stopped, opted out, in their quiet
    hours) is not nudged, and the admin is told how many and why (quiet hours pass: a press later reaches them)."""
    _ = tr(turn)
    team_id, ordinal = _ids_in(value, NUDGE)
    team = await turn.session.get(Team, team_id) if team_id else None
    if team is None or not 1 <= ordinal <= date.max.toordinal():
        refuse(turn)
        return
    recipient = team.digest_chat is not None and direct_address(turn) == team.digest_chat  # the digest was theirs
    if turn.message.sender_id != team.created_by and not recipient and not await may_administer(turn, team.workspace):
        _audit(turn, "nudge", str(team.id), "denied")
        turn.say(_("Only a team admin may nudge the team."))
        return
    day = date.fromordinal(ordinal)
    week = await weekly_digest(turn.session, team, since=day - timedelta(days=DIGEST_DAYS), until=day, now=turn.now)
    outcomes: Counter[str] = Counter()
    for user_id, _name, chat in week.behind:
        if chat:
            outcomes[await _nudge_one(turn.session, team, user_id, chat, key=f"team-nudge:{team.id}:{ordinal}",
                                      now=turn.now)] += 1
    _audit(turn, "nudge", str(team.id), "ok")
    lines = [_.plural("Nudged {n} member, privately.", "Nudged {n} members, privately.", outcomes[QUEUED])]
    if outcomes[HELD_QUIET]:
        lines.append(_.plural("Not nudged now: {n} member is in their quiet hours. Press again later to reach them.",
                              "Not nudged now: {n} members are in their quiet hours. Press again later to reach "
                              "them.", outcomes[HELD_QUIET]))
    if held := outcomes[HELD_PAUSED] + outcomes[HELD_STOPPED] + outcomes[HELD_OPTED_OUT]:
        lines.append(_.plural("Not nudged: {n} member paused or stopped their lessons, or turned messages off.",
                              "Not nudged: {n} members paused or stopped their lessons, or turned messages off.",
                              held))
    turn.say("\n".join(lines))


async def _nudge_one(session: AsyncSession, team: Team, user_id: int, chat: str, *, key: str,
                     now: datetime | None = None) -> str:
    """One member's nudge, in their direct chat `chat`: QUEUED; why not (`storage.teams.nudge_held`); or "" (no such
    person, or nudged under this key before: its `nudge_log` record says so). The direct mode's (`team_direct`)
    brings them to their next lesson in that chat, or, when they never pressed Start, to the invitation's Start."""
    user = await session.get(User, user_id)
    if user is None:
        return ""
    if (held := await nudge_held(session, team, user, chat, now or utcnow())) is not None:
        return held
    key = f"{key}:{user_id}"
    if await session.scalar(select(NudgeLog.id).where(NudgeLog.idempotency_key == key)) is not None:
        return ""  # (its record outlives its reply, which the nightly prune may have deleted: storage.scheduling)
    kind = nudges.TEAM_DIRECT if team.mode == DIRECT_MODE else nudges.TEAM
    recent = list(await session.scalars(
        select(NudgeLog.template).where(NudgeLog.user_id == user_id, NudgeLog.kind == kind)
        .order_by(NudgeLog.id.desc()).limit(3)
    ))
    arms = await bandit.arms_for(session, kind, nudges.templates(kind))
    template = bandit.choose(arms, random.Random(key), recent=recent)
    reply = nudges.nudge(kind, template, language=user.locale, facts=nudges.NudgeFacts())
    if kind == nudges.TEAM_DIRECT and not await _started(session, team, user_id):
        _ = translator(user.locale)
        reply = dataclasses.replace(reply, choices=(Choice(_("Start my lessons"),
                                                           f"{START}:{team.id}:{team.course_id}"),))
    written = await send_to(session, team, chat, reply, key=key, user_id=user_id)
    if written:
        session.add(NudgeLog(user_id=user_id, kind=kind, step=0, template=template, idempotency_key=key,
                             outcome=QUEUED))
    return QUEUED if written else ""


async def _started(session: AsyncSession, team: Team, user_id: int) -> bool:
    """Whether the member has the team's course to go on with: they pressed Start on its invitation, or take it on
    their own."""
    started = await session.scalar(select(TeamMember.started_at).where(TeamMember.team_id == team.id,
                                                                       TeamMember.user_id == user_id))
    learner = await session.get(Learner, user_id)
    return started is not None or (learner is not None and learner.course_id == team.course_id)


ADMIN_COMMANDS = {"set": _set_up, "off": _turn_off, "on": _turn_on, "restart": _restart,
                  "leaderboard": _leaderboard_switch, "admin": _add_admin}
MEMBER_COMMANDS = {"leave": _leave, "join": _join, "hide": _hide, "unhide": _unhide}

COMMANDS = (
    Command("team", team_command, N_("the channel's team course: set it up, opt out, hide from the leaderboard"),
            listed=False),
    Command("leaderboard", leaderboard_command, N_("the team's leaderboard"), listed=False),
)
