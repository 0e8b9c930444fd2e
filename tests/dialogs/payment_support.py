"""Helpers for the payment tests: Stripe's events built from Stripe's own payloads (tests/fixtures/stripe), signed as
Stripe signs them, and posted to the app's webhook."""

from __future__ import annotations

import copy
import itertools
import json
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from standins.stripe import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn, event_body, sign
from storage.courses import Entitlement
from storage.payments import Payment, PaymentEvent, revenue
from tests.conftest import FIXTURES
from tests.dialogs.learning_support import PAID

STRIPE_FIXTURES = FIXTURES / "stripe"
CHECKOUT_COMPLETED = STRIPE_FIXTURES / "stripe-ruby-mock" / "checkout.session.completed.payment_mode.json"
EVENT = STRIPE_FIXTURES / "stripe-openapi" / "fixture.event.json"
CHARGE = STRIPE_FIXTURES / "stripe-openapi" / "fixture.charge.json"
SUBSCRIPTION = STRIPE_FIXTURES / "stripe-openapi" / "fixture.subscription.json"
INVOICE = STRIPE_FIXTURES / "stripe-openapi" / "fixture.invoice.json"
PUBLIC = "https://bot.example.test"
_event_ids = itertools.count(1)


def stripe_settings(settings, api_base_url: str, **more: Any):
    return settings.model_copy(update={
        "stripe_secret_key": SECRET_KEY, "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base_url": api_base_url, "public_base_url": PUBLIC, **more,
    })


@asynccontextmanager
async def promotion_shop(settings, course: Path) -> AsyncIterator[tuple[StripeStandIn, httpx.AsyncClient, Any, Any,
                                                                        Any]]:
    """The app with Stripe's promotion codes on and `course` imported: the Stripe stand-in, the app's client, the
    bot, Ann (a learner) and the boss (an admin), in a test chat."""
    from tests.dialogs.learning_support import Learning, import_sample
    from tests.support import RecordingChannel, running

    channel = RecordingChannel()
    async with StripeStandIn() as stripe_api, running(
        stripe_settings(settings, stripe_api.base_url, stripe_promotion_codes=True, admins=("test:boss",)),
        channels=[channel],
    ) as (client, bot):
        await import_sample(bot, course)
        yield stripe_api, client, bot, Learning(bot, channel), Learning(bot, channel, chat="boss")


def checkout_event(session: dict[str, Any], kind: str = "checkout.session.completed", **changes: Any) -> dict[str, Any]:
    """A checkout.session.* event: stripe-ruby-mock's recorded one, carrying the stand-in's session."""
    event = json.loads(CHECKOUT_COMPLETED.read_text())
    event.update(id=f"evt_test_{next(_event_ids):06d}_{time.time_ns()}", type=kind, created=int(time.time()))
    shown = event["data"]["object"]
    for key in ("id", "mode", "amount_subtotal", "amount_total", "currency", "client_reference_id", "metadata",
                "payment_intent", "payment_status", "subscription", "invoice", "total_details", "success_url",
                "cancel_url", "url"):
        shown[key] = copy.deepcopy(session.get(key, shown.get(key)))
    shown.update(changes)
    return event


def _wrapped(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` in Stripe's example event, as an event of `kind` with a fresh id."""
    event = json.loads(EVENT.read_text())
    event.update(id=f"evt_test_{next(_event_ids):06d}_{time.time_ns()}", type=kind, created=int(time.time()),
                 data={"object": obj})
    return event


def refund_event(session: dict[str, Any], *, payment_intent: str | None = None) -> dict[str, Any]:
    """charge.refunded: Stripe's example charge, refunded in full, wrapped in Stripe's example event."""
    charge = json.loads(CHARGE.read_text())
    charge.update(payment_intent=payment_intent or session["payment_intent"], amount=session["amount_total"],
                  amount_captured=session["amount_total"], amount_refunded=session["amount_total"], refunded=True,
                  currency=session["currency"])
    return _wrapped("charge.refunded", charge)


def subscription_event(subscription: dict[str, Any], kind: str = "customer.subscription.updated",
                       **changes: Any) -> dict[str, Any]:
    """customer.subscription.*: Stripe's example subscription, carrying the stand-in's."""
    shown = json.loads(SUBSCRIPTION.read_text())
    for key in ("id", "status", "customer", "currency", "metadata", "cancel_at_period_end", "cancel_at", "canceled_at",
                "ended_at", "latest_invoice", "start_date", "created"):
        shown[key] = copy.deepcopy(subscription[key])
    [item] = shown["items"]["data"][:1]
    ours = subscription["items"]["data"][0]
    item.update(id=ours["id"], subscription=subscription["id"], current_period_start=ours["current_period_start"],
                current_period_end=ours["current_period_end"])
    shown["items"]["data"] = [item]
    shown.update(changes)
    return _wrapped(kind, shown)


def invoice_event(invoice: dict[str, Any], kind: str = "invoice.paid", **changes: Any) -> dict[str, Any]:
    """invoice.paid / invoice.payment_failed: Stripe's example invoice, carrying the stand-in's as a webhook delivers
    it: without its `payments` (an includable field, shown only where expanded) and, since API 2025-03-31, without
    `payment_intent`."""
    shown = json.loads(INVOICE.read_text())
    shown.pop("payments", None)
    shown.pop("payment_intent", None)
    for key in ("id", "status", "billing_reason", "currency", "customer", "subtotal", "total", "amount_due",
                "amount_paid", "amount_remaining", "attempt_count", "period_start", "period_end", "parent"):
        shown[key] = copy.deepcopy(invoice[key])
    shown["subscription"] = None  # the field moved to parent.subscription_details (API 2025-03-31)
    [line] = shown["lines"]["data"][:1]
    line.update(copy.deepcopy(invoice["lines"]["data"][0]))
    shown["lines"]["data"] = [line]
    shown.update(changes)
    return _wrapped(kind, shown)


def dispute_event(dispute: dict[str, Any], kind: str = "charge.dispute.closed") -> dict[str, Any]:
    """charge.dispute.*: the stand-in's dispute (StripeStandIn.dispute) in Stripe's example event."""
    return _wrapped(kind, copy.deepcopy(dispute))


async def post_event(client: httpx.AsyncClient, event: dict[str, Any], *, secret: str = WEBHOOK_SECRET,
                     timestamp: int | None = None, body: str | None = None) -> httpx.Response:
    body = body if body is not None else event_body(event)
    return await client.post("/webhooks/stripe", content=body.encode(), headers={
        "content-type": "application/json", "Stripe-Signature": sign(body, secret, timestamp=timestamp),
    })


async def count(bot, model) -> int:
    async with bot.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)))


async def entitlements(bot) -> list[Entitlement]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(Entitlement).order_by(Entitlement.id)))


async def payments(bot) -> list[Payment]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(Payment).order_by(Payment.id)))


async def takings(bot) -> list[tuple[int, int, int, int, int]]:
    """storage.payments.revenue as (sales, renewals, amount, refunds, refunded amount), a row a course and currency."""
    async with bot.db.sessions() as session:
        return [(row.payments, row.renewals, row.paid_minor, row.refunds, row.refunded_minor)
                for row in await revenue(session)]


async def events(bot) -> list[PaymentEvent]:
    async with bot.db.sessions() as session:
        return list(await session.scalars(select(PaymentEvent).order_by(PaymentEvent.id)))


def monthly_copy(tmp_path: Path) -> Path:
    """courses/examples/passwords, priced at 3.00 GBP a month (a copy under tmp_path)."""
    folder = tmp_path / "monthly"
    shutil.copytree(PAID, folder)
    course_file = folder / "course.yaml"
    course_file.write_text(course_file.read_text().replace("  currency: GBP\n", "  currency: GBP\n  period: month\n"))
    return folder
