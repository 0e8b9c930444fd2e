"""What a learner bought, and where to ask about it: /purchases and /paysupport.

`/purchases` lists each payment with its receipt number (a subscription: until when it is paid, when it renews, or
that it ends), privately (asked in a group, in the learner's private chat with the bot), with "Cancel renewal" by each
subscription that will be charged again; `/purchases cancel [RECEIPT]` cancels a renewal by typing (both answered by
dialogs/subscriptions.py). `/paysupport`, which Telegram asks every bot that sells to answer, says where to ask.
Buying, payments and refunds are dialogs/payments.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from bot.messages import Text
from bot.text import fold
from dialogs.i18n import Translator
from dialogs.learner import day_said, tr
from dialogs.payments import ENDED, desk_of, receipt_number, say_privately
from dialogs.prices import format_charge
from dialogs.subscriptions import CANCEL_WORDS, cancel_buttons, cancel_renewal_command, open_after_cancelling, renews
from dialogs.turn import Turn
from storage.courses import Course
from storage.payments import TELEGRAM, Payment, PaymentStatus, purchases


async def purchases_command(turn: Turn, args: str) -> None:
    """/purchases: what the learner bought, with receipts, and a "Cancel renewal" button by each subscription that
    renews; `/purchases cancel [RECEIPT]` cancels a renewal by typing (both: dialogs/subscriptions.py)."""
    words = args.split()
    if words and fold(words[0]) in CANCEL_WORDS:
        await cancel_renewal_command(turn, " ".join(words[1:]))
        return
    _ = tr(turn)
    bought = await purchases(turn.session, turn.user.id)
    if not bought:
        turn.say(_("You haven't bought anything yet. Send /courses to see what's for sale."))
        return
    lines, renewing = [_("Your purchases:")], []
    desk = desk_of(turn)
    for payment in bought:
        course = await turn.session.get(Course, payment.course_id)
        title = course.title if course else "—"
        lines.append(_line(_, payment, title, partial(day_said, turn), turn.now, payment.period_end,
                           ends=open_after_cancelling(desk, payment, turn.now)))
        if renews(payment, turn.now):
            renewing.append((payment, title))
    lines.append(_("Questions about a payment? Send /paysupport."))
    await say_privately(turn, Text("\n".join(lines), choices=cancel_buttons(_, renewing)),
                         sent=_("I've sent you your purchases in our private chat."),
                         alone=_("Your purchases are yours alone: send /purchases to me in a private chat."))


def _line(_: Translator, payment: Payment, title: str, day: Callable[[datetime], str], now: datetime,
          until: datetime | None = None, *, ends: datetime | None = None) -> str:
    """A purchase as /purchases lists it, its dates as `day` says them (the buyer's day, in their language): `until`
    the end of a subscription's period paid for, `ends` when one whose renewal is cancelled closes its lessons."""
    when = day(payment.paid_at or payment.created_at)
    price = format_charge(_, payment.paid_minor, payment.currency, payment.period)
    if payment.period is not None and payment.status == PaymentStatus.PAID:
        receipt = receipt_number(payment)
        if payment.subscription_status in ENDED:
            return _("• {title} — {price}, since {date}, ended. Receipt no. {receipt}", title=title, price=price,
                     date=when, receipt=receipt)
        if until is not None and until <= now:
            return _lapsed_line(_, payment, title, price, when, day(until))
        if payment.renewal_cancelled_at is not None and ends is not None:
            return _("• {title} — {price}, since {date}, ends on {end} (renewal cancelled). Receipt no. {receipt}",
                     title=title, price=price, date=when, end=day(ends), receipt=receipt)
        if until is not None:
            return _("• {title} — {price}, since {date}, renews on {renewal}. Receipt no. {receipt}", title=title,
                     price=price, date=when, renewal=day(until), receipt=receipt)
    if payment.status == PaymentStatus.REFUNDED:
        return _("• {title} — {price}, {date}, refunded. Receipt no. {receipt}", title=title, price=price, date=when,
                 receipt=receipt_number(payment))
    return _("• {title} — {price}, {date}. Receipt no. {receipt} ({provider} {reference})", title=title, price=price,
             date=when, receipt=receipt_number(payment), provider=payment.provider, reference=payment.reference or "")


def _lapsed_line(_: Translator, payment: Payment, title: str, price: str, when: str, until: str) -> str:
    """A subscription whose period paid for is over, not renewed: a Stars one has ended (Telegram reports no
    cancellation: one not renewed at its period's end ran out), and so has one whose renewal was cancelled; a Stripe
    one waits for its renewal's payment (Stripe reports the end when it comes)."""
    receipt = receipt_number(payment)
    if payment.provider == TELEGRAM or payment.renewal_cancelled_at is not None:
        return _("• {title} — {price}, since {date}, ended on {end}. Receipt no. {receipt}", title=title, price=price,
                 date=when, end=until, receipt=receipt)
    return _("• {title} — {price}, since {date}, its renewal of {renewal} not paid yet. Receipt no. {receipt}",
             title=title, price=price, date=when, renewal=until, receipt=receipt)


async def paysupport_command(turn: Turn, _args: str) -> None:
    """/paysupport: Telegram asks every bot that sells to answer it."""
    _ = tr(turn)
    support = desk_of(turn).support
    text = _("Questions about a payment, or want a refund? Write here what happened and the receipt number from "
             "/purchases; the people who run this bot read it.")
    if support:
        text += "\n" + _("You can also write to {contact}.", contact=support)
    turn.say(text)
