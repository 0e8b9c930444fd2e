"""What reminders say: several templates per kind, in the learner's language, each with a one-tap way back in.

The scheduler decides who gets which kind when (scheduler/nudges.py) and which template (dialogs/bandit.py);
this module only words them. A template's id is stable: its record (sent, came back) is kept under it, so change
the wording freely but give a really different message a new id. `/admin nudges` shows every template's record.

Kinds: `inactive` (a learner away for a day, three days, a week), `farewell` (the last one: "I'll stop reminding
you"), `streak` (a streak of two days or more ends at local midnight), `review` (spaced-review questions are due),
`unfinished` (a lesson left part way that day),
`team` (a team admin's nudge to a member behind on the team's lessons posted in its channel: dialogs/teams.py),
`team_direct` (the same for a team in the direct mode, whose lessons come in each member's direct chat).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from bot.messages import Choice, Text
from dialogs.i18n import N_, Translator, translator
from dialogs.learner import tr
from dialogs.lessons import NEXT
from dialogs.turn import Turn
from storage.dashboard import UNDELIVERED, nudges_not_sent
from storage.scheduling import HELD_OUT, NUDGE_REWARD_WINDOW, SKIPPED_WINDOW, NudgeTemplateStats

INACTIVE, FAREWELL, STREAK, REVIEW, UNFINISHED = "inactive", "farewell", "streak", "review", "unfinished"
TEAM, TEAM_DIRECT = "team", "team_direct"


@dataclass(frozen=True)
class NudgeFacts:
    """What a template may mention."""

    days_away: int = 0  # whole days since the learner's last activity
    streak: int = 0  # the streak at risk
    due_reviews: int = 0  # review questions due now


Wording = Callable[[Translator, NudgeFacts], str]

TEMPLATES: dict[str, dict[str, Wording]] = {
    INACTIVE: {
        "inactive-days": lambda _, f: _.plural(
            "It's been {n} day since your last lesson. Your place is saved: one tap and you're back in.",
            "It's been {n} days since your last lesson. Your place is saved: one tap and you're back in.",
            f.days_away),
        "inactive-five-minutes": lambda _, f: _(
            "Got five minutes? Your next lesson is ready, right where you left it."),
        "inactive-small-steps": lambda _, f: _("Small steps add up. One short part of your lesson is waiting for you."),
    },
    FAREWELL: {
        "farewell-place-saved": lambda _, f: _(
            "I'll stop reminding you now. Your place is saved: tap below whenever you want to pick up again."),
        "farewell-door-open": lambda _, f: _(
            "This is my last reminder, I promise. Whenever you're ready, your lessons are right where you left them."),
    },
    STREAK: {
        "streak-midnight": lambda _, f: _.plural(
            "🔥 Your {n}-day streak ends at midnight. One short lesson keeps it going.",
            "🔥 Your {n}-day streak ends at midnight. One short lesson keeps it going.",
            f.streak),
        "streak-keep-alive": lambda _, f: _.plural(
            "Keep your {n}-day streak alive: a five-minute lesson before the day is over?",
            "Keep your {n}-day streak alive: a five-minute lesson before the day is over?",
            f.streak),
    },
    REVIEW: {
        "review-count": lambda _, f: _.plural(
            "🔁 {n} question is ready for review. A quick round keeps it fresh.",
            "🔁 {n} questions are ready for review. A quick round keeps them fresh.",
            f.due_reviews),
        "review-right-moment": lambda _, f: _(
            "Reviewing at the right moment is how things stick, and your review questions are ready now."),
    },
    UNFINISHED: {
        "unfinished-pick-up": lambda _, f: _(
            "You stopped part way through today's lesson. Pick it up where you left off?"),
    },
    TEAM: {
        "team-waiting": lambda _, f: _(
            "Your team's lesson is waiting for you in the channel: its quiz takes a few minutes, and only you see "
            "your answers."),
        "team-together": lambda _, f: _(
            "Your teammates are learning together this week. Catch up in the channel whenever you have five "
            "minutes: press the lesson's button."),
    },
    TEAM_DIRECT: {
        "team-direct-next": lambda _, f: _(
            "Your team's lessons are going on this week, and your next one is ready here: a few minutes, and only "
            "you see your answers."),
        "team-direct-together": lambda _, f: _(
            "Your teammates are learning together this week. Catch up whenever you have five minutes: your next "
            "lesson is one tap away."),
    },
}

# Why a decided reminder never went out, by what `nudge_log` records (storage.dashboard.nudges_not_sent): /admin
# nudges and the dashboard say it, with what to do about it.
NOT_SENT: dict[str, str] = {
    SKIPPED_WINDOW: N_("outside the platform's window for messages the learner did not ask for (WhatsApp: 24 hours "
                       "after they last wrote), with no template configured: set TWILIO_TEMPLATE_CONTENT_SID"),
    HELD_OUT: N_("held out on purpose (NUDGE_HOLDOUT)"),
    UNDELIVERED: N_("queued but never delivered (the platform refused it for good, or a pause or /stop cancelled it)"),
}


def templates(kind: str) -> tuple[str, ...]:
    return tuple(TEMPLATES[kind])


def nudge(kind: str, template: str, *, language: str | None, facts: NudgeFacts) -> Text:
    """The reminder as sent: the template's words and the buttons back in (and, while away, a way to pause)."""
    _ = translator(language)
    text = TEMPLATES[kind][template](_, facts)
    if kind == REVIEW:
        choices: tuple[Choice, ...] = (Choice(_("Review now"), "/review"), Choice(_("Next lesson"), NEXT))
    elif kind == TEAM:
        choices = ()  # the way back in is the lesson post's own button, in the team's channel
    elif kind == TEAM_DIRECT:
        choices = (Choice(_("Continue my lesson"), NEXT),)  # the member's own lessons, in this direct chat
    elif kind == INACTIVE:
        choices = (Choice(_("Continue my lesson"), NEXT), Choice(_("Pause for a week"), "/pause 7"))
    else:
        choices = (Choice(_("Continue my lesson"), NEXT),)
    return Text(text, choices)


# /admin nudges ------------------------------------------------------------------------------------------------------


async def report(turn: Turn, _args: str) -> None:
    """Every template's record: delivered, came back within the reward window, and the rate; beside them, each kind's
    held-out nudges (decided, not sent): the rate without a reminder; and each kind's reminders that never went out,
    by why (`NOT_SENT`), with what to do about it."""
    _ = tr(turn)
    rows = await turn.session.execute(select(NudgeTemplateStats.kind, NudgeTemplateStats.template,
                                             NudgeTemplateStats.sent, NudgeTemplateStats.came_back))
    record = {(kind, template): (sent, came_back) for kind, template, sent, came_back in rows.all()}
    not_sent: dict[str, list[tuple[str, int]]] = {}
    for kind, reason, count in await nudges_not_sent(turn.session):
        not_sent.setdefault(kind, []).append((reason, count))
    anything_held_out = any(template == HELD_OUT for _kind, template in record)
    hours = int(NUDGE_REWARD_WINDOW.total_seconds() // 3600)
    lines = [_.plural("Reminder templates: delivered, and how many learners came back to learn within {n} hour.",
                      "Reminder templates: delivered, and how many learners came back to learn within {n} hours.",
                      hours)]
    for kind, wordings in TEMPLATES.items():
        lines.append("")
        lines.append(f"{kind}:")
        for template in wordings:
            sent, came_back = record.pop((kind, template), (0, 0))
            lines.append(_rate_line(_, template, sent, came_back))
        held, back_anyway = record.pop((kind, HELD_OUT), (0, 0))
        if held:
            lines.append(_rate_line(_, _("no reminder (held out)"), held, back_anyway))
        lines += [_not_sent_line(_, reason, count) for reason, count in not_sent.pop(kind, [])]
    for (kind, template), (sent, came_back) in sorted(record.items()):  # templates since removed from the code
        lines.append(_rate_line(_, f"{kind}/{template} " + _("(retired)"), sent, came_back))
    for kind, reasons in sorted(not_sent.items()):  # kinds since removed from the code
        lines += [f"{kind}: " + _not_sent_line(_, reason, count) for reason, count in reasons]
    if anything_held_out:
        lines += ["", _("No reminder: learners due one who were left without it on purpose (NUDGE_HOLDOUT). A "
                        "template's rate above theirs is what the reminder itself did.")]
    turn.say("\n".join(lines))


def _not_sent_line(_: Translator, reason: str, count: int) -> str:
    why = _(NOT_SENT[reason]) if reason in NOT_SENT else reason  # an outcome newer than this code: as recorded
    return _.plural("• {n} reminder not sent: {reason}", "• {n} reminders not sent: {reason}", count, reason=why)


def _rate_line(_: Translator, template: str, sent: int, came_back: int) -> str:
    if not sent:
        return _("• {template}: not sent yet", template=template)
    return _("• {template}: {came_back} of {sent} came back ({rate}%)", template=template, came_back=came_back,
             sent=sent, rate=round(100 * came_back / sent))
