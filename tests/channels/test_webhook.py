"""The webhook skeleton on its own: steps run in order, a refusal answers at once and nothing after it runs, and the
acknowledgement is made from what recording came to. (Each platform's webhook is proven through the real app in its
own tests.)"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.channel import RequestRejected
from channels.http import read_limited_body
from channels.webhook import (
    MAX_JSON_DEPTH,
    HeaderSecret,
    LimitBody,
    MediaType,
    Parse,
    Record,
    Webhook,
    WebhookRequest,
    may_hold_a_long_integer,
    parse_json,
    within_json_depth,
)

SECRET = "a-shared-secret"


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestRejected(400, "not JSON") from None
    if not isinstance(data, dict):
        raise RequestRejected(400, "not an object")
    return data


@pytest.fixture
def recorded() -> list[dict[str, Any]]:
    return []


@pytest.fixture
async def client(recorded):
    async def record(payload: dict[str, Any]) -> int:
        recorded.append(payload)
        return len(recorded)

    def acknowledge(request: WebhookRequest) -> Response:
        return JSONResponse({"recorded": request.outcome}, status_code=202)

    webhook = Webhook(
        HeaderSecret("X-Secret", SECRET, missing="Missing X-Secret.", wrong="X-Secret does not match."),
        MediaType("application/json", "Send JSON."),
        LimitBody(64),
        Parse(json_object),
        Record(record),
        acknowledge=acknowledge,
    )
    app = Starlette(routes=[webhook.route("/hook")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def post(client: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    return await client.post("/hook", content=body, headers={"content-type": "application/json", **headers})


async def test_a_request_that_passes_every_step_is_recorded_then_acknowledged(client, recorded):
    response = await post(client, b'{"text": "hi"}', **{"X-Secret": SECRET})
    assert (response.status_code, response.json()) == (202, {"recorded": 1})
    assert recorded == [{"text": "hi"}]


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b'{"text": "hi"}', {}, 401, "Missing X-Secret."),
        (b'{"text": "hi"}', {"X-Secret": "wrong"}, 403, "X-Secret does not match."),
        # verification comes first: an unsigned body is refused for that, whatever else is wrong with it
        (b"x" * 100, {"X-Secret": ""}, 401, "Missing X-Secret."),
        (b'{"text": "hi"}', {"X-Secret": SECRET, "content-type": "text/plain"}, 415, "Send JSON."),
        (b'{"text": "' + b"x" * 100 + b'"}', {"X-Secret": SECRET}, 413, "the limit is 64"),
        (b"[1, 2]", {"X-Secret": SECRET}, 400, "not an object"),
    ],
)
async def test_a_refused_step_answers_at_once_and_nothing_is_recorded(client, recorded, body, headers, status, error):
    response = await post(client, body, **headers)
    assert response.status_code == status
    assert error in response.json()["error"]
    assert recorded == []


def test_an_empty_secret_is_refused_when_the_webhook_is_built():
    with pytest.raises(ValueError, match="anyone"):
        HeaderSecret("X-Secret", "", missing="", wrong="")


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        (b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, False),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), True),
        (b'{"a": ' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1), True),
        (b'{"text": "' + b"[{" * 100 + b'", "list": [[1], [2], [3]]}', False),  # brackets in a string nest nothing
        (b"[1]" * 200, False),  # many brackets, one level
    ],
)
def test_json_nested_deeper_than_the_limit_is_refused_before_it_is_parsed(body, refused):
    if refused:
        with pytest.raises(RequestRejected, match="nests deeper"):
            within_json_depth(body)
    else:
        within_json_depth(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"update_id": 18446744073709551616, "message": {"text": "hi"}}',  # an integer past 64 bits, kept exact
        b'{"chat": -9999999999999999999}',
        b'{"id": 90000000000000000000, "next": 123456789012345678}',  # 20 digits, of 0s and 9s; 18 beside it
        b'{"text": "caf\\u00e9 \xe2\x9c\x93", "n": 1.5, "ok": true, "none": null, "list": [1, "2"]}',
        b'{"a": 1, "a": 2}',  # the last of a repeated key
        b'{"x": NaN}',  # what the standard library takes and orjson does not
        '{"text": "utf-16"}'.encode("utf-16"),
    ],
)
def test_a_body_is_read_as_the_standard_library_reads_it(body):
    assert parse_json(body) == json.loads(body)


@pytest.mark.parametrize(
    ("body", "long"),
    [
        (b'{"id": 1234567890123456789}', True),
        (b'{"id": 9000000000000000009}', True),
        (b'{"id": 123456789012345678, "date": 1764950000}', False),  # 18 digits at most
        (b'{"n": 123456789.0123456789}', False),  # a point between the runs
        (b'{"text": "phone 12345678901234567890"}', True),  # inside a string: read by the slower parser, as well
    ],
)
def test_a_run_of_19_digits_is_found_wherever_it_is(body, long):
    assert may_hold_a_long_integer(body) is long


@pytest.mark.parametrize("body", [b"{", b'{"a": 1,}', b"\xff\xfe{}", b'{"text": "\x01"}'])
def test_a_body_that_is_no_json_is_refused_with_what_to_fix(body):
    with pytest.raises(RequestRejected, match="not valid JSON"):
        parse_json(body)


def request_receiving(*messages: dict[str, Any]) -> Request:
    """A request whose ASGI server hands over `messages`, one at each receive."""
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return Request({"type": "http", "method": "POST", "path": "/hook", "headers": []}, receive)


async def test_a_body_in_several_parts_is_read_whole_and_a_client_that_leaves_is_a_400():
    parts = request_receiving(
        {"type": "http.request", "body": b'{"a": ', "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
    )
    assert await read_limited_body(parts, 64) == b'{"a": 1}'
    left = request_receiving(
        {"type": "http.request", "body": b'{"a": ', "more_body": True}, {"type": "http.disconnect"}
    )
    with pytest.raises(RequestRejected) as refused:
        await read_limited_body(left, 64)
    assert refused.value.status == 400 and "went away" in refused.value.message
    over = request_receiving(*[{"type": "http.request", "body": b"x" * 40, "more_body": True}] * 2)
    with pytest.raises(RequestRejected) as refused:
        await read_limited_body(over, 64)
    assert refused.value.status == 413
