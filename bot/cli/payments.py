"""`lessonbot payments list|show|refund`: what was sold, one payment in full, and a refund that revokes its access.

A refund asks the platform first (Stripe's refunds API, or Telegram's refundStarPayment), then marks the payment
refunded, revokes its entitlement and queues a message to the learner, in one transaction; the attempt is written to
the admin audit log as `cli:<user>`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from bot.cli.admin import operator
from bot.cli.database import database
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.config import Settings
    from channels.telegram import TelegramChannel
    from dialogs.payments import PaymentDesk


def register(subparsers: argparse._SubParsersAction) -> None:
    payments = subparsers.add_parser("payments", help="payments for paid courses: list, show, refund")
    actions = payments.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the latest payments, newest first, then the revenue by course")
    listing.add_argument("--limit", type=whole(least=1), default=50)
    listing.set_defaults(func=cmd_list, uses_database=True)
    show = actions.add_parser("show", help="one payment in full")
    show.add_argument("payment", help="its number: 12 or LB-000012")
    show.set_defaults(func=cmd_show, uses_database=True)
    refund = actions.add_parser("refund", help="refund a paid payment and revoke the access it gave")
    refund.add_argument("payment", help="its number: 12 or LB-000012")
    refund.set_defaults(func=cmd_refund, uses_database=True)


def _number(text: str) -> int | None:
    from dialogs.payments import read_receipt

    return read_receipt(text)


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.payments import receipt_number
    from storage.courses import major_units
    from storage.payments import recent_payments, revenue

    async def main() -> int:
        async with database(settings) as db, db.sessions() as session:
            rows = await recent_payments(session, limit=args.limit)
            if not rows:
                print("No payments yet.")
            for row in rows:
                charged = (f"{major_units(row.amount_minor, row.currency)} {row.currency}"
                           f"{' a ' + row.period if row.period else ''}")
                discount = f" (-{major_units(row.discount_minor, row.currency)})" if row.discount_minor else ""
                print(f"{receipt_number(row)}\t{row.status}\t{charged}{discount}"
                      f"\tcourse={row.course_id}\tlearner={row.user_id}\t{row.provider}\t{row.reference or ''}"
                      f"\t{row.created_at:%Y-%m-%d %H:%M}")
            for total in await revenue(session):
                net = major_units(total.net_minor, total.currency)
                print(f"revenue\tcourse={total.course_id}\t{net} {total.currency}"
                      f"\tpayments={total.payments}\trenewals={total.renewals}\trefunded={total.refunds}")
        return 0

    return asyncio.run(main())


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from storage.payments import Payment

    number = _number(args.payment)
    if number is None:
        print(f"{args.payment!r} is not a payment number: give 12 or LB-000012 (lessonbot payments list).",
              file=sys.stderr)
        return 2

    async def main() -> int:
        async with database(settings) as db, db.sessions() as session:
            payment = await session.get(Payment, number)
            if payment is None:
                _no_payment(number)
                return 1
            for column in Payment.__table__.columns:
                print(f"{column.name}: {getattr(payment, column.name)}")
        return 0

    return asyncio.run(main())


def _no_payment(number: int) -> None:
    """What `show` and `refund` say of a number no payment has."""
    print(f"No payment {number} (lessonbot payments list shows them).", file=sys.stderr)


def payment_desk_for_commands(settings: Settings) -> tuple[PaymentDesk, list[TelegramChannel]]:
    """The payment desk a command uses to reach the platforms (Stripe, and Telegram for Stars), and the channels it
    opened for that (to close when done)."""
    from bot.payments import payment_desk

    channels: list[TelegramChannel] = []
    if settings.telegram_bot_token:
        from channels.telegram import TelegramChannel

        channels.append(TelegramChannel(token=settings.telegram_bot_token, api_base_url=settings.telegram_api_base_url))
    return payment_desk(settings, channels), channels


def cmd_refund(settings: Settings, args: argparse.Namespace) -> int:
    from dialogs.i18n import translator
    from dialogs.payments import (
        record_refund,
        refund,
        refundable,
        refunded_for_admin,
        remaining_access,
        renewed_since,
        tell,
    )
    from storage.courses import Course
    from storage.models import AdminAuditEntry, utcnow
    from storage.payments import Payment, PaymentStatus, charge_given_back

    number = _number(args.payment)
    identity = operator()

    async def main() -> int:
        desk, channels = payment_desk_for_commands(settings)
        async with database(settings) as db:
            target, status = None, None
            if number is not None:
                async with db.sessions() as session:
                    payment = await session.get(Payment, number)
                    target = await refundable(session, payment) if payment is not None else None
                    status = payment.status if payment is not None else None
            if number is None:
                print(f"{args.payment!r} is not a payment number: give 12 or LB-000012 (lessonbot payments list).",
                      file=sys.stderr)
                outcome, code = "invalid", 2
            elif target is None:
                _no_payment(number)
                outcome, code = "invalid", 1
            elif status != PaymentStatus.PAID:
                print(f"Payment {number} is not a paid payment (lessonbot payments list).", file=sys.stderr)
                outcome, code = "invalid", 1
            else:
                result = await refund(desk, target)
                outcome, code = ("ok", 0) if result == "ok" else ("error", 1)
                if result != "ok":
                    print(f"The refund did not go through: {result}", file=sys.stderr)
                async with db.transaction() as session:
                    paid = await session.get(Payment, number) if result == "ok" else None
                    if paid is not None and renewed_since(paid, target):
                        if target.charge_reference:  # the month before the renewal: given back
                            await charge_given_back(session, paid, utcnow(), paid_by=target.charge_reference)
                        print(f"Payment {number} renewed while it was being refunded: the charge before the renewal "
                              "was given back and the subscription cancelled; run the refund again to give back the "
                              "period just paid for.")
                    elif paid is not None:
                        text = await record_refund(session, paid, now=utcnow(), note=f"refunded by {identity}",
                                                   given_back=target.charge_reference or None)
                        if text is not None and not await tell(session, paid, text):
                            print(f"Refunded payment {number}. Its buyer erased their data, so there was no access "
                                  "to revoke and no one to tell.")
                        else:
                            left = await remaining_access(session, paid.user_id,
                                                          await session.get(Course, paid.course_id), utcnow())
                            print(refunded_for_admin(translator("en"), str(number), target, left))
            async with db.transaction() as session:
                session.add(AdminAuditEntry(identity=identity, command="payments refund", arguments=args.payment,
                                            outcome=outcome))
        for channel in channels:
            await channel.close()
        return code

    return asyncio.run(main())
