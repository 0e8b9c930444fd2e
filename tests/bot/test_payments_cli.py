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


async def run(env: dict[str, str], *args: str, command: str = "payments") -> tuple[int, str, str]:
    """`lessonbot payments ARGS` (or another `command`) in a child process: its exit code, output and errors."""
    process = await asyncio.create_subprocess_exec(*LESSONBOT, command, *args, env=env,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
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


async def test_unpublishing_or_repricing_from_the_command_line_closes_the_pages_no_longer_on_sale(settings, tmp_path):
    """`lessonbot course unpublish` closes the open Stripe payment page of someone not taking the course (Ann's), and
    `lessonbot course import` of the course at another price closes the page offering the old one (Bob's, who is
    taking it); each page closed is recorded as expired."""
    import shutil

    from storage.courses import Enrollment

    db = Database(settings.resolved_database_url)
    async with db.transaction() as session:
        from authoring.format import load_course
        from authoring.importer import import_course

        await import_course(session, load_course(PAID))
        course = await session.scalar(select(Course))
        assert course is not None
        ann, bob = User(display_name="Ann"), User(display_name="Bob")
        session.add_all([ann, bob])
        await session.flush()
        session.add(Enrollment(user_id=bob.id, course_id=course.id))
        for user, reference in ((ann, "cs_test_ann"), (bob, "cs_test_bob")):
            session.add(Payment(user_id=user.id, offered_to=user.id, course_id=course.id, provider=STRIPE,
                                reference=reference, amount_minor=300, currency="GBP",
                                status=PaymentStatus.OPEN.value, channel="test", chat_id=reference,
                                sender_id=reference))
    repriced = tmp_path / "repriced"
    shutil.copytree(PAID, repriced)
    (repriced / "course.yaml").write_text((repriced / "course.yaml").read_text().replace("  amount: 3.00\n",
                                                                                       "  amount: 4.50\n"))

    async def statuses() -> list[str]:
        async with db.sessions() as session:
            return list(await session.scalars(select(Payment.status).order_by(Payment.id)))

    async with StripeStandIn() as stripe_api:
        for reference in ("cs_test_ann", "cs_test_bob"):
            stripe_api.sessions[reference] = {"id": reference, "status": "open"}
        env = server_env(settings.resolved_database_url, tmp_path / "cli", STRIPE_SECRET_KEY=SECRET_KEY,
                         STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, STRIPE_API_BASE_URL=stripe_api.base_url,
                         PUBLIC_BASE_URL="https://bot.example.test")
        code, out, err = await run(env, "unpublish", "passwords-that-hold", command="course")
        assert code == 0 and out.endswith("Closed 1 payment page opened by people not taking it.\n"), err
        assert [stripe_api.sessions[ref]["status"] for ref in ("cs_test_ann", "cs_test_bob")] == ["expired", "open"]
        assert await statuses() == [PaymentStatus.EXPIRED, PaymentStatus.OPEN]

        code, out, err = await run(env, "import", "--replace", str(repriced), command="course")
        assert "Closed 1 payment page that sold the course as it is no longer sold" in out, err
        assert stripe_api.sessions["cs_test_bob"]["status"] == "expired"
        assert await statuses() == [PaymentStatus.EXPIRED, PaymentStatus.EXPIRED]
    await db.dispose()

