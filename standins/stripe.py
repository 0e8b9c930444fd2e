"""A local stand-in of the Stripe API that the `stripe` library talks to through its API base address.

It answers what Lessonbot calls the way api.stripe.com does: `POST /v1/checkout/sessions` (a one-off payment, or a
subscription with a monthly price), `POST /v1/checkout/sessions/{id}/expire` (an open session only),
`POST /v1/refunds`, `DELETE /v1/subscriptions/{id}` (cancel now), `POST /v1/subscriptions/{id}` with
`cancel_at_period_end` (cancel at the period's end, or resume: the subscription stays active, `cancel_at` and
`canceled_at` set or cleared), `GET /v1/invoices?subscription=…[&status=…]` and
`GET /v1/invoices/{id}`, with form-encoded parameters with bracketed keys, a bearer secret key, JSON objects back, an
amount in Stripe's units of its currency (ISK in hundredths, charged in whole krónur). It records every call, and
plays the buyer and Stripe's billing: `pay(session_id)` marks a session paid (with a promotion code's `discount`,
when the session allows them) and gives it a payment intent, or for a subscription starts the subscription and its
first paid invoice; `renew(subscription_id)` bills the next month, paid or failed; `period_ends(subscription_id)`
ends at its period's end a subscription set to cancel then. `fail(path, *errors)` scripts the next calls to a path
to be answered with Stripe's errors (a 400 `invalid_request_error`, a 500 `api_error`), one call each. An invoice's
`payments` (the invoice payments, each naming its payment intent) are an includable field, as at Stripe: the API
shows them only where asked (`expand[]=payments`, or `data.payments` in a list), and `invoices` keeps each invoice
with them, so a test reads what paid it (`paid_by`) and builds its webhook payload without them.
A refund of a payment intent that paid nothing (a renewal's failed attempt) is refused, as Stripe refuses it. What a
promotion code made free (`payment_status="no_payment_required"`) is paid with no payment at all, as at Stripe: the
checkout has no payment intent, and an invoice of nothing is paid with no invoice payment.
Stripe's side of webhooks is `sign`: the `Stripe-Signature` header, made exactly as Stripe makes it (HMAC-SHA256
over "timestamp.body" with the endpoint's `whsec_` secret, by the stripe library's own code).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from aiohttp import web

from standins.serving import serve_locally

SECRET_KEY = "sk_test_stand-in_0123456789abcdef"
WEBHOOK_SECRET = "whsec_stand-in_0123456789abcdef"


@dataclass
class Call:
    path: str
    params: dict[str, Any]
    result: Any = None
    at: float = field(default_factory=time.monotonic)


def nest(form: dict[str, str]) -> dict[str, Any]:
    """Stripe's form encoding back to objects: `line_items[0][price_data][currency]=eur` → nested dicts/lists."""
    root: dict[str, Any] = {}
    for key, value in form.items():
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            following = parts[index + 1] if not last else None
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append({} if following is None or not following.isdigit() else [])
                if last:
                    node[position] = value
                else:
                    if not isinstance(node[position], dict | list):
                        node[position] = [] if following is not None and following.isdigit() else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if following is not None and following.isdigit() else {})
    return root


class StripeStandIn:
    def __init__(self, *, secret_key: str = SECRET_KEY) -> None:
        self.secret_key = secret_key
        self.calls: list[Call] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self._subscription_metadata: dict[str, dict[str, Any]] = {}  # a session's subscription_data[metadata]
        self.refunds: list[dict[str, Any]] = []
        # What happens at Stripe while it answers a refund, before the answer leaves (a renewal charged meanwhile)
        self.while_refunding: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        # What happens while Stripe answers a page's expiry, before the answer leaves (the person erased meanwhile)
        self.while_expiring: Callable[[str], Awaitable[None]] | None = None
        self._faults: dict[str, list[StripeError]] = {}  # the errors the next calls to a path are answered with
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> StripeStandIn:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_post("/v1/checkout/sessions/{id}/expire", self._expire_session)
        app.router.add_post("/v1/refunds", self._create_refund)
        app.router.add_delete("/v1/subscriptions/{id}", self._cancel_subscription)
        app.router.add_post("/v1/subscriptions/{id}", self._update_subscription)
        app.router.add_get("/v1/invoices", self._list_invoices)
        app.router.add_get("/v1/invoices/{id}", self._retrieve_invoice)
        self._runner, self.port = await serve_locally(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        """What STRIPE_API_BASE_URL is set to."""
        return f"http://127.0.0.1:{self.port}"

    def called(self, path: str) -> list[Call]:
        return [call for call in self.calls if call.path == path]

    def fail(self, path: str, *errors: StripeError) -> None:
        """Answer the next calls to `path` (one each) with `errors`, as Stripe answers a refusal or an outage."""
        self._faults.setdefault(path, []).extend(errors)

    # the buyer -----------------------------------------------------------------------------------------------------

    def lapse(self, session_id: str) -> dict[str, Any]:
        """The buyer leaves the checkout page unpaid until it expires (24 hours after it was made): the session as
        Stripe then reports it (`checkout.session.expired`)."""
        session = self.sessions[session_id]
        if session["status"] != "open":
            raise ValueError(f"this checkout is {session['status']}, not open: it does not expire")
        session.update(status="expired", url=None)
        return dict(session)

    def pay(self, session_id: str, *, payment_status: str = "paid", discount: int = 0) -> dict[str, Any]:
        """The buyer pays on the checkout page (with a promotion code taking `discount` off, where the session
        allows codes): the session as Stripe then reports it."""
        session = self.sessions[session_id]
        if session["status"] == "expired":
            raise ValueError("this checkout expired: nobody can pay on it")
        if discount and not session["allow_promotion_codes"]:
            raise ValueError("this checkout takes no promotion codes")
        session["total_details"]["amount_discount"] = discount
        session.update(status="complete", payment_status=payment_status,
                       amount_total=session["amount_subtotal"] - discount)
        if session["mode"] == "subscription":
            if session["subscription"] is None:
                subscription = self._subscribe(session)
                invoice = self._bill(subscription, paid=payment_status in ("paid", "no_payment_required"),
                                     reason="subscription_create", discount=discount)
                session.update(subscription=subscription["id"], invoice=invoice["id"])
        elif payment_status != "no_payment_required":  # (a checkout a promotion made free has no payment intent)
            session["payment_intent"] = session["payment_intent"] or f"pi_test_{next(self._ids):06d}"
        return dict(session)

    def renew(self, subscription_id: str, *, paid: bool = True) -> dict[str, Any]:
        """Stripe bills the next month: the invoice, paid or failed (the subscription then falls past due)."""
        subscription = self.subscriptions[subscription_id]
        item = subscription["items"]["data"][0]
        item["current_period_start"] = item["current_period_end"]
        item["current_period_end"] = next_month(item["current_period_start"])
        return self._bill(subscription, paid=paid, reason="subscription_cycle")

    def _subscribe(self, session: dict[str, Any]) -> dict[str, Any]:
        now = int(time.time())
        number = next(self._ids)
        subscription = {
            "id": f"sub_test_{number:06d}", "object": "subscription", "status": "active",
            "customer": f"cus_test_{number:06d}", "currency": session["currency"],
            "metadata": self._subscription_metadata[session["id"]],
            "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None, "created": now,
            "start_date": now,
            "latest_invoice": None, "items": {"object": "list", "data": [{
                "id": f"si_test_{number:06d}", "object": "subscription_item", "quantity": 1,
                "current_period_start": now, "current_period_end": next_month(now),
                "price": {"currency": session["currency"], "unit_amount": session["amount_subtotal"],
                          "recurring": {"interval": "month", "interval_count": 1}},
            }]},
        }
        self.subscriptions[subscription["id"]] = subscription
        return subscription

    def _bill(self, subscription: dict[str, Any], *, paid: bool, reason: str, discount: int = 0) -> dict[str, Any]:
        item = subscription["items"]["data"][0]
        amount = item["price"]["unit_amount"]
        number = next(self._ids)
        intent = f"pi_test_{number:06d}"
        status = "paid" if paid else "open"
        free = amount - discount == 0  # an invoice a promotion made free is paid with no payment at all
        invoice = {
            "id": f"in_test_{number:06d}", "object": "invoice", "status": "paid" if paid else "open",
            "billing_reason": reason, "currency": subscription["currency"], "customer": subscription["customer"],
            "subtotal": amount, "total": amount - discount, "amount_due": amount - discount,
            "amount_paid": amount - discount if paid else 0, "amount_remaining": 0 if paid else amount - discount,
            "attempt_count": 1, "period_start": item["current_period_start"],
            "period_end": item["current_period_start"],
            "parent": {"type": "subscription_details", "quote_details": None, "subscription_details": {
                "subscription": subscription["id"], "metadata": subscription["metadata"]}},
            "lines": {"object": "list", "data": [{
                "id": f"il_test_{number:06d}", "object": "line_item", "amount": amount, "currency":
                subscription["currency"], "metadata": subscription["metadata"], "quantity": 1,
                "period": {"start": item["current_period_start"], "end": item["current_period_end"]},
            }]},
            "payments": {"object": "list", "has_more": False, "url": "/v1/invoice_payments", "data": [] if free
                         else [{
                "id": f"inpay_test_{number:06d}", "object": "invoice_payment", "invoice": f"in_test_{number:06d}",
                "amount_paid": amount - discount if paid else None, "amount_requested": amount - discount,
                "currency": subscription["currency"], "is_default": True, "livemode": False, "status": status,
                "payment": {"type": "payment_intent", "payment_intent": intent},
                "status_transitions": {"canceled_at": None, "paid_at": int(time.time()) if paid else None},
            }]},
        }
        self.invoices[invoice["id"]] = invoice
        subscription["latest_invoice"] = invoice["id"]
        subscription["status"] = "active" if paid else "past_due"
        return invoice

    def subscription(self, subscription_id: str) -> dict[str, Any]:
        return dict(self.subscriptions[subscription_id])

    def period_ends(self, subscription_id: str) -> dict[str, Any]:
        """The period of a subscription set to cancel at its end is over: Stripe ends it then (what
        `customer.subscription.deleted` reports)."""
        subscription = self.subscriptions[subscription_id]
        if not subscription["cancel_at_period_end"]:
            raise ValueError("this subscription renews at its period's end: it is not ended then")
        subscription.update(status="canceled", ended_at=subscription["cancel_at"])
        return dict(subscription)

    def paid_by(self, invoice_id: str) -> str:
        """The payment intent of an invoice's (latest) invoice payment."""
        return str(self.invoices[invoice_id]["payments"]["data"][-1]["payment"]["payment_intent"])

    def dispute(self, payment_intent: str, status: str = "lost", *, reason: str = "fraudulent") -> dict[str, Any]:
        """A dispute (a chargeback) of what `payment_intent` charged, as Stripe's charge.dispute.* events carry it."""
        paid = self._charged(payment_intent)
        if paid is None:
            raise KeyError(payment_intent)
        number = next(self._ids)
        return {"id": f"du_test_{number:06d}", "object": "dispute", "amount": paid["amount"],
                "currency": paid["currency"], "charge": f"ch_test_{number:06d}", "payment_intent": payment_intent,
                "reason": reason, "status": status, "is_charge_refundable": False, "livemode": False,
                "created": int(time.time()), "balance_transactions": [], "metadata": {}}

    def _charged(self, intent: str | None) -> dict[str, Any] | None:
        """What a payment intent charged (a paid checkout's, or a paid invoice payment's), if it charged anything."""
        if not intent:
            return None
        for session in self.sessions.values():
            if session["payment_intent"] == intent:
                return {"amount": session["amount_total"], "currency": session["currency"]}
        for invoice in self.invoices.values():
            for paid in invoice["payments"]["data"]:
                if paid["payment"]["payment_intent"] == intent and paid["status"] == "paid":
                    return {"amount": paid["amount_paid"], "currency": invoice["currency"]}
        return None

    # the API -------------------------------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        faults = self._faults.get(request.path)
        if faults:
            fault = faults.pop(0)
            self.calls.append(Call(request.path, {"failed": fault.status}, fault.message))
            return _error(fault.status, fault.kind, fault.message)
        return nest({key: str(value) for key, value in (await request.post()).items()})

    async def _create_session(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        items = params.get("line_items") or []
        mode = params.get("mode")
        if mode not in ("payment", "subscription") or not items or not params.get("success_url"):
            return _error(400, "invalid_request_error", "mode, line_items and success_url are required")
        price = items[0]["price_data"]
        if (mode == "subscription") != ("recurring" in price):
            return _error(400, "invalid_request_error",
                          "a subscription needs a recurring price, a payment a one-off one")
        if mode == "subscription" and "payment_intent_data" in params:
            return _error(400, "invalid_request_error", "payment_intent_data can only be used in payment mode")
        total = int(price["unit_amount"]) * int(items[0].get("quantity", 1))
        if price["currency"] == "isk" and total % 100:
            return _error(400, "invalid_request_error", "Invalid amount. Currency ISK has become effectively "
                          "zero-decimal and charged amounts must be evenly divisible by 100.")
        number = next(self._ids)
        session = {
            "id": f"cs_test_{number:06d}", "object": "checkout.session", "mode": mode, "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": price["currency"], "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}), "payment_intent": None, "livemode": False,
            "subscription": None, "invoice": None,
            "allow_promotion_codes": params.get("allow_promotion_codes") == "true",
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "locale": params.get("locale"), "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"), "created": int(time.time()),
            "expires_at": int(time.time()) + 24 * 3600, "url": f"https://checkout.stripe.com/c/pay/cs_test_{number:06d}",
        }
        self.sessions[session["id"]] = session
        self._subscription_metadata[session["id"]] = (params.get("subscription_data") or {}).get("metadata", {})
        self.calls.append(Call("/v1/checkout/sessions", params, session))
        return web.json_response(session)

    async def _expire_session(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        if self.while_expiring is not None:
            await self.while_expiring(request.match_info["id"])
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return _error(404, "invalid_request_error", f"No such checkout.session: '{request.match_info['id']}'")
        if session["status"] != "open":
            return _error(400, "invalid_request_error",
                          'Only Checkout Sessions with a status in ["open"] can be expired.')
        session.update(status="expired", url=None)
        self.calls.append(Call(f"/v1/checkout/sessions/{session['id']}/expire", params, session))
        return web.json_response(session)

    async def _create_refund(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        intent = params.get("payment_intent")
        paid = self._charged(intent)
        if paid is None:
            return _error(400, "invalid_request_error", f"PaymentIntent '{intent}' does not have a successful charge "
                                                        "to refund.")
        refund = {"id": f"re_test_{next(self._ids):06d}", "object": "refund", "amount": paid["amount"],
                  "currency": paid["currency"], "payment_intent": intent, "status": "succeeded"}
        self.refunds.append(refund)
        self.calls.append(Call("/v1/refunds", params, refund))
        if self.while_refunding is not None:
            await self.while_refunding(refund)
        return web.json_response(refund)


    async def _live_subscription(self, request: web.Request, *, if_canceled: str
                                 ) -> tuple[dict[str, Any], dict[str, Any]] | web.Response:
        """The request's parameters and the live subscription it names; or Stripe's answer when there is none (404),
        or it is canceled (400, `if_canceled`)."""
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        subscription = self.subscriptions.get(request.match_info["id"])
        if subscription is None:
            return _error(404, "invalid_request_error", f"No such subscription: '{request.match_info['id']}'")
        if subscription["status"] == "canceled":
            return _error(400, "invalid_request_error", if_canceled)
        return params, subscription

    async def _cancel_subscription(self, request: web.Request) -> web.Response:
        found = await self._live_subscription(request, if_canceled="This subscription has already been canceled")
        if isinstance(found, web.Response):
            return found
        params, subscription = found
        now = int(time.time())
        subscription.update(status="canceled", canceled_at=now, ended_at=now)
        self.calls.append(Call(f"/v1/subscriptions/{subscription['id']}", params, subscription))
        return web.json_response(subscription)

    async def _update_subscription(self, request: web.Request) -> web.Response:
        """`cancel_at_period_end`: true cancels at the period's end (the subscription stays active, `cancel_at` the
        period's end, `canceled_at` now), false resumes it; a canceled subscription can no longer be changed."""
        found = await self._live_subscription(request, if_canceled="A canceled subscription can only update its "
                                                                   "cancellation_details and metadata.")
        if isinstance(found, web.Response):
            return found
        params, subscription = found
        if "cancel_at_period_end" in params:
            at_end = params["cancel_at_period_end"] == "true"
            period_end = subscription["items"]["data"][0]["current_period_end"]
            subscription.update(cancel_at_period_end=at_end, cancel_at=period_end if at_end else None,
                                canceled_at=int(time.time()) if at_end else None)
        self.calls.append(Call(f"/v1/subscriptions/{subscription['id']}", params, dict(subscription)))
        return web.json_response(subscription)

    async def _list_invoices(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        query = nest(dict(request.query))
        wanted, status = query.get("subscription"), query.get("status")
        found = [invoice for invoice in reversed(self.invoices.values())
                 if invoice["parent"]["subscription_details"]["subscription"] == wanted
                 and status in (None, invoice["status"])]
        limit = int(query.get("limit", "10"))
        shown = [_shown(invoice, "data.payments" in query.get("expand", [])) for invoice in found[:limit]]
        self.calls.append(Call("/v1/invoices", query, shown))
        return web.json_response({"object": "list", "url": "/v1/invoices", "has_more": len(found) > limit,
                                  "data": shown})

    async def _retrieve_invoice(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        query = nest(dict(request.query))
        invoice = self.invoices.get(request.match_info["id"])
        if invoice is None:
            return _error(404, "invalid_request_error", f"No such invoice: '{request.match_info['id']}'")
        shown = _shown(invoice, "payments" in query.get("expand", []))
        self.calls.append(Call(f"/v1/invoices/{invoice['id']}", query, shown))
        return web.json_response(shown)


def _shown(invoice: dict[str, Any], payments: bool) -> dict[str, Any]:
    """An invoice as the API shows it: `payments` is includable, there only when asked for."""
    return invoice if payments else {key: value for key, value in invoice.items() if key != "payments"}


def next_month(moment: int) -> int:
    """The same day and time a month later (the month's last day where it has no such day), as Stripe bills."""
    start = datetime.fromtimestamp(moment, UTC)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    for day in range(start.day, 27, -1):  # the 29th to the 31st: the next month's last day if it has none such
        try:
            return int(start.replace(year=year, month=month, day=day).timestamp())
        except ValueError:
            continue
    return int(start.replace(year=year, month=month, day=min(start.day, 28)).timestamp())


@dataclass(frozen=True)
class StripeError:
    """An error Stripe answers with: its HTTP status, its `type` and its message."""

    status: int
    kind: str
    message: str

    @classmethod
    def refused(cls, message: str = "This request was refused.") -> StripeError:
        return cls(400, "invalid_request_error", message)

    @classmethod
    def outage(cls) -> StripeError:
        return cls(500, "api_error", "An unknown error occurred.")


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


def sign(body: str, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `body` (now, or at `timestamp`)."""
    return str(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp))


def event_body(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)
