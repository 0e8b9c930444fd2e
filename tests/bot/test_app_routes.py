"""The app's shortcut for fixed paths (bot.app.App): a request goes where Starlette's router would send it, and is
answered as Starlette would answer it, refusals and failures included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.app import MAX_HEADER_BYTES, App, LimitHeaders


async def named(request: Request) -> Response:
    return PlainTextResponse(f"named {request.path_params['name']}")


async def new_item(request: Request) -> Response:
    return PlainTextResponse("new")


async def posted(request: Request) -> Response:
    return PlainTextResponse(f"posted {(await request.body()).decode()}", status_code=202)


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug of ours, with a secret in its message")


async def bad_form(request: Request) -> Response:
    raise HTTPException(400, "The form could not be read.")


def app_of(routes: list[object], **kwargs: object) -> App:
    return App(routes=routes, middleware=[Middleware(LimitHeaders)], **kwargs)  # type: ignore[arg-type]


def client_of(app: App) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test")


async def test_a_fixed_path_is_served_by_its_method_and_path():
    app = app_of([Route("/items/new", new_item), Route("/items", posted, methods=["POST"])])
    assert set(app.exact) == {("GET", "/items/new"), ("HEAD", "/items/new"), ("POST", "/items")}
    async with client_of(app) as client:
        assert (await client.get("/items/new")).text == "new"
        answer = await client.post("/items", content=b"hello")
        assert (answer.status_code, answer.text) == (202, "posted hello")


async def test_a_fixed_path_names_the_other_routes_as_through_starlette():
    async def linking(request: Request) -> Response:
        return PlainTextResponse(str(request.url_for("named", name="x")))

    app = app_of([Route("/link", linking), Route("/items/{name}", named, name="named")])
    assert ("GET", "/link") in app.exact
    async with client_of(app) as client:
        assert (await client.get("/link")).text == "http://lessonbot.test/items/x"


async def test_a_path_an_earlier_route_takes_goes_where_starlette_sends_it():
    # Starlette's router takes the first route that matches: here the one with a parameter, listed first
    app = app_of([Route("/items/{name}", named), Route("/items/new", new_item), Mount("/static", routes=[])])
    assert app.exact == {}
    async with client_of(app) as client:
        assert (await client.get("/items/new")).text == "named new"


async def test_another_method_another_path_or_a_root_path_go_through_starlette():
    app = app_of([Route("/items", posted, methods=["POST"])])
    async with client_of(app) as client:
        wrong_method = await client.get("/items")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert (await client.post("/items/")).status_code in (307, 404)  # Starlette's slash redirect, or not found
    behind_a_prefix = httpx.ASGITransport(app=app, root_path="/bot")
    async with httpx.AsyncClient(transport=behind_a_prefix, base_url="http://lessonbot.test") as client:
        answer = await client.post("/bot/items", content=b"hi")
        assert (answer.status_code, answer.text) == (202, "posted hi")


async def test_oversized_headers_are_refused_before_the_endpoint():
    app = app_of([Route("/items", posted, methods=["POST"])])
    async with client_of(app) as client:
        answer = await client.post("/items", content=b"x", headers={"x-padding": "p" * MAX_HEADER_BYTES})
    assert answer.status_code == 431 and "the limit is 16,384" in answer.json()["error"]


async def test_a_failing_endpoint_is_a_plain_500_and_raised_to_the_server():
    app = app_of([Route("/broken", broken, methods=["POST"]), Route("/form", bad_form, methods=["POST"])])
    async with client_of(app) as client:
        answer = await client.post("/broken")
        assert (answer.status_code, answer.text) == (500, "Internal Server Error")
        assert "secret" not in answer.text
        refused = await client.post("/form")
        assert (refused.status_code, refused.text) == (400, "The form could not be read.")
    # the server is handed the exception (uvicorn logs it); the app itself keeps answering
    with pytest.raises(RuntimeError, match="a bug of ours"):
        await app({"type": "http", "method": "POST", "path": "/broken", "headers": []}, _nothing, _drop)


async def test_other_middleware_or_handlers_turn_the_shortcut_off():
    seen: list[str] = []

    def counting(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope["path"])
            await app(scope, receive, send)

        return middleware

    routes: list[object] = [Route("/items/new", new_item)]
    with_middleware = app_of(routes)
    with_middleware.add_middleware(counting)
    assert with_middleware.exact == {}
    async with client_of(with_middleware) as client:
        assert (await client.get("/items/new")).text == "new"
    assert seen == ["/items/new"]
    assert app_of(routes, exception_handlers={500: broken}).exact == {}
    assert app_of(routes, debug=True).exact == {}
    assert app_of(routes).exact != {}


async def _nothing() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _drop(message: object) -> None:
    logging.getLogger(__name__).debug("sent %s", message)


def admin_app() -> App:
    async def page(request: Request) -> Response:
        return PlainTextResponse("hi")

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[str]:
            yield "a"
            yield "b"
        return StreamingResponse(body(), media_type="text/plain")

    return App(routes=[Route("/admin", page), Route("/admin/s", stream), Route("/administer", page)],
               headers_under={"/admin": {"X-Frame-Options": "DENY"}})


@pytest.mark.parametrize("root_path", ["", "/bot"])
async def test_headers_under_a_path_reach_every_answer_there_and_nowhere_else(root_path):
    """A page, a HEAD, a stream, the router's 404 and 405, behind a root path too; not a path that only starts
    alike."""
    transport = httpx.ASGITransport(app=admin_app(), root_path=root_path)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for method, path in (("GET", "/admin"), ("HEAD", "/admin"), ("GET", "/admin/s"), ("GET", "/admin/nope"),
                             ("POST", "/admin")):
            answer = await client.request(method, root_path + path)
            assert answer.headers.get("x-frame-options") == "DENY", (method, path, answer.status_code)
        assert (await client.get(root_path + "/admin/s")).text == "ab"
        assert "x-frame-options" not in (await client.get(root_path + "/administer")).headers

