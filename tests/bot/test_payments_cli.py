"""`lessonbot payments list|show|refund`: the command line in a child process, refunding through the real `stripe`
client against the Stripe stand-in."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bench.processes import LESSONBOT
from standins.stripe import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
from storage.courses import SOURCE_PURCHASE, Course, Entitlement
from storage.db import Database
from storage.models import AdminAuditEntry, OutboxMessage, User, utcnow
from storage.payments import PURCHASE_CHARGE, STRIPE, Payment, PaymentCharge, PaymentStatus
from tests.dialogs.learning_support import PAID
from tests.support import server_env


async def run(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(*LESSONBOT, "payments", *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode(), err.decode()


async def sold(db: Database, *, reference: str, charge_reference: str | None = None,
               discount_minor: int = 0) -> tuple[Course, int]:
    """The paid example course imported, and Ann's Stripe purchase of it (3.00 GBP less `discount_minor`), paid, its
    access granted and its charge recorded, as a checkout's completion leaves them: the course and the payment's id."""
    from authoring.format import load_course
    from authoring.importer import import_course

    async with db.transaction() as session:
        await import_course(session, load_course(PAID))
        course = await session.scalar(select(Course))
        assert course is not None
        user = User(display_name="Ann")
        session.add(user)
        await session.flush()
        payment = Payment(user_id=user.id, course_id=course.id, provider=STRIPE, reference=reference,
                          charge_reference=charge_reference, amount_minor=300, discount_minor=discount_minor,
                          currency="GBP", status=PaymentStatus.PAID.value, channel="whatsapp",
                          chat_id="+15551234567", sender_id="+15551234567")
        session.add(payment)
        await session.flush()
        session.add(Entitlement(user_id=user.id, course_id=course.id, source=SOURCE_PURCHASE,
                                reference=payment.entitlement_reference))
        session.add(PaymentCharge(payment_id=payment.id, reference=PURCHASE_CHARGE, amount_minor=300 - discount_minor,
                                  charged_at=utcnow()))
        return course, payment.id


async def test_list_show_and_refund_from_the_command_line(settings, tmp_path):
    db = Database(settings.resolved_database_url)
    course, number = await sold(db, reference="cs_test_cli", charge_reference="pi_test_cli")

    async with StripeStandIn() as stripe_api:
        stripe_api.sessions["cs_test_cli"] = {"id": "cs_test_cli", "payment_intent": "pi_test_cli",
                                              "amount_total": 300, "currency": "gbp"}
        env = server_env(settings.resolved_database_url, tmp_path / "cli", STRIPE_SECRET_KEY=SECRET_KEY,
                         STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, STRIPE_API_BASE_URL=stripe_api.base_url,
                         PUBLIC_BASE_URL="https://bot.example.test")
        code, out, err = await run(env, "list")
        assert code == 0 and out.startswith(f"LB-{number:06d}\tpaid\t3.00 GBP"), err
        assert f"revenue\tcourse={course.id}\t3.00 GBP\tpayments=1\trenewals=0\trefunded=0" in out
        code, out, _err = await run(env, "show", f"LB-{number:06d}")
        assert code == 0 and "charge_reference: pi_test_cli" in out
        code, out, err = await run(env, "refund", "twelve")
        assert code == 2 and "is not a payment number" in err
        code, out, err = await run(env, "refund", f"LB-{number + 1:06d}")  # no such payment: said so, as by show
        assert code == 1 and err == f"No payment {number + 1} (lessonbot payments list shows them).\n", err
        assert (await run(env, "show", str(number + 1)))[2] == err
        code, out, err = await run(env, "refund", str(number))
        assert code == 0 and out.startswith(f"Refunded payment {number}"), err
        assert [refund["payment_intent"] for refund in stripe_api.refunds] == ["pi_test_cli"]
        code, out, err = await run(env, "refund", str(number))
        assert code == 1 and "is not a paid payment" in err
        assert len(stripe_api.refunds) == 1

    async with db.sessions() as session:
        refunded = await session.get(Payment, number)
        assert refunded.status == PaymentStatus.REFUNDED and refunded.note.startswith("refunded by cli:")
        assert (await session.scalar(select(Entitlement))).revoked_at is not None
        [told] = (await session.scalars(select(OutboxMessage))).all()
        assert told.chat_id == "+15551234567" and "was refunded" in told.payload["text"]
        audit = [(row.command, row.outcome) for row in await session.scalars(select(AdminAuditEntry))]
        assert audit == [("payments refund", "invalid"), ("payments refund", "invalid"), ("payments refund", "ok"),
                         ("payments refund", "invalid")]
    await db.dispose()


async def test_a_purchase_a_promotion_made_free_is_refunded_from_the_command_line_without_asking_stripe(settings,
                                                                                                       tmp_path):
    """Nothing was charged (a promotion took the whole price off; Stripe reported no payment intent): the refund
    gives back nothing, asks Stripe for nothing, and takes the access back."""
    db = Database(settings.resolved_database_url)
    _course, number = await sold(db, reference="cs_test_free", discount_minor=300)

    async with StripeStandIn() as stripe_api:
        env = server_env(settings.resolved_database_url, tmp_path / "cli", STRIPE_SECRET_KEY=SECRET_KEY,
                         STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, STRIPE_API_BASE_URL=stripe_api.base_url,
                         PUBLIC_BASE_URL="https://bot.example.test")
        code, out, err = await run(env, "refund", f"LB-{number:06d}")
        assert code == 0, err
        assert out.startswith(f"Refunded payment {number}; the access it gave revoked and the learner told. Nothing "
                              "was charged for it"), out
        assert stripe_api.calls == []

    async with db.sessions() as session:
        assert (await session.get(Payment, number)).status == PaymentStatus.REFUNDED
        assert (await session.scalar(select(Entitlement))).revoked_at is not None
        [told] = (await session.scalars(select(OutboxMessage))).all()
        assert "was refunded" in told.payload["text"]
    await db.dispose()
