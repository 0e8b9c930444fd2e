"""A team's standings as its members live them: a streak counts while it goes on, on each member's own local date."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

from dialogs.i18n import translator
from dialogs.teams import leaderboard
from storage.db import Database
from storage.learners import Learner
from storage.teams import Team, TeamMember, standings
from tests.scheduler.support import add_learner, sample_course


async def test_a_streak_that_ended_shows_none_and_one_going_on_shows_on_the_members_own_date(database_url):
    db = Database(database_url)
    try:
        course = await sample_course(db)
        now = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)  # Sunday 22:00 in New York, Monday in Tokyo
        lapsed = await add_learner(db, zone="America/New_York", course_id=course, streak_days=12,
                                   last_active_on=(now - timedelta(days=20)).date())
        # active on Sunday 6 December, their own yesterday in Tokyo (so it still counts) and today in New York
        going = await add_learner(db, zone="Asia/Tokyo", course_id=course, streak_days=5,
                                  last_active_on=(now - timedelta(days=1)).date())
        # a Monday-to-Friday member who last learned on Friday 4 December: held over the weekend, Monday in Tokyo
        weekdays = await add_learner(db, zone="Asia/Tokyo", course_id=course, streak_days=3, days="12345",
                                     last_active_on=(now - timedelta(days=3)).date())
        async with db.transaction() as session:
            team = Team(channel="slack", chat_id="T01:C02", workspace="T01", course_id=course, lesson_time=time(9),
                        lesson_days="12345", timezone="Europe/Lisbon", created_by="x")
            session.add(team)
            await session.flush()
            for number, user_id in enumerate((lapsed, going, weekdays)):
                session.add(TeamMember(team_id=team.id, member=f"T01/U0{number}", user_id=user_id))
                (await session.get(Learner, user_id)).points = 50 - number
            await session.flush()
            board = await standings(session, team, now=now)
            shown = await leaderboard(session, team, translator("en"))
        assert [standing.streak for standing in board] == [0, 5, 3]  # not the 12 days that ended weeks ago
        assert "🔥 12" not in shown
    finally:
        await db.dispose()
