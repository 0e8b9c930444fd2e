"""Access codes: an admin makes one for a course (`/admin code`, or `lessonbot codes`), a learner opens the course
with it (`/redeem CODE`).

A code opens its course for good or for some days, for up to so many learners, until a day it expires. A learner
who already holds what the code would give (the course for good, or access lasting past the code's days) is told so,
and the use is left for someone else; a subscriber given a code for good is told their subscription still renews.
Redeeming is one conditional update (storage.payments.redeem): a code's uses are never given twice.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.text import code_letters, whole_number
from dialogs import lessons
from dialogs.i18n import N_
from dialogs.learner import day_said, tr
from dialogs.payments import access_days, owns
from dialogs.subscriptions import renews
from dialogs.turn import Turn, UsageError
from storage.courses import Course
from storage.payments import Redeemed, access_code, holds_for_good, make_code, open_until, purchases, redeem

log = logging.getLogger(__name__)


async def redeem_command(turn: Turn, args: str) -> None:
    """/redeem CODE: open the code's course for this learner (a subscriber too: a code may outlast the
    subscription); not used up by one whose access already lasts as long as the code's would."""
    _ = tr(turn)
    code = await access_code(turn.session, code_letters(args))
    if code is None:
        turn.say(_("That is not an access code I know. Send /redeem followed by the code exactly as you were given it, "
                   "e.g. /redeem LB-7K2Q-9XWM."))
        return
    course = await turn.session.get(Course, code.course_id)
    assert course is not None
    # Nothing a code could add to access without an end (a one-off purchase, a grant for good): its use is left for
    # another. A subscription ends (with its period, or when its renewal is cancelled): a code may outlast it.
    if await holds_for_good(turn.session, turn.user.id, course.id):
        turn.say(_("You already have “{title}”. Send /next to go on.", title=course.title))
        return
    # A code for some days runs from now, alongside the access held (a subscription's month, an earlier grant): one
    # that would end no later than that adds nothing, and its use is left for another.
    if code.days:
        held_until = await open_until(turn.session, turn.user.id, course.id, turn.now)
        if held_until is not None and held_until >= turn.now + timedelta(days=code.days):
            turn.say(_("You already have “{title}” until {date}: this code would add nothing, so it is left unused "
                       "for someone else. Send /next to go on.", title=course.title,
                       date=day_said(turn, held_until)))
            return
    outcome = await redeem(turn.session, code, turn.user.id, turn.now)
    log.info("an access code was tried", extra={"code_id": code.id, "outcome": outcome.value})
    if outcome is not Redeemed.OK:
        if await owns(turn, turn.user.id, course):
            turn.say(_("You already have “{title}”. Send /next to go on.", title=course.title))
        elif outcome is Redeemed.ALREADY:  # theirs once, and taken back since (revoked, or its days are over)
            turn.say(_("You used this code before, and the access it gave to “{title}” has ended. Ask whoever gave "
                       "it to you for a new one.", title=course.title))
        elif outcome is Redeemed.EXPIRED:
            turn.say(_("This code expired on {date}. Ask whoever gave it to you for a new one.",
                       date=day_said(turn, code.expires_at or turn.now)))
        elif outcome is Redeemed.DISABLED:
            turn.say(_("This code has been withdrawn. Ask whoever gave it to you for a new one."))
        else:
            turn.say(_("This code has been used up. Ask whoever gave it to you for a new one."))
        return
    accepted = _("🎟️ Code accepted: “{title}” is open to you.", title=course.title)
    if code.days is None and await _renewing_subscription(turn, course.id):
        # The course is theirs for good now, but the subscription goes on charging until they cancel it.
        accepted += " " + _("Your subscription to it still renews, and will be charged as before: send /purchases "
                            "cancel to stop it.")
    turn.say(accepted)
    await lessons.open_course(turn, course)


async def _renewing_subscription(turn: Turn, course_id: int) -> bool:
    """Whether the learner holds a subscription to the course that will be charged again."""
    return any(payment.course_id == course_id and renews(payment, turn.now)
               for payment in await purchases(turn.session, turn.user.id))


MAX_CODE_USES = 100_000


def code_expiry(text: str, now: datetime) -> datetime | None:
    """When a code stops working, as an admin writes it (`code_moment`); None if it is none of those or not in the
    future."""
    moment = code_moment(text, now)
    return moment if moment is not None and moment > now else None


def code_moment(text: str, now: datetime) -> datetime | None:
    """A moment as an admin writes a code's expiry: a date (2027-01-31: the end of that day, UTC), a date and time in
    ISO 8601, or a number of days from now ("30d"); None if it is none of these."""
    text = text.strip()
    try:
        if text.lower().endswith("d") and (days := whole_number(text[:-1])) is not None:
            return now + timedelta(days=days)
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC) + timedelta(days=1)
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


async def admin_code(turn: Turn, args: str) -> None:
    _ = tr(turn)
    usage = _("Usage: /admin code COURSE [LEARNERS] [DAYS] [until=DATE] — a code that opens the course for that many "
              "learners (default 1), for good or for some days, redeemable until DATE (2027-01-31, or 30d).")
    words = args.split()
    expires = None
    if words and words[-1].lower().startswith("until="):
        typed = words.pop()[len("until="):]
        expires = code_moment(typed, turn.now)
        if expires is None:
            raise UsageError(usage)
        if expires <= turn.now:
            raise UsageError(_("until={date} is not in the future: give a day to come (2027-01-31) or a number of "
                               "days (30d).", date=typed))
    if not words or len(words) > 3 or (len(words) > 1 and not whole_number(words[1], most=MAX_CODE_USES)):
        raise UsageError(usage)
    days = access_days(_, words[2], usage) if len(words) > 2 else None
    course = await turn.session.scalar(select(Course).where(Course.slug == words[0].lower()))
    if course is None:
        raise UsageError(_("No course {slug}: give its id from course.yaml (lessonbot course list).",
                           slug=repr(words[0])))
    uses = int(words[1]) if len(words) > 1 else 1
    code = await make_code(turn.session, course.id, uses=uses, days=days, expires_at=expires,
                           created_by=turn.identity.address, now=turn.now)
    text = _.plural("Access code {code} opens “{title}” for {n} learner: they send /redeem {code}.",
                    "Access code {code} opens “{title}” for {n} learners: each sends /redeem {code}.", uses,
                    code=code.code, title=course.title)
    if expires is not None:
        text += " " + _("It can be redeemed until {moment}.", moment=f"{expires:%Y-%m-%d %H:%M} UTC")
    turn.say(text)


ADMIN_SUBCOMMANDS = {
    "code": (admin_code, N_("an access code for a course: /admin code COURSE [LEARNERS] [DAYS] [until=DATE]")),
}
