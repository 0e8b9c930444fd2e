"""/settings: see every choice made at onboarding and change one; quiet hours live here too.

`/settings` shows the current values with a button per item; `/settings time` (or zone, days, …) goes straight to
one. Each item reuses the onboarding step that asked it first, so it is validated the same way.
"""

from __future__ import annotations

from bot.text import fold
from dialogs import ask, flow, onboarding
from dialogs.flow import DONE, Flow, Invalid, Step
from dialogs.i18n import LANGUAGES, N_, Translator
from dialogs.learner import current_course, is_set_up, learner_of, name_of, tr
from dialogs.times import read_quiet_hours
from dialogs.turn import Exchange, Turn
from storage.learners import Learner, quiet_at

# item → (button label, the step that asks it, words that name it in /settings ITEM)
ITEMS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "name": (N_("Name"), "name", ("name", "nombre", "nome")),
    "zone": (N_("Time zone"), "timezone", ("zone", "timezone", "time zone", "tz", "zona", "zona horaria", "fuso")),
    "time": (N_("Lesson time"), "lesson_time", ("time", "hour", "hora", "horario")),
    "days": (N_("Days"), "days", ("days", "day", "dias", "dia")),
    "quiet": (N_("Quiet hours"), "quiet", ("quiet", "quiet hours", "silencio", "horas de silencio")),
    "course": (N_("Course"), "course", ("course", "curso")),
    "goal": (N_("Daily goal"), "goal", ("goal", "meta", "objetivo")),
    "language": (N_("Language"), "language", ("language", "idioma", "lengua")),
}


async def show(turn: Turn, args: str) -> None:
    """/settings [item [value]]: the menu, one item's question, or the item changed to the value at once (as if it
    were the answer to that question: "/settings time 8:00", "/settings course python")."""
    typed = fold(args)
    named = next(((item, value) for item, (_label, _step, words) in ITEMS.items()
                  if item != "language" and (value := _value_after(args, words))), None)
    # Someone not set up yet who names a course is set up first, the course taken when onboarding comes to it.
    if not await onboarding.require_set_up(turn, course=named[1] if named and named[0] == "course" else ""):
        return
    for item, (_label, _step, words) in ITEMS.items():
        if typed and typed in words:
            await open_item(turn, item)
            return
    if named is not None:
        item, value = named
        flow.enter(turn, "settings", {"after": "saved", "item": item}, step=ITEMS[item][1])
        await flow.handle(turn, ask.answer_question, text=value)
        return
    await flow.start(turn, "settings")


def _value_after(args: str, words: tuple[str, ...]) -> str:
    """What follows the item's name in "/settings ITEM VALUE" ("" if `args` does not start with one of `words`)."""
    parts = args.split()
    for word in sorted(words, key=len, reverse=True):  # "time zone" before "time"
        count = len(word.split())
        if len(parts) > count and fold(" ".join(parts[:count])) == word:
            return " ".join(parts[count:])
    return ""


async def open_item(x: Exchange, item: str) -> None:
    if item == "language":
        flow.leave(x, "settings")
        await flow.start(x, "language")
        return
    await flow.start(x, "settings", {"after": "saved", "item": item}, step=ITEMS[item][1])


async def ask_menu(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    learner = await learner_of(x)
    course = await current_course(x, learner)
    lines = [
        _("Your settings:"),
        _("Name: {name}", name=name_of(x) or "—"),
        onboarding.schedule_summary(_, learner.lesson_time, learner.lesson_days, x.user.timezone),
        _("Quiet hours: {hours}", hours=quiet_hours(_, learner)),
        _("Course: {title}", title=course.title if course else "—"),
        _.plural("Daily goal: {n} lesson", "Daily goal: {n} lessons", learner.daily_goal),
        _("Language: {language}", language=LANGUAGES.get(x.user.locale, x.user.locale)),
        "",
        _("What would you like to change?"),
    ]
    choices = [(_(label), f"settings:{item}") for item, (label, _step, _words) in ITEMS.items()]
    x.say("\n".join(lines), choices=[*choices, (_("Nothing, thanks"), "settings:done")])


async def answer_menu(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    typed = fold(text).removeprefix("settings:")
    if typed in ("done", "nothing", "nothing thanks", "nada", "listo", "nada gracias"):
        turn.say(_("OK, nothing changed."))
        return DONE
    for item, (label, step, words) in ITEMS.items():
        if typed == item or typed in words or typed == fold(_(label)):
            if item == "language":
                flow.leave(turn, "settings")
                await flow.start(turn, "language")
                return DONE
            data["after"], data["item"] = "saved", item
            return step
    raise Invalid(_("Please pick one of the settings above, or “Nothing, thanks”."))


async def ask_quiet(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    x.say(
        _("Quiet hours: when should I never send you anything on my own? Type a range like 22:00-07:00, or “none”."),
        choices=[(_("22:00 to 07:00"), "quiet:22:00-07:00"), (_("No quiet hours"), "quiet:none")],
    )


async def answer_quiet(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    hours = read_quiet_hours(text)
    if hours is None:
        raise Invalid(_("I couldn't read that range. Type it like 22:00-07:00 (from, to), or “none”."))
    learner = await learner_of(turn)
    learner.quiet_start, learner.quiet_end = hours if hours else (None, None)
    return data.get("after") or DONE


async def _answer_saved(turn: Turn, data: flow.Data, text: str) -> str:  # pragma: no cover - never waits
    return DONE


def quiet_hours(_: Translator, learner: Learner) -> str:
    if learner.quiet_start and learner.quiet_end:
        return f"{learner.quiet_start:%H:%M}–{learner.quiet_end:%H:%M}"
    return _("none")


async def confirm_saved(x: Exchange, data: flow.Data) -> None:
    """Not a question: after an item is changed, confirm what it is now and end the flow (the one below, if any,
    goes on)."""
    _ = tr(x)
    learner = await learner_of(x)
    flow.leave(x, "settings")
    x.say(_("Saved.") + " " + await _now_set(x, learner, data.get("item")),
          choices=[(_("More settings"), "/settings")])
    if learner.lesson_time is not None and quiet_at(learner, learner.lesson_time):
        # no lesson would ever come: a lesson time inside the quiet hours skips the day's lesson
        x.say(_("Your lessons at {time} fall inside your quiet hours ({hours}), so none would come: change your "
                "lesson time or your quiet hours.", time=f"{learner.lesson_time:%H:%M}",
                hours=quiet_hours(_, learner)),
              choices=[(_("Lesson time"), "/settings time"), (_("Quiet hours"), "/settings quiet")])
    if is_set_up(learner):
        await flow.resume(x)


async def _now_set(x: Exchange, learner: Learner, item: str | None) -> str:
    """The changed item's new value, in a sentence; the lesson schedule for the items that make it up."""
    _ = tr(x)
    if item == "name":
        return _("I'll call you {name}.", name=name_of(x))
    if item == "quiet":
        return _("Quiet hours: {hours}", hours=quiet_hours(_, learner)) + "."
    if item == "course":
        course = await current_course(x, learner)
        return _("Course: {title}.", title=course.title if course else "—")
    if item == "goal":
        return _.plural("Daily goal: {n} lesson", "Daily goal: {n} lessons", learner.daily_goal) + "."
    return onboarding.schedule_summary(_, learner.lesson_time, learner.lesson_days, x.user.timezone)


FLOWS = (
    Flow("settings", (
        Step("menu", ask_menu, answer_menu, takes=("settings",)),
        Step("name", onboarding.ask_name, onboarding.answer_name, takes=("name",)),
        Step("timezone", onboarding.ask_zone, onboarding.answer_zone),
        Step("zone_confirm", onboarding.ask_zone_confirm, onboarding.answer_zone_confirm, takes=("zone",),
             about=onboarding.zone_asked),
        Step("lesson_time", onboarding.ask_lesson_time, onboarding.answer_lesson_time, takes=("time",)),
        Step("days", onboarding.ask_days, onboarding.answer_days, takes=("days",)),
        Step("quiet", ask_quiet, answer_quiet, takes=("quiet",)),
        Step("course", onboarding.ask_course, onboarding.answer_course, takes=("course",)),
        Step("goal", onboarding.ask_goal, onboarding.answer_goal, takes=("goal",)),
        Step("saved", confirm_saved, _answer_saved),
    )),
)
