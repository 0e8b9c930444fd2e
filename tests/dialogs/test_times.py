"""Time zones, times of day and weekdays as typed; lesson times and streaks across daylight-saving changes."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from bot.text import fold
from dialogs.lessons import next_lesson_time
from dialogs.times import read_days, read_quiet_hours, read_time, read_zone, several_zones
from scheduler.planner import lesson_dates
from storage.learners import Learner, User, current_streak, in_quiet_hours, record_activity, zone_for


@pytest.mark.parametrize(("typed", "name"), [
    ("Lisbon", "Europe/Lisbon"), ("lisboa", "Europe/Lisbon"), ("America/Sao_Paulo", "America/Sao_Paulo"),
    ("São Paulo", "America/Sao_Paulo"), ("new york", "America/New_York"), ("Nueva York", "America/New_York"),
    ("europe/berlin", "Europe/Berlin"), ("Porto, Portugal", "Europe/Lisbon"), ("PST", "America/Los_Angeles"),
    ("UTC+5:30", "UTC+05:30"), ("GMT-3", "UTC-03:00"), ("+02:00", "UTC+02:00"), ("utc", "UTC"),
    ("UTC-0930", "UTC-09:30"),
    ("Buenos Aires", "America/Argentina/Buenos_Aires"), ("Kolkata", "Asia/Kolkata"), ("Mumbai", "Asia/Kolkata"),
])
def test_zones_as_people_type_them(typed, name):
    zone = read_zone(typed)
    assert zone is not None and zone.name == name
    assert zone_for(zone.name).utcoffset(datetime(2026, 1, 1)) is not None


@pytest.mark.parametrize("typed", ["Narnia", "UTC+15", "GMT+5:20", "", "tomorrow", "12345"])
def test_what_is_not_a_zone(typed):
    assert read_zone(typed) is None


def test_fixed_offsets_round_trip():
    assert zone_for("UTC+05:30").utcoffset(None) == timedelta(hours=5, minutes=30)
    assert zone_for("UTC-03:00").utcoffset(None) == timedelta(hours=-3)
    assert zone_for("Not/AZone") is timezone.utc and zone_for(None) is timezone.utc


@pytest.mark.parametrize(("typed", "expected"), [
    ("8", time(8)), ("08:30", time(8, 30)), ("8.30", time(8, 30)), ("20h", time(20)), ("7:30 pm", time(19, 30)),
    ("12am", time(0)), ("12 pm", time(12)), ("noon", time(12)), ("mañana", time(8)), ("8 de la tarde", time(20)),
    ("time:12:30", time(12, 30)), ("24:00", time(0)),
    # twelve at night is midnight, as twelve in the afternoon is noon
    ("12 de la noche", time(0)), ("12 da noite", time(0)), ("12 de la tarde", time(12)), ("11 de la noche", time(23)),
])
def test_times_of_day(typed, expected):
    assert read_time(typed) == expected


@pytest.mark.parametrize("typed", ["25:00", "7:60", "13pm", "soon", "0am"])
def test_what_is_not_a_time(typed):
    assert read_time(typed) is None


@pytest.mark.parametrize(("typed", "days"), [
    ("every day", "1234567"), ("weekdays", "12345"), ("Fines de semana", "67"), ("mon, wed and fri", "135"),
    ("Monday to Friday", "12345"), ("lunes a viernes", "12345"), ("fri-mon", "1567"), ("sáb y dom", "67"),
    ("days:135", "135"),
    # a range after a single day starts at its own first day, not at the latest day named so far
    ("fri, mon to wed", "1235"), ("dom, mar a jue", "2347"), ("sábado, lunes a miércoles", "1236"),
])
def test_days(typed, days):
    assert read_days(typed) == days


def test_bad_days_and_quiet_hours():
    assert read_days("mon, blursday") is None and read_days("") is None
    assert read_quiet_hours("22:00-07:00") == (time(22), time(7))
    assert read_quiet_hours("none") is False and read_quiet_hours("sometimes") is None


def person(zone: str) -> User:
    return User(id=1, timezone=zone)


def learner(at: time | None = time(8), days: str = "1234567") -> Learner:
    return Learner(user_id=1, lesson_time=at, lesson_days=days, streak_days=0, best_streak=0)


def test_lesson_time_across_spring_forward_in_lisbon():
    # Europe/Lisbon moves from 01:00 to 02:00 on 2026-03-29: a lesson at 08:00 local is 08:00 UTC the day before
    # and 07:00 UTC on the day itself.
    user, who = person("Europe/Lisbon"), learner(time(8))
    before = next_lesson_time(who, user, datetime(2026, 3, 28, 9, 0, tzinfo=timezone.utc))
    assert before == datetime(2026, 3, 29, 7, 0, tzinfo=timezone.utc)
    assert next_lesson_time(who, user, datetime(2026, 3, 27, 9, 0, tzinfo=timezone.utc)) == datetime(
        2026, 3, 28, 8, 0, tzinfo=timezone.utc)


def test_a_lesson_time_the_clock_skips_or_repeats():
    # New York skips 02:00–03:00 on 2026-03-08 and repeats 01:00–02:00 on 2026-11-01.
    user = person("America/New_York")
    skipped = next_lesson_time(learner(time(2, 30)), user, datetime(2026, 3, 8, 5, 0, tzinfo=timezone.utc))
    assert skipped == datetime(2026, 3, 8, 7, 30, tzinfo=timezone.utc)  # 02:30 at the old offset = 03:30 EDT
    repeated = next_lesson_time(learner(time(1, 30)), user, datetime(2026, 11, 1, 4, 0, tzinfo=timezone.utc))
    assert repeated == datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc)  # the first 01:30 (EDT), once


def test_lesson_days_are_local_days():
    # Sunday 23:30 UTC is already Monday 08:30 in Tokyo: a weekday learner there gets Monday's lesson next day.
    user, who = person("Asia/Tokyo"), learner(time(8), "12345")
    sunday_night_utc = datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)  # Mon 08:30 JST, just past 08:00
    assert next_lesson_time(who, user, sunday_night_utc) == datetime(2026, 11, 23, 23, 0, tzinfo=timezone.utc)
    assert next_lesson_time(learner(None), user, sunday_night_utc) is None


def test_streaks_count_local_days_even_across_dst():
    user, who = person("America/New_York"), learner()
    # 2026-11-01 is 25 hours long in New York: activity late that evening and early the next is two days.
    record_activity(who, user, datetime(2026, 10, 31, 23, 0, tzinfo=timezone.utc))  # Oct 31, 19:00 EDT
    record_activity(who, user, datetime(2026, 11, 2, 4, 30, tzinfo=timezone.utc))  # Nov 1, 23:30 EST
    record_activity(who, user, datetime(2026, 11, 2, 5, 30, tzinfo=timezone.utc))  # Nov 2, 00:30 EST
    assert (who.streak_days, who.last_active_on) == (3, date(2026, 11, 2))
    record_activity(who, user, datetime(2026, 11, 2, 20, 0, tzinfo=timezone.utc))  # same local day
    assert who.streak_days == 3
    assert current_streak(who, user, datetime(2026, 11, 4, 4, 59, tzinfo=timezone.utc)) == 3  # Nov 3, 23:59
    assert current_streak(who, user, datetime(2026, 11, 4, 5, 0, tzinfo=timezone.utc)) == 0  # Nov 4: broken
    record_activity(who, user, datetime(2026, 11, 5, 12, 0, tzinfo=timezone.utc))
    assert (who.streak_days, who.best_streak) == (1, 3)


def test_a_streak_holds_through_days_that_are_not_lesson_days():
    user, weekdays = person("Europe/Lisbon"), learner(days="12345")
    for day in (4, 5):  # Thursday and Friday, 2026-06-04 and 05
        record_activity(weekdays, user, datetime(2026, 6, day, 12, 0, tzinfo=timezone.utc))
    assert current_streak(weekdays, user, datetime(2026, 6, 7, 22, 59, tzinfo=timezone.utc)) == 2  # Sunday 23:59
    assert current_streak(weekdays, user, datetime(2026, 6, 8, 22, 59, tzinfo=timezone.utc)) == 2  # Monday 23:59
    assert current_streak(weekdays, user, datetime(2026, 6, 8, 23, 0, tzinfo=timezone.utc)) == 0  # Tuesday: broken
    record_activity(weekdays, user, datetime(2026, 6, 8, 7, 0, tzinfo=timezone.utc))  # Monday
    assert weekdays.streak_days == 3
    saturday = learner(days="12345")
    for day in (5, 6, 8):  # Friday, Saturday (a day off counts when learned on), Monday
        record_activity(saturday, user, datetime(2026, 6, day, 12, 0, tzinfo=timezone.utc))
    assert saturday.streak_days == 3
    every_day = learner()
    for day in (5, 8):  # Friday, then Monday: the weekend's lesson days went by
        record_activity(every_day, user, datetime(2026, 6, day, 12, 0, tzinfo=timezone.utc))
    assert (every_day.streak_days, every_day.best_streak) == (1, 1)
    once_a_week = learner(days="3")  # Wednesdays: the next is a week on
    record_activity(once_a_week, user, datetime(2026, 6, 3, 12, 0, tzinfo=timezone.utc))
    assert current_streak(once_a_week, user, datetime(2026, 6, 10, 22, 0, tzinfo=timezone.utc)) == 1
    assert current_streak(once_a_week, user, datetime(2026, 6, 10, 23, 0, tzinfo=timezone.utc)) == 0


def test_the_same_utc_day_is_two_days_in_tokyo():
    user, who = person("Asia/Tokyo"), learner()
    record_activity(who, user, datetime(2026, 6, 1, 1, 0, tzinfo=timezone.utc))  # June 1, 10:00 JST
    record_activity(who, user, datetime(2026, 6, 1, 16, 0, tzinfo=timezone.utc))  # June 2, 01:00 JST
    assert who.streak_days == 2


def test_quiet_hours_wrap_midnight_in_local_time():
    user, who = person("Europe/Lisbon"), learner()
    who.quiet_start, who.quiet_end = time(22), time(7)
    assert in_quiet_hours(who, user, datetime(2026, 7, 1, 21, 30, tzinfo=timezone.utc))  # 22:30 WEST
    assert in_quiet_hours(who, user, datetime(2026, 1, 1, 6, 30, tzinfo=timezone.utc))  # 06:30 WET
    assert not in_quiet_hours(who, user, datetime(2026, 7, 1, 6, 30, tzinfo=timezone.utc))  # 07:30 WEST


def test_a_learner_who_moves_west_over_the_date_line_after_the_weeks_lesson_is_promised_the_next_one():
    # Ann (UTC+14) has lessons on Mondays at 09:00: Monday 23 November's comes on Sunday 22nd at 19:00 UTC, and the
    # planner decides that date. At 19:30 UTC she moves to UTC-12, where it is Sunday morning again; Monday 23rd is
    # decided already, so the planner's next push is on Monday 30th, eight local days ahead: that is the promise.
    user, who = person("UTC-12:00"), learner(time(9), "1")
    moved = datetime(2026, 11, 22, 19, 30, tzinfo=timezone.utc)
    decided = {date(2026, 11, 23)}
    pushed = [day for day in lesson_dates(moved, moved + timedelta(days=9), zone=zone_for("UTC-12:00"), at=time(9),
                                          days="1") if day not in decided]
    assert pushed[0] == date(2026, 11, 30)
    assert next_lesson_time(who, user, moved, decided=decided) == datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("typed", "name"), [
    ("India", "Asia/Kolkata"), ("Germany", "Europe/Berlin"), ("Alemania", "Europe/Berlin"), ("japón", "Asia/Tokyo"),
    ("UK", "Europe/London"), ("Reino Unido", "Europe/London"), ("Francia", "Europe/Paris"), ("Perú", "America/Lima"),
    ("Argentina", "America/Argentina/Buenos_Aires"), ("Polonia", "Europe/Warsaw"),
    # the tz database's old names of countries ("Japan", "Poland") are links: the country's own zone is stored
    ("Japan", "Asia/Tokyo"), ("Poland", "Europe/Warsaw"), ("Egypt", "Africa/Cairo"), ("Iceland", "Atlantic/Reykjavik"),
    ("Islandia", "Atlantic/Reykjavik"), ("Libia", "Africa/Tripoli"), ("Singapore", "Asia/Singapore"),
    # one official time, though zone.tab lists Asia/Urumqi too
    ("China", "Asia/Shanghai"),
])
def test_a_country_with_one_clock_is_its_zone(typed, name):
    zone = read_zone(typed)
    assert zone is not None and zone.name == name and fold(zone.label) == fold(typed)


@pytest.mark.parametrize("typed", ["USA", "Estados Unidos", "Brazil", "Russia", "Rusia", "Canada", "España", "Spain",
                                   "Portugal", "portugal"])
def test_a_country_with_several_clocks_is_named_back(typed):
    assert read_zone(typed) is None and several_zones(typed) == typed
    assert several_zones("Lisbon") is None and several_zones("India") is None and several_zones("Narnia") is None


@pytest.mark.parametrize(("typed", "name"), [
    ("Eire", "Europe/Dublin"), ("Hongkong", "Asia/Hong_Kong"), ("PRC", "Asia/Shanghai"), ("ROK", "Asia/Seoul"),
    ("NZ", "Pacific/Auckland"), ("GB", "Europe/London"), ("US/Eastern", "America/New_York"),
    ("Asia/Calcutta", "Asia/Kolkata"), ("asia/calcutta", "Asia/Kolkata"), ("Europe/Kiev", "Europe/Kyiv"),
    # a zone of its own that zone.tab lists stays as it is
    ("Europe/Amsterdam", "Europe/Amsterdam"), ("Asia/Kuwait", "Asia/Kuwait"),
])
def test_an_old_name_of_a_zone_is_stored_as_its_current_name(typed, name):
    """The tz database keeps its old names as links to the zones now named (its "backward" names): the current name
    is stored and shown, so a learner's settings never show "Eire" or "US/Eastern"."""
    zone = read_zone(typed)
    assert zone is not None and zone.name == name
    assert zone.label == name.rsplit("/", 1)[-1].replace("_", " ")
