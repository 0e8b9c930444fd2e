"""Cancelling a subscription's renewal from the chat ("cancel any time"), and following a renewal cancelled elsewhere.

"Cancel renewal" by a subscription in /purchases (`renewal:ask:<payment id>`), or `/purchases cancel [RECEIPT]`, asks
to confirm, naming the course and until when its lessons stay open; "Yes, cancel the renewal"
(`renewal:cancel:<payment id>`) asks the platform, outside the transaction, not to charge again (Stripe:
`cancel_at_period_end`; Telegram: editUserStarSubscription), and records it on the payment (`renewal_cancelled_at`);
"Keep it" (`renewal:keep:<payment id>`) changes nothing. A Stripe subscription whose renewal is due and not paid
(`overdue`: past due as Stripe says it, Stripe retrying the card through the grace) is cancelled now instead (its
Yes is `renewal:cancel-now:<payment id>`; DELETE, which also stops Stripe collecting the renewal's invoice;
cancelling at the period's end would leave it retried, the period having moved on at the renewal): the period paid
for is over, so its access ends then, and the learner is told so before and after. A Yes is carried out only as the
promise it was offered with: the subscription changed since (become overdue, or paid again), the learner is told so
and asked again. Buttons sent before these had their own prefix
(`pay:renewal`, `pay:renewal-cancel`, `pay:renewal-keep`, still in learners' chats) are handed here by the wiring
(dialogs/__init__.py). A button is honoured only where it was offered to the person pressing it
(dialogs/choices.py); the payment it names must be theirs, and a subscription still in force.

A renewal cancelled (or resumed) in Stripe's customer portal or Dashboard is followed by dialogs/payments.py, with
the subscription's other events (`renewal_reported`, which records it as cancelling here does); the subscription's
end at its period's end comes as `customer.subscription.deleted`, which ends the access as any end does.

Buying, Stripe's events and refunds are dialogs/payments.py's, the /purchases listing dialogs/purchases.py's; this
module is built on payments, which never reaches back here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from bot.messages import Choice, Text
from bot.text import whole_number
from dialogs.i18n import Translator
from dialogs.learner import day_said, tr
from dialogs.payments import (
    ENDED,
    PaymentDesk,
    Refundable,
    access_until,
    desk_of,
    read_receipt,
    remaining_access,
    say_privately,
    stop_at_provider,
    subscription_ended,
    what_remains,
)
from dialogs.turn import Turn
from storage.courses import Course
from storage.payments import STRIPE, TELEGRAM, Payment, PaymentStatus, purchases

log = logging.getLogger(__name__)

PREFIX = "renewal"  # the buttons' own prefix (dialogs.BUTTONS)
RENEWAL_ASK, RENEWAL_CANCEL, RENEWAL_KEEP = f"{PREFIX}:ask", f"{PREFIX}:cancel", f"{PREFIX}:keep"
RENEWAL_CANCEL_NOW = f"{PREFIX}:cancel-now"  # the Yes offered for an `overdue` one: cancel it now, its access ending
# The same buttons as they were sent before they had their own prefix (under dialogs/payments.py's `pay:`): a
# learner may press one still, however late.
SENT_BEFORE = {"pay:renewal": RENEWAL_ASK, "pay:renewal-cancel": RENEWAL_CANCEL, "pay:renewal-keep": RENEWAL_KEEP}
CANCEL_WORDS = frozenset({"cancel", "cancelar"})  # `/purchases cancel`
OVERDUE = frozenset({"past_due", "unpaid"})  # Stripe's word for a renewal due and not paid


def renews(payment: Payment, now: datetime) -> bool:
    """Whether a payment is a subscription that will be charged again, whose renewal the learner may cancel: in
    force, its renewal not cancelled, or not paid (`overdue`: Stripe retries it, whatever was cancelled)."""
    return in_force(payment, now) and (payment.renewal_cancelled_at is None or renewal_failed(payment))


def in_force(payment: Payment, now: datetime) -> bool:
    """Whether a payment is a subscription in force: paid, not ended, and its period paid for not over (or not yet
    reported by Stripe); or, that period over, a Stripe one whose renewal is still to be paid: past due (`overdue`),
    or not cancelled and not yet reported paid (Stripe charges the renewal about an hour after the period ends, and
    reports its end when it comes)."""
    if not (payment.period is not None and payment.status == PaymentStatus.PAID
            and bool(payment.subscription_reference) and payment.subscription_status not in ENDED):
        return False
    if payment.period_end is None or payment.period_end > now:
        return True
    return payment.provider != TELEGRAM and (renewal_failed(payment) or payment.renewal_cancelled_at is None)


def renewal_failed(payment: Payment) -> bool:
    """Whether Stripe says a subscription's renewal was not paid (`past_due` or `unpaid`: its payment failed, Stripe
    retrying it while the lessons stay open through the grace). (A Stars one: Telegram reports no failed renewal.)"""
    return payment.provider != TELEGRAM and payment.subscription_status in OVERDUE


def overdue(payment: Payment, now: datetime) -> bool:
    """Whether a Stripe subscription's renewal is due and not paid: its payment failed (`renewal_failed`), or the
    period paid for is over and Stripe has not charged the next yet (it does about an hour after: the next period's
    invoice is made when the period ends, so a cancellation at the period's end would still be charged it). Such a
    subscription can only be cancelled now, which stops that charge; the access paid for is over."""
    return renewal_failed(payment) or (payment.provider != TELEGRAM and payment.period_end is not None
                                        and payment.period_end <= now)


def open_after_cancelling(desk: PaymentDesk, payment: Payment, now: datetime) -> datetime:
    """Until when the lessons of a subscription whose renewal is cancelled stay open. A Stripe one, its period paid
    (active), until that period's end: Stripe ends the subscription then (`customer.subscription.deleted`, which
    locks them: no renewal is left to wait for). A Stars one until its access runs out (`access_until`: the period
    paid for and the grace; Telegram reports no end), and so a Stripe one before Stripe has said when its period
    ends. (One whose renewal is past due is cancelled now: `overdue`.)"""
    if payment.provider == STRIPE and payment.period_end is not None and payment.subscription_status == "active":
        return payment.period_end
    return access_until(desk, payment, now)


def cancel_buttons(_: Translator, renewing: Sequence[tuple[Payment, str]]) -> tuple[Choice, ...]:
    """A "Cancel renewal" button for each subscription that renews (named by its course when there are several)."""
    if len(renewing) == 1:
        return (Choice(_("Cancel renewal"), f"{RENEWAL_ASK}:{renewing[0][0].id}"),)
    return tuple(Choice(_("Cancel renewal: {title}", title=title[:40]), f"{RENEWAL_ASK}:{payment.id}")
                 for payment, title in renewing)


async def cancel_renewal_command(turn: Turn, receipt: str) -> None:
    """`/purchases cancel [RECEIPT]`: cancel the renewal of the learner's subscription (the one with that receipt
    number, or their only one that renews; with several, a button for each)."""
    _ = tr(turn)
    if receipt:
        number = read_receipt(receipt)
        payment = await turn.session.get(Payment, number) if number is not None else None
        await _ask_to_cancel(turn, _own_subscription(turn, payment), receipt)
        return
    renewing = [(payment, await _title(turn, payment)) for payment in await purchases(turn.session, turn.user.id)
                if renews(payment, turn.now)]
    if len(renewing) == 1:
        await _ask_to_cancel(turn, renewing[0][0], "")
        return
    if not renewing:
        reply = Text(_("You have no subscription that renews. Send /purchases to see what you bought."))
    else:
        reply = Text(_("Which subscription should stop renewing?"), choices=cancel_buttons(_, renewing))
    await say_privately(turn, reply, sent=_("I've answered you in our private chat."),
                        alone=_("A payment is yours alone: send /purchases cancel to me in a private chat."))


def _own_subscription(turn: Turn, payment: Payment | None) -> Payment | None:
    """`payment` if it is this learner's own subscription in force (its renewal cancelled or not), else None."""
    if payment is None or payment.user_id != turn.user.id or not in_force(payment, turn.now):
        return None
    return payment


async def _named_subscription(turn: Turn, value: str) -> Payment | None:
    """The learner's own subscription in force a button names (`<prefix>:<payment id>`), else None."""
    number = whole_number(value.rsplit(":", 1)[-1])
    payment = await turn.session.get(Payment, number) if number is not None else None
    return _own_subscription(turn, payment)


async def _title(turn: Turn, payment: Payment) -> str:
    course = await turn.session.get(Course, payment.course_id)
    return course.title if course else "—"


async def _ask_to_cancel(turn: Turn, payment: Payment | None, receipt: str) -> None:
    """Confirm before cancelling: the course, and until when its lessons stay open, with "Yes" and "Keep it"; or
    why there is nothing to cancel."""
    _ = tr(turn)
    if payment is None:
        shown = receipt.strip()[:20] or "—"  # as they typed it
        reply = Text(_("You have no subscription in force with receipt no. {receipt}. Send /purchases to see yours.",
                       receipt=shown))
    elif overdue(payment, turn.now):
        reply = Text(
            (_("Cancel the renewal of “{title}”? Its payment has not gone through, and Stripe is still trying your "
               "card: cancelling ends the subscription now, so nothing more will be charged. The period you paid for "
               "is over, so the access it gives ends at once.", title=await _title(turn, payment))
             if renewal_failed(payment) else
             _("Cancel the renewal of “{title}”? The period you paid for is over and Stripe is about to charge the "
               "next one: cancelling ends the subscription now, so that charge is not made and nothing more will be "
               "charged. The access the period gave ends at once.", title=await _title(turn, payment))),
            choices=(Choice(_("Yes, cancel the renewal"), f"{RENEWAL_CANCEL_NOW}:{payment.id}"),
                     Choice(_("Keep it"), f"{RENEWAL_KEEP}:{payment.id}")))
    elif payment.renewal_cancelled_at is not None:
        reply = Text(await _already_cancelled(turn, payment))
    else:
        until = open_after_cancelling(desk_of(turn), payment, turn.now)
        reply = Text(
            _("Cancel the renewal of “{title}”? Nothing more will be charged, and your lessons stay open until "
              "{date}.", title=await _title(turn, payment), date=day_said(turn, until)),
            choices=(Choice(_("Yes, cancel the renewal"), f"{RENEWAL_CANCEL}:{payment.id}"),
                     Choice(_("Keep it"), f"{RENEWAL_KEEP}:{payment.id}")))
    await say_privately(turn, reply, sent=_("I've answered you in our private chat."),
                        alone=_("A payment is yours alone: send /purchases cancel to me in a private chat."))


async def _already_cancelled(turn: Turn, payment: Payment) -> str:
    _ = tr(turn)
    until = open_after_cancelling(desk_of(turn), payment, turn.now)
    return _("The renewal of “{title}” is already cancelled: nothing more will be charged, and your lessons stay open "
             "until {date}.", title=await _title(turn, payment), date=day_said(turn, until))


async def on_button(turn: Turn, value: str) -> None:
    """A pressed "Cancel renewal" (`renewal:ask:<payment id>`), or its answer: "Yes, cancel the renewal"
    (`renewal:cancel:…` at the period's end, `renewal:cancel-now:…` for an `overdue` one) or "Keep it"
    (`renewal:keep:…`); or one of them as sent before (`SENT_BEFORE`). A Yes is carried out only as it was offered:
    if the subscription has changed since (become overdue, or paid again), the learner is told, and asked again."""
    _ = tr(turn)
    payment = await _named_subscription(turn, value)
    kind = value.rsplit(":", 1)[0]
    kind = SENT_BEFORE.get(kind, kind)
    if payment is None:
        turn.say(_("That subscription is not one of yours that is in force. Send /purchases to see yours."))
    elif kind == RENEWAL_ASK:
        await _ask_to_cancel(turn, payment, "")
    elif kind == RENEWAL_KEEP:
        turn.say(_("Good: your subscription to “{title}” goes on as before.", title=await _title(turn, payment)))
    elif (kind == RENEWAL_CANCEL_NOW) != overdue(payment, turn.now):
        turn.say(_("Your subscription to “{title}” has changed since I asked, so I have done nothing yet.",
                   title=await _title(turn, payment)))
        await _ask_to_cancel(turn, payment, "")
    elif kind == RENEWAL_CANCEL_NOW:
        await _cancel_now(turn, payment)
    elif payment.renewal_cancelled_at is not None:
        turn.say(await _already_cancelled(turn, payment))
    else:
        await _cancel_renewal(turn, payment)


async def _cancel_renewal(turn: Turn, payment: Payment) -> None:
    """Ask the platform not to renew the subscription (outside the transaction) and record it; a failure changes
    nothing, and the learner is told to try again."""
    _ = tr(turn)
    desk, target = desk_of(turn), Refundable.of(payment)
    outcome = await turn.call_outside_transaction(f"renewal:{payment.id}", lambda: end_renewal(desk, target))
    title = await _title(turn, payment)
    if outcome != "ok":
        _refused(turn, payment, title, outcome)
        return
    payment.renewal_cancelled_at = turn.now
    until = open_after_cancelling(desk, payment, turn.now)
    turn.say(_("Done: “{title}” will not renew, and nothing more will be charged. Your lessons stay open until "
               "{date}.", title=title, date=day_said(turn, until)))


async def _cancel_now(turn: Turn, payment: Payment) -> None:
    """Cancel an `overdue` subscription now (outside the transaction), which stops Stripe retrying its renewal, and
    end its access, as Stripe's report of the end would (which then finds it ended, and says nothing more); a
    failure changes nothing, and the learner is told to try again."""
    _ = tr(turn)
    desk, target = desk_of(turn), Refundable.of(payment)
    outcome = await turn.call_outside_transaction(f"renewal-now:{payment.id}",  # not the key of `_cancel_renewal`
                                                  lambda: end_renewal(desk, target, at_once=True))
    course = await turn.session.get(Course, payment.course_id)
    title = course.title if course else "—"
    if outcome != "ok":
        _refused(turn, payment, title, outcome)
        return
    await subscription_ended(turn, payment, "canceled", ended=turn.now)
    payment.renewal_cancelled_at = payment.renewal_cancelled_at or turn.now
    left = await remaining_access(turn.session, payment.user_id, course, turn.now)
    turn.say(_("Done: your subscription to “{title}” is cancelled, and nothing more will be charged. {remains} Send "
               "/buy {slug} to subscribe again; your place is kept.", title=title,
               remains=what_remains(_, left, partial(day_said, turn)), slug=course.slug if course else ""))


def _refused(turn: Turn, payment: Payment, title: str, outcome: str) -> None:
    """The platform did not cancel (refused, or away): nothing is recorded, and the learner is told to try again."""
    log.error("a subscription's renewal could not be cancelled; nothing recorded",
              extra={"payment_id": payment.id, "error": outcome})
    turn.say(tr(turn)("I couldn't cancel the renewal of “{title}” just now, so nothing has changed and it still "
                      "renews. Please try again in a few minutes, or send /paysupport.", title=title))


async def end_renewal(desk: PaymentDesk, subscription: Refundable, *, at_once: bool = False) -> str:
    """Ask the subscription's platform not to charge it again, leaving the period paid for running (Telegram:
    editUserStarSubscription, as a refund cancels it; Stripe: cancel at the period's end), or, `at_once`, ending it
    now (Stripe: an `overdue` one, whose period paid for is over): "ok", or what went wrong."""
    try:
        await stop_at_provider(desk, subscription, at_period_end=not at_once)
    except Exception as exc:
        return str(exc)[:300] or type(exc).__name__
    return "ok"
