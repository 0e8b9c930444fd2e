"""Onboarding: consent, name, time zone (confirmed with the local time), lesson time and days, course, daily goal.

Started by /start for a learner who is not set up yet; a learner who wanders off finds it where they left it
(/start again, or any answer to the last question). Each step's answer is checked, with help on a bad one.
The steps are shared with /settings: there `data["after"]` names the step that follows a changed item.
"""

from __future__ import annotations

import re
from datetime import time

from sqlalchemy import ColumnElement, or_, select

from bot.messages import LANGUAGE, START_LINK
from bot.text import code_letters, fold, person_name
from dialogs import flow
from dialogs.flow import DONE, Flow, Invalid, NotAnAnswer, Step
from dialogs.i18n import Translator
from dialogs.learner import (
    activate,
    adopt_language,
    enroll,
    is_set_up,
    learner_of,
    local_now,
    mark_home,
    name_of,
    tr,
)
from dialogs.prices import course_label
from dialogs.times import EVERY_DAY, WEEKDAYS, WEEKENDS, read_days, read_time, read_zone, several_zones
from dialogs.turn import Exchange, Turn
from storage.courses import Course, Enrollment, Lesson
from storage.learners import Learner, lesson_schedule_changed, zone_for
from storage.payments import access_code

YES = {"yes", "y", "yeah", "yep", "ok", "okay", "sure", "agree", "i agree", "of course", "si", "vale", "claro",
       "de acuerdo", "acepto", "sim", "claro que si", "right", "correct", "correcto", "certo", "exacto"}
NO = {"no", "n", "nope", "no thanks", "no thank you", "no gracias", "nao", "nao obrigado", "wrong", "incorrect"}


def yes_or_no(text: str, prefix: str) -> bool | None:
    """Yes, no, or neither: typed in either language, or a button's value ("zone:yes", "zone:yes:Europe/Lisbon")."""
    typed = fold(text).strip(" .!")
    kind, _, answer = typed.partition(":")
    if kind == prefix:
        typed = f"{prefix}:{answer.partition(':')[0]}"
    if typed in (f"{prefix}:yes",) or typed in YES:
        return True
    if typed in (f"{prefix}:no",) or typed in NO:
        return False
    return None


def _after(data: flow.Data, following: str) -> str:
    """The next step: the onboarding order, or where /settings wants to go after one item."""
    return data.get("after") or following


# Consent -------------------------------------------------------------------------------------------------------------


async def ask_consent(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    name = name_of(x) or data.get("platform_name") or ""
    x.say(
        _("Hi {name}! I'm Lessonbot. I send you a short lesson every day, quiz you so it sticks, "
          "and answer your questions about the course.", name=name).replace(" !", "!")
        + "\n\n" + _("Send /help to see everything I can do.") + "\n\n" + privacy_notice(_)
        + "\n\n" + _("Is that OK with you?"),
        choices=[(_("Yes, let's start"), "consent:yes"), (_("No, thanks"), "consent:no"),
                 (_("Show commands"), "/help")],
    )


def privacy_notice(_: Translator) -> str:
    return _(
        "Your privacy: I keep your name, time zone, lesson times, language and progress, only to run your lessons. "
        "Send /stop at any time to stop the lessons, or to delete everything I keep about you."
    )


async def answer_consent(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    agreed = yes_or_no(text, "consent")
    if agreed is None:
        raise Invalid(_("Please answer yes or no: may I keep these details to run your lessons?"))
    if not agreed:
        turn.say(_("No problem: I won't keep anything. Send /start whenever you change your mind."))
        return DONE
    learner = await learner_of(turn)
    learner.consent_at = turn.now
    if data.get("code"):  # the access code of the link they came by: redeemed now they agreed
        await redeem_linked_code(turn, data.pop("code"))
    return "name"


# Name ----------------------------------------------------------------------------------------------------------------


async def ask_name(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    suggestion = x.user.display_name or data.get("platform_name")
    choices = [(suggestion, f"name:{suggestion}")] if suggestion and read_name(suggestion) else []
    x.say(_("What should I call you?"), choices=choices)


_NAME_LETTER = re.compile(r"[^\W\d_]")
# Words a message opens with that make it a greeting, not a name: someone coming back to the name question ("Hello
# again, sorry I got busy")
_GREETINGS = {"hi", "hello", "hey", "hiya", "hola", "buenas", "buenos"}


def read_name(text: str) -> str | None:
    name = person_name(text.removeprefix("name:"))
    if not 1 <= len(name) <= 40 or not _NAME_LETTER.search(name) or name.startswith("/"):
        return None
    if re.search(r"https?://|www\.|@\w+\.\w", name, re.IGNORECASE):
        return None
    return name


async def answer_name(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    if turn.message.choice is None and flow.looks_like_question(text):
        raise NotAnAnswer()
    if (turn.message.choice is None and not data.get("after")  # (in /settings, a name is only a name)
            and (words := re.findall(r"\w+", fold(text))) and words[0] in _GREETINGS):
        raise Invalid(_("Welcome back! Let's finish setting you up."))
    name = read_name(text)
    if name is None:
        raise Invalid(_("Please send just the name you'd like me to use: up to 40 characters, with letters in it."))
    typed = read_name(turn.message.text)
    if typed is not None and typed != name and typed.casefold() == name.casefold():
        name = typed  # the offered name matched only by case: keep it as the person wrote it ("Ann", not "ann")
    turn.user.display_name = name
    return _after(data, "timezone")


# Time zone -----------------------------------------------------------------------------------------------------------


async def ask_zone(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    x.say(_("Which time zone are you in? Send your city (like Lisbon), a zone name (like America/Sao_Paulo) "
            "or an offset from UTC (like UTC+5:30), so your lessons come at your local hour."))


async def answer_zone(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    zone = read_zone(text)
    country = several_zones(text) if zone is None else None
    if country is not None:
        raise Invalid(_("{country} has more than one time zone. Which city are you in? Send its name, or the nearest "
                        "big city's.", country=country[:60]))
    if zone is None:
        raise Invalid(_("I couldn't find a time zone for “{text}”. Try the nearest big city (Madrid, Chicago, "
                        "Tokyo), a zone name like Europe/Berlin, or an offset like UTC-3.", text=text[:60]))
    data["zone"], data["zone_label"] = zone.name, zone.label
    return "zone_confirm"


async def ask_zone_confirm(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    now = x.now.astimezone(zone_for(data["zone"]))
    x.say(
        _("In {place} it is {time} on {weekday} now. Is that your time?",
          place=data["zone_label"], time=f"{now:%H:%M}", weekday=weekday_name(_, now.isoweekday())),
        choices=[(_("Yes, that's right"), f"zone:yes:{data['zone']}"), (_("No, change it"), f"zone:no:{data['zone']}")],
    )


def zone_asked(data: flow.Data) -> str:
    """The zone whose time the confirmation shows (its buttons name it)."""
    return str(data.get("zone", ""))


async def answer_zone_confirm(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    confirmed = yes_or_no(text, "zone")
    if confirmed is None:
        if read_zone(text) is not None or several_zones(text) is not None:  # another place: confirm that one
            return await answer_zone(turn, data, text)
        raise Invalid(_("Please answer yes or no, or send another city or offset."))
    if not confirmed:
        return "timezone"
    turn.user.timezone = data.pop("zone")
    await lesson_schedule_changed(turn.session, turn.user.id)
    data.pop("zone_label", None)
    return _after(data, "lesson_time")


# Lesson time and days ------------------------------------------------------------------------------------------------


async def ask_lesson_time(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    x.say(
        _("What time of day suits you for a lesson? Pick one or type a time, like 7:15 or 9pm."),
        choices=[(_("Morning, 08:00"), "time:08:00"), (_("Lunchtime, 12:30"), "time:12:30"),
                 (_("Evening, 19:00"), "time:19:00")],
    )


async def answer_lesson_time(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    at = read_time(text)
    if at is None:
        raise Invalid(_("I couldn't read “{text}” as a time. Try 08:00, 7:30, 6pm or 18h.", text=text[:40]))
    learner = await learner_of(turn)
    learner.lesson_time = at
    await lesson_schedule_changed(turn.session, turn.user.id)
    return _after(data, "days")


async def ask_days(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    learner = await learner_of(x)
    question = _("On which days? Pick one or name them, like “mon, wed, fri”.")
    if learner.lesson_time is not None and not data.get("after"):  # the time was just chosen: say it back
        question = _("Lessons at {time}, then.", time=f"{learner.lesson_time:%H:%M}") + " " + question
    x.say(
        question,
        choices=[(_("Every day"), f"days:{EVERY_DAY}"), (_("Weekdays"), f"days:{WEEKDAYS}"),
                 (_("Weekends"), f"days:{WEEKENDS}")],
    )


async def answer_days(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    days = read_days(text)
    if days is None:
        raise Invalid(_("I couldn't read those days. Name them (“mon, wed, fri”, “monday to friday”) "
                        "or say “every day”, “weekdays” or “weekends”."))
    learner = await learner_of(turn)
    learner.lesson_days = days
    await lesson_schedule_changed(turn.session, turn.user.id)
    if data.get("after"):
        return data["after"]
    courses = await live_courses(turn)
    asked_for = find_course(courses, data.pop("course", ""))
    if asked_for is not None:  # named before onboarding began (a Rasa assistant's enroll action)
        await take_course(turn, learner, asked_for)
        return "goal"
    return "course" if courses else "goal"


# Course --------------------------------------------------------------------------------------------------------------


def offered_to(x: Exchange) -> ColumnElement[bool]:
    """The courses offered to the person: the published ones, and those they are in (`lessonbot course unpublish`)."""
    theirs = select(Enrollment.id).where(Enrollment.course_id == Course.id, Enrollment.user_id == x.user.id).exists()
    return or_(Course.published.is_(True), theirs)


async def live_courses(x: Exchange) -> list[Course]:
    """Courses offered to the person (`offered_to`) with at least one live lesson, by title."""
    has_lessons = select(Lesson.id).where(Lesson.course_id == Course.id, Lesson.retired.is_(False)).exists()
    return list(await x.session.scalars(select(Course).where(has_lessons, offered_to(x)).order_by(Course.title)))


async def ask_course(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    courses = await live_courses(x)
    if not courses:
        x.say(_("There are no courses to choose from yet. I'll be here when one is added."))
        return
    x.say(_("Which course would you like to take?"),
          choices=[(course_label(_, course), f"course:{course.slug}") for course in courses])


async def answer_course(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    courses = await live_courses(turn)
    chosen = find_course(courses, text.removeprefix("course:"))
    if chosen is None:
        raise Invalid(_("Please pick one of the courses above (press its button, or type its number or title)."))
    await take_course(turn, await learner_of(turn), chosen)
    return _after(data, "goal")


def find_course(courses: list[Course], typed: str) -> Course | None:
    """The course `typed` names: its id or title, its number in the list, or a word of its title that only it has
    ("passwords")."""
    typed = fold(typed)
    if not typed:
        return None
    chosen = next((c for c in courses if typed in (fold(c.slug), fold(c.title))), None)
    if chosen is None and typed.isdigit() and 1 <= int(typed) <= len(courses):
        chosen = courses[int(typed) - 1]
    if chosen is None and len(typed) >= 3:
        named = [c for c in courses if typed in fold(c.title).split() or typed in fold(c.slug).split("-")]
        chosen = named[0] if len(named) == 1 else None
    return chosen


async def take_course(turn: Turn, learner: Learner, course: Course) -> Enrollment:
    """Enroll in the chosen course; its language becomes theirs unless the platform said otherwise (or they chose
    one)."""
    if turn.message.meta.get(LANGUAGE) is None:
        adopt_language(turn, learner, course.language)
    return await enroll(turn, learner, course)


# Daily goal ----------------------------------------------------------------------------------------------------------

_GOALS = {"1": 1, "one": 1, "uno": 1, "una": 1, "un": 1, "um": 1, "uma": 1, "2": 2, "two": 2, "dos": 2, "dois": 2,
          "3": 3, "three": 3, "tres": 3, "tres lecciones": 3}


async def ask_goal(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    x.say(
        _("How much would you like to do each day?"),
        choices=[(_("1 lesson (about 5 minutes)"), "goal:1"), (_("2 lessons"), "goal:2"),
                 (_("3 lessons"), "goal:3")],
    )


async def answer_goal(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    typed = fold(text).removeprefix("goal:")
    words = typed.split()
    goal = _GOALS.get(typed) or (_GOALS.get(words[0]) if words else None)
    if goal is None:
        raise Invalid(_("Please pick 1, 2 or 3 lessons a day."))
    learner = await learner_of(turn)
    learner.daily_goal = goal
    if data.get("after"):
        return data["after"]
    await finish(turn)
    return DONE


async def finish(x: Exchange) -> None:
    """Onboarding done: the learner is active and hears what was set up."""
    _ = tr(x)
    learner = await learner_of(x)
    activate(learner)
    mark_home(x, learner)
    course = await x.session.get(Course, learner.course_id) if learner.course_id else None
    lines = [_("All set, {name}!", name=name_of(x)), schedule_summary(_, learner.lesson_time, learner.lesson_days,
                                                                     x.user.timezone)]
    if course is not None:
        lines.append(_("Course: {title}.", title=course.title))
    lines.append(_("Change any of this with /settings. Another language? Send /language."))
    choices = [(_("Start my first lesson"), "lesson:next"), (_("Later"), "lesson:later")] if course else []
    x.say("\n".join(lines), choices=choices)


def schedule_summary(_: Translator, at: time | None, days: str, zone: str | None) -> str:
    return _("Lessons at {time} on {days} ({zone}).", time=f"{at:%H:%M}" if at else "—",
             days=days_label(_, days), zone=zone or "UTC")


WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def weekday_name(_: Translator, isoweekday: int) -> str:
    return [_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"),
            _("Sunday")][isoweekday - 1]


def days_label(_: Translator, days: str) -> str:
    if days == EVERY_DAY:
        return _("every day")
    if days == WEEKDAYS:
        return _("weekdays")
    if days == WEEKENDS:
        return _("weekends")
    return ", ".join(weekday_name(_, int(d)) for d in days)


# Starting ------------------------------------------------------------------------------------------------------------


async def begin(turn: Turn, link: str = "") -> None:
    """/start for a learner not set up yet: start onboarding, or pick it up where they left it. `link`: what followed
    /start (the payload of a start link, t.me/<bot>?start=PAYLOAD): a course's id, which the set-up takes instead of
    asking, or an access code, redeemed once they agree (and its course taken); anything else (a referral) is let
    be. Where the link is not in the words, the channel says it (`meta[START_LINK]`: the web chat's page opened as
    /?start=PAYLOAD), whatever the first message says."""
    learner = await learner_of(turn)
    linked = await _linked(turn, link or turn.message.meta.get(START_LINK, ""))
    if linked.get("code") and learner.consent_at is not None:
        await redeem_linked_code(turn, linked.pop("code"))
    if not flow.is_active(turn, "onboarding") and (kept := flow.take_up(turn, "onboarding")) is not None:
        flow.enter(turn, "onboarding", kept["data"], step=kept["step"])  # stopped part way: taken up where it was
    if flow.is_active(turn, "onboarding"):
        entry = flow.current(turn)
        while entry is not None and entry["name"] != "onboarding":  # drop what was started on top of it
            flow.leave(turn, entry["name"])
            entry = flow.current(turn)
        _ = tr(turn)
        if learner.consent_at is not None:
            turn.say(_("Welcome back! Let's finish setting you up."))
        if entry is None or not linked:
            await flow.resume(turn)
            return
        step = entry["step"]
        if step in ("course", "goal") and linked.get("course"):  # past the days, where the course is read: take it
            course = find_course(await live_courses(turn), linked.pop("course"))
            if course is not None:
                await take_course(turn, learner, course)
                step = "goal"
        await flow.start(turn, "onboarding", {**entry["data"], **linked}, step=step)
        return
    platform_name = turn.message.sender_name
    step = "name" if learner.consent_at is not None else "consent"
    data: flow.Data = {"platform_name": platform_name} if platform_name else {}
    await flow.start(turn, "onboarding", {**data, **linked}, step=step)


async def _linked(turn: Turn, link: str) -> flow.Data:
    """What a start link's payload asks of the set-up: {"course": id} for a course offered to them, and an access
    code's course with {"code": code}; nothing for anything else."""
    link = link.strip()
    if not link or link.isdigit():  # (a number would name a course by its place in a list they have not seen)
        return {}
    course = find_course(await live_courses(turn), link)
    if course is not None:
        return {"course": course.slug}
    code = await access_code(turn.session, code_letters(link))
    if code is None:
        return {}
    coded = await turn.session.get(Course, code.course_id)
    return {"course": coded.slug, "code": link} if coded is not None and coded in await live_courses(turn) else \
        {"code": link}


async def redeem_linked_code(turn: Turn, code: str) -> None:
    """The access code of a start link, redeemed as /redeem CODE does."""
    from dialogs.access_codes import redeem_command  # (it opens lessons, which send one not set up here)

    await redeem_command(turn, code)


async def require_set_up(x: Exchange, *, course: str = "") -> bool:
    """True when the learner is set up; otherwise say so and carry on with onboarding. `course`: the course they
    asked for, taken when onboarding comes to the course (instead of asking), if it names one."""
    learner = await learner_of(x)
    if is_set_up(learner):
        return True
    _ = tr(x)
    if flow.is_active(x, "onboarding"):
        x.say(_("Let's finish setting you up first."))
        await flow.resume(x)
    else:
        x.say(_("First, let's set you up: it takes a minute."))
        await flow.start(x, "onboarding", {"course": course} if course else {},
                         step="name" if learner.consent_at else "consent")
    return False


STEPS = (
    Step("consent", ask_consent, answer_consent, takes=("consent",)),
    Step("name", ask_name, answer_name, takes=("name",)),
    Step("timezone", ask_zone, answer_zone),
    Step("zone_confirm", ask_zone_confirm, answer_zone_confirm, takes=("zone",), about=zone_asked),
    Step("lesson_time", ask_lesson_time, answer_lesson_time, takes=("time",)),
    Step("days", ask_days, answer_days, takes=("days",)),
    Step("course", ask_course, answer_course, takes=("course",)),
    Step("goal", ask_goal, answer_goal, takes=("goal",)),
)

FLOWS = (Flow("onboarding", STEPS),)

__all__ = ["FLOWS", "begin", "local_now", "require_set_up", "schedule_summary"]
