"""A local stand-in of the Stripe API that the `stripe` library talks to through its API base address.

It answers what Lessonbot calls — `POST /v1/checkout/sessions` (a one-off payment) and `POST /v1/refunds` — the way
api.stripe.com does (form-encoded parameters with bracketed keys, a bearer secret key, JSON objects back), records
every call, and plays the buyer: `pay(session_id)` marks a session paid and gives it a payment intent. Stripe's
side of webhooks is `sign`: the `Stripe-Signature` header, made exactly as Stripe makes it (HMAC-SHA256 over
"timestamp.body" with the endpoint's `whsec_` secret, by the stripe library's own code).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from dataclasses import dataclass, field
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
        self.refunds: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> StripeStandIn:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create_session)
        app.router.add_post("/v1/refunds", self._create_refund)
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

    # the buyer -----------------------------------------------------------------------------------------------------

    def pay(self, session_id: str, *, payment_status: str = "paid") -> dict[str, Any]:
        """The buyer pays on the checkout page: the session as Stripe then reports it."""
        session = self.sessions[session_id]
        session.update(status="complete", payment_status=payment_status,
                       payment_intent=session["payment_intent"] or f"pi_test_{next(self._ids):06d}")
        return dict(session)

    # the API -------------------------------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any] | web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.secret_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        return nest({key: str(value) for key, value in (await request.post()).items()})

    async def _create_session(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        items = params.get("line_items") or []
        if params.get("mode") != "payment" or not items or not params.get("success_url"):
            return _error(400, "invalid_request_error", "mode=payment, line_items and success_url are required")
        price = items[0]["price_data"]
        total = int(price["unit_amount"]) * int(items[0].get("quantity", 1))
        number = next(self._ids)
        session = {
            "id": f"cs_test_{number:06d}", "object": "checkout.session", "mode": "payment", "status": "open",
            "payment_status": "unpaid", "amount_subtotal": total, "amount_total": total,
            "currency": price["currency"], "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}), "payment_intent": None, "livemode": False,
            "locale": params.get("locale"), "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"), "created": int(time.time()),
            "expires_at": int(time.time()) + 24 * 3600, "url": f"https://checkout.stripe.com/c/pay/cs_test_{number:06d}",
        }
        self.sessions[session["id"]] = session
        self.calls.append(Call("/v1/checkout/sessions", params, session))
        return web.json_response(session)

    async def _create_refund(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if isinstance(params, web.Response):
            return params
        intent = params.get("payment_intent")
        paid = next((s for s in self.sessions.values() if s["payment_intent"] == intent and intent), None)
        if paid is None:
            return _error(400, "invalid_request_error", f"No such payment_intent: '{intent}'")
        refund = {"id": f"re_test_{next(self._ids):06d}", "object": "refund", "amount": paid["amount_total"],
                  "currency": paid["currency"], "payment_intent": intent, "status": "succeeded"}
        self.refunds.append(refund)
        self.calls.append(Call("/v1/refunds", params, refund))
        return web.json_response(refund)


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message}}, status=status)


def sign(body: str, secret: str = WEBHOOK_SECRET, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `body` (now, or at `timestamp`)."""
    return str(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp))


def event_body(event: dict[str, Any]) -> str:
    return json.dumps(event, indent=2)
