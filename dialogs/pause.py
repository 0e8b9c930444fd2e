"""/pause, /resume and /stop: the learner stops what the bot sends on its own, for a while or for good, or has
everything the bot keeps about them deleted (dialogs.personal; what that deletes is storage.personal_data's plan,
told in docs/data.md).

/pause and /stop only stop what the bot sends on its own; /next and /review still work when asked. The platform's
own opt-out (WhatsApp's STOP keyword) is settled by the pipeline before any dialog sees a message.
"""

from __future__ import annotations

import re
from datetime import timedelta

from bot.text import fold
from dialogs import flow, lessons, onboarding, personal
from dialogs.access import withhold_closed_lessons
from dialogs.flow import DONE, Flow, Invalid, Step
from dialogs.learner import activate, is_set_up, learner_of, tr
from dialogs.turn import Exchange, Turn
from storage.learners import ONBOARDING, PAUSED, STOPPED, Learner, lesson_schedule_changed, wall_clock_moment, zone_for
from storage.models import Conversation
from storage.outbox import release_held, withdraw_unasked

# "7", "7 days", "for 2 weeks", "por 3 dias" (folded: no accents, lower case)
DAYS = re.compile(r"^(?:(?:for|por|durante)\s+)?(?P<n>\d{1,3})\s*"
                  r"(?:(?:d|day|days|dia|dias)|(?P<weeks>w|week|weeks|semana|semanas))?$")


async def pause(turn: Turn, args: str) -> None:
    """/pause [N days]"""
    _ = tr(turn)
    learner = await learner_of(turn)
    if not is_set_up(learner):
        if flow.is_active(turn, "onboarding"):  # nothing to pause yet: the set-up's open question, asked again
            await onboarding.require_set_up(turn)
            return
        turn.say(_("There is nothing to pause yet: send /start to set up your lessons."))
        return
    typed = fold(args)
    match = DAYS.match(typed) if typed else None
    days = int(match["n"]) * (7 if match["weeks"] else 1) if match else 0
    if typed and (match is None or not 1 <= days <= 365):
        turn.say(_("Send /pause to pause until you send /resume, or /pause 7 to pause for 7 days (1 to 365)."))
        return
    if learner.status == STOPPED:  # a pause ends by itself; a stop only by /resume: it stays
        turn.say(_("Your lessons are stopped: nothing comes on its own until you send /resume. Your place is saved."))
        return
    learner.status = PAUSED
    await _withdraw_unasked(turn, learner, "not sent: the learner paused")
    if match:
        # the same time of day on the learner's clock, N of their days on (not N × 24 hours: across a change of the
        # clocks that would end an hour early or late, after the lesson of the day it ends)
        zone = zone_for(turn.user.timezone)
        local = turn.now.astimezone(zone)
        ends_on = local.date() + timedelta(days=days)
        learner.paused_until = wall_clock_moment(ends_on, local.time(), zone)
        turn.say(_("Paused until {date}. Your place is saved; send /resume to come back sooner.",
                   date=_.date(ends_on)))
    else:
        learner.paused_until = None
        turn.say(_("Paused. I won't send lessons until you send /resume. Your place is saved."))


async def _withdraw_unasked(x: Exchange, learner: Learner, reason: str) -> None:
    """What the bot queued on its own for the learner and has not sent (also what was set aside until they wrote,
    which this very message would otherwise release; not another learner's in a group that is home to both) does not
    go now: a lesson waits until they write again, a reminder or an announcement is cancelled."""
    if learner.home_conversation_id is not None:
        await withdraw_unasked(x.session, learner.home_conversation_id, learner.user_id, reason=reason)


async def resume_lessons(turn: Turn, _args: str) -> None:
    _ = tr(turn)
    learner = await learner_of(turn)
    if not is_set_up(learner):
        if flow.is_active(turn, "onboarding"):
            await onboarding.require_set_up(turn)
            return
        turn.say(_("There is nothing to resume yet: send /start to set up your lessons."))
        return
    paused = learner.status in (PAUSED, STOPPED)
    activate(learner)
    if learner.home_conversation_id is not None:  # a lesson held when they paused goes first, if still open to them
        home = await turn.session.get(Conversation, learner.home_conversation_id)
        if home is not None:
            await withhold_closed_lessons(turn.transaction, home, now=turn.now)
        await release_held(turn.session, learner.home_conversation_id, learner.user_id, now=turn.now)
    when = await lessons.next_lesson_moment(turn, learner)
    text = _("Welcome back! Lessons are on again.") if paused else _("You're not paused: your lessons are on.")
    if when is not None:
        local = when.astimezone(zone_for(turn.user.timezone))
        text += " " + _("The next one comes on {date} at {time}.", date=_.date(local), time=f"{local:%H:%M}")
    turn.say(text, choices=[(_("Next lesson now"), lessons.NEXT)])


# /stop ---------------------------------------------------------------------------------------------------------------

# Words that answer /stop's question (folded). Deleting is for good: only words that say delete ("apagar" is Spanish
# for switching off, so it stops the lessons).
STOP_LESSONS_WORDS = ("lessons", "stop", "stop the lessons", "parar", "parar las lecciones", "detener", "basta",
                      "apagar")
DELETE_WORDS = ("delete", "stop and delete my data", "borrar", "eliminar")


async def stop(turn: Turn, _args: str) -> None:
    await flow.start(turn, "stop")


async def ask_stop(x: Exchange, data: flow.Data) -> None:
    _ = tr(x)
    learner = await learner_of(x)  # they asked to stop: nothing the bot queued on its own goes with the question
    if is_set_up(learner):
        await _withdraw_unasked(x, learner, "not sent: the learner asked to stop")
    x.say(
        _("Do you want to stop the daily lessons (your progress is kept), or stop and delete everything I keep "
          "about you (name, settings, progress, certificates and our messages)?"),
        choices=[(_("Stop the lessons"), "stop:lessons"), (_("Stop and delete my data"), "stop:delete"),
                 (_("Cancel"), "stop:cancel")],
    )


async def answer_stop(turn: Turn, data: flow.Data, text: str) -> str:
    _ = tr(turn)
    typed = fold(text).removeprefix("stop:")
    if typed in ("cancel", "cancelar", "no", "back"):
        turn.say(_("OK, nothing changed."))
        return DONE
    if typed in STOP_LESSONS_WORDS:
        learner = await learner_of(turn)
        if learner.status != ONBOARDING:  # (one still setting up stays so: /start takes the set-up up again)
            learner.status = STOPPED
        await lesson_schedule_changed(turn.session, turn.user.id)  # parked: no planner run reads them until /resume
        await _withdraw_unasked(turn, learner, "not sent: the learner stopped the lessons")
        flow.set_aside(turn, "onboarding")  # what they answered of the set-up stays for /start
        flow.clear(turn)
        if learner.status == ONBOARDING:  # no lessons yet, and /resume has nothing to resume
            turn.say(_("Stopped: I won't send you anything on my own. Send /start whenever you want to finish "
                       "setting up."))
            return DONE
        turn.say(_("Stopped: I won't send you anything on my own. Your progress is kept; send /resume to start "
                   "again, or /stop again to delete it."))
        return DONE
    if typed in DELETE_WORDS:
        try:
            await personal.erase_in_turn(turn, turn.user.id, by="learner")
        except personal.ChargesElsewhere as elsewhere:
            turn.say(_("You have a subscription with {platforms} that I cannot cancel from this chat: deleted here, "
                       "your data would be gone and the subscription would go on charging you. Send /stop in your "
                       "chat with me where you subscribed (for Telegram Stars, on Telegram) and choose to delete your "
                       "data there: I cancel the subscription first. Nothing was deleted.",
                       platforms=", ".join(elsewhere.platforms)))
            return DONE
        turn.say(_("Done: I deleted everything I kept about you. If you come back, send /start."))
        return DONE
    raise Invalid(_("Please choose: stop the lessons, stop and delete your data, or cancel."))


FLOWS = (Flow("stop", (Step("confirm", ask_stop, answer_stop, takes=("stop",)),), answered_by_its_word=True),)
