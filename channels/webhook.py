"""The one shape of every webhook: size limit → verify → parse → record → acknowledge, each a small named step.

A platform's endpoint is a `Webhook` built from steps, as slack-bolt builds a request's path from small middlewares.
Each step reads what the steps before it left on the `WebhookRequest`, adds its part, or refuses the request by
raising RequestRejected, which answers at once with that status and message: so nothing is recorded unless every
step before recording passed, verification first of all. The acknowledgement is made from what recording came to,
and leaves as soon as the message is stored; processing happens later, in the conversation worker.

The steps are listed in the order the platform needs: Telegram's secret is a header, checked before the body is
read; Twilio signs the form fields, so its signature is checked once they are parsed; the web chat's session is a
field of the JSON it posts. The steps every platform shares are here; each platform's package adds its own
verification and says how its payload becomes a message (channels/<platform>/routes.py).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.channel import CannotRecord, RequestRejected
from channels.http import RETRY_AFTER_SECONDS, read_limited_body

log = logging.getLogger(__name__)


@dataclass
class WebhookRequest:
    """One inbound request on its way through a webhook's steps."""

    http: Request
    body: bytes = b""
    payload: Any = None  # the body as the platform's data (a JSON object, form fields, …), once parsed
    outcome: Any = None  # what recording came to, for the acknowledgement


class Step(Protocol):
    async def __call__(self, request: WebhookRequest) -> None:
        """Do this step's part of the request, or raise RequestRejected."""
        ...


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified request that is not a message for the bot: acknowledged, logged with `reason`, stored nowhere."""

    reason: str
    answer: str | None = None  # shown to the person where an acknowledgement can carry text (a Slack slash command)


class MediaType:
    """Refuse (415) a body of another media type than the platform sends."""

    def __init__(self, media_type: str, message: str) -> None:
        self.media_type = media_type
        self.message = message

    async def __call__(self, request: WebhookRequest) -> None:
        if not request.http.headers.get("content-type", "").startswith(self.media_type):
            raise RequestRejected(415, self.message)


class LimitBody:
    """Size limit: read the body, refusing (413) one over `max_bytes` without reading past it."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    async def __call__(self, request: WebhookRequest) -> None:
        request.body = await read_limited_body(request.http, self.max_bytes)


class HeaderSecret:
    """Verify: the shared secret the platform sends in a header, compared in constant time (401 missing, 403 wrong).

    `wrong` is the caller's answer and names nothing of this server's configuration; `hint`, what an operator should
    check, goes to the log."""

    def __init__(self, header: str, secret: str, *, missing: str, wrong: str, hint: str = "") -> None:
        if not secret:
            raise ValueError(f"an empty secret would let anyone through {header}")
        self.header = header
        self.secret = secret.encode()
        self.missing = missing
        self.wrong = wrong
        self.hint = hint

    async def __call__(self, request: WebhookRequest) -> None:
        given = request.http.headers.get(self.header)
        if not given:
            raise RequestRejected(401, self.missing)
        if not hmac.compare_digest(given.encode(), self.secret):
            log.warning("%s did not match the secret%s", self.header, f": {self.hint}" if self.hint else "")
            raise RequestRejected(403, self.wrong)


class Parse:
    """Parse: the body as the platform's payload; `parse` refuses (400) a body that is not one."""

    def __init__(self, parse: Callable[[bytes], Any]) -> None:
        self.parse = parse

    async def __call__(self, request: WebhookRequest) -> None:
        request.payload = self.parse(request.body)


class Record:
    """Record: `record` reads the verified payload as a message and stores it durably through the core (a repeated
    platform id is recognised there), or ignores it with a logged reason; what it returns is the outcome."""

    def __init__(self, record: Callable[[Any], Awaitable[Any]]) -> None:
        self.record = record

    async def __call__(self, request: WebhookRequest) -> None:
        try:
            request.outcome = await self.record(request.payload)
        except CannotRecord as exc:
            raise RequestRejected(503, str(exc)) from None


MAX_JSON_DEPTH = 64  # no platform's payload nests half as deep; Python's parser recurses once per level

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """How deep `body`'s arrays and objects nest, counted without parsing (brackets inside strings do not count),
    so a body nested thousands deep is measured without the recursion that parsing it would need."""
    brackets = _JSON_STRING.sub(b'""', body).translate(None, _NOT_A_BRACKET)
    depth = deepest = 0
    for bracket in brackets:
        if bracket in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def within_json_depth(body: bytes) -> None:
    """Refuse (400) JSON that nests deeper than MAX_JSON_DEPTH, before anything parses it. A body with no more opening
    brackets than that cannot nest deeper, and is not scanned."""
    if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        raise RequestRejected(400, f"The JSON nests deeper than {MAX_JSON_DEPTH} levels; send it flatter.")


_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19


def may_hold_a_long_integer(body: bytes) -> bool:
    """Whether `body` has a run of 19 digits, which may be an integer past 64 bits: orjson reads one as a float, where
    the standard library keeps it exact (a run inside a string only costs the slower reading). Every digit made a
    "0", then a substring search: a tenth of a regular expression's CPU (0.4 against 3.8 µs for an update)."""
    return _NINETEEN_DIGITS in body.translate(_DIGITS_AS_ZEROS)


def parse_json(body: bytes) -> Any:
    """The body as JSON; 400 when it is not JSON (UTF-8) or nests deeper than MAX_JSON_DEPTH."""
    within_json_depth(body)
    if not may_hold_a_long_integer(body):
        try:
            return orjson.loads(body)  # (a fifth of the standard library's CPU for an update)
        except orjson.JSONDecodeError:
            pass  # what orjson refuses and the standard library may take (NaN, a UTF-16 body)
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestRejected(400, f"The body is not valid JSON ({exc}).") from None




def refusal(exc: RequestRejected) -> Response:
    """The answer to a refused request: its status, and what to fix (a 503: when to try again)."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if exc.status == 503 else None
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)


class Webhook:
    """One webhook endpoint: its steps in order, then the acknowledgement made from the request they leave."""

    def __init__(
        self,
        *steps: Step,
        acknowledge: Callable[[WebhookRequest], Response],
        refuse: Callable[[RequestRejected], Response] = refusal,
    ) -> None:
        self.steps = steps
        self.acknowledge = acknowledge
        self.refuse = refuse

    async def handle(self, http: Request) -> Response:
        request = WebhookRequest(http)
        try:
            for step in self.steps:
                await step(request)
        except RequestRejected as exc:
            return self.refuse(exc)
        return self.acknowledge(request)

    def route(self, path: str) -> Route:
        return Route(path, self.handle, methods=["POST"])
