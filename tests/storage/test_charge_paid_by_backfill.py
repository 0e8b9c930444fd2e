"""Migration 0030 fills in `payment_charges.paid_by` for charges recorded before it: a purchase never renewed is named
by its payment's `charge_reference`, a Stars purchase renewed since by its payment's `reference` and a Stars renewal by
its own, while a renewed Stripe subscription's charges stay unnamed; a charge refunded before it was given back whole
(`refunded_minor`). On SQLite and PostgreSQL, from a database downgraded with rows."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command

from storage.db import Database
from storage.migrate import alembic_config, upgrade
from storage.payments import (
    PURCHASE_CHARGE,
    STRIPE,
    TELEGRAM,
    Payment,
    PaymentStatus,
    charge_given_back,
    charges_of,
    record_charge,
)
from tests.scheduler.support import add_learner, sample_course

AT = datetime(2026, 11, 1, tzinfo=timezone.utc)




def paid(user: int, course: int, provider: str, reference: str, *, charge_reference: str | None = None,
         amount_minor: int = 300, currency: str = "GBP", period: str | None = None) -> Payment:
    return Payment(user_id=user, offered_to=user, course_id=course, provider=provider, reference=reference,
                   charge_reference=charge_reference, amount_minor=amount_minor, currency=currency, period=period,
                   status=PaymentStatus.PAID.value, channel="test", chat_id="learner", sender_id="learner",
                   paid_at=AT)


async def test_charges_recorded_before_0030_are_named_and_their_refunds_counted(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        course = await sample_course(db)
        user = await add_learner(db, course_id=course)
        async with db.transaction() as session:
            bought = paid(user, course, STRIPE, "cs_once", charge_reference="pi_once")
            # the payment names the latest month's intent, not the one that paid the first month
            subscribed = paid(user, course, STRIPE, "cs_monthly", charge_reference="pi_month_2", period="month")
            stars = paid(user, course, TELEGRAM, "tg_first", amount_minor=50, currency="XTR", period="month")
            session.add_all([bought, subscribed, stars])
            await session.flush()
            # the values written here are dropped by the downgrade: what is read back is what 0030 computed
            for payment, reference, amount in ((bought, PURCHASE_CHARGE, 300), (subscribed, PURCHASE_CHARGE, 300),
                                               (subscribed, "in_month_2", 250), (stars, PURCHASE_CHARGE, 50),
                                               (stars, "tg_second", 50)):
                assert await record_charge(session, payment, reference=reference, amount_minor=amount, now=AT,
                                           paid_by=f"stale_{reference}")
            assert await charge_given_back(session, bought, AT, reference=PURCHASE_CHARGE)
            assert await charge_given_back(session, subscribed, AT, reference="in_month_2")
            payments = {"bought": bought.id, "subscribed": subscribed.id, "stars": stars.id}
    finally:
        await db.dispose()
    command.downgrade(alembic_config(fresh_url), "0029")
    upgrade(fresh_url)
    db = Database(fresh_url)
    try:
        async with db.sessions() as session:
            found = await charges_of(session, list(payments.values()))
        charges = {(name, charge.reference): charge for name, payment_id in payments.items()
                   for charge in found[payment_id]}
    finally:
        await db.dispose()
    named = {key: charge.paid_by for key, charge in charges.items()}
    assert named == {
        ("bought", PURCHASE_CHARGE): "pi_once",  # never renewed: what its payment names
        ("subscribed", PURCHASE_CHARGE): None,  # renewed: the payment's intent is a later month's
        ("subscribed", "in_month_2"): None,  # a Stripe renewal: what paid it is not known
        ("stars", PURCHASE_CHARGE): "tg_first",  # a Stars purchase: its payment's own reference
        ("stars", "tg_second"): "tg_second",  # a Stars renewal: its own charge id
    }
    given_back = {key: charge.refunded_minor for key, charge in charges.items()}
    assert given_back == {
        ("bought", PURCHASE_CHARGE): 300,
        ("subscribed", PURCHASE_CHARGE): None,
        ("subscribed", "in_month_2"): 250,  # the charge's own amount, not the payment's
        ("stars", PURCHASE_CHARGE): None,
        ("stars", "tg_second"): None,
    }
    assert all(charge.refunded_at is not None for key, charge in charges.items() if given_back[key] is not None)
