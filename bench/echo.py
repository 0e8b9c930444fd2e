"""The ceiling for `lessonbot bench pipeline`: a bare Starlette app that acknowledges every POST and stores nothing.

It runs under uvicorn with the same settings as `lessonbot serve` (loop and HTTP parser chosen by uvicorn's "auto"),
so the difference between its figures and the bot's is the cost of verifying, recording and processing a message.

    python -m bench.echo --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def uvicorn_implementations() -> dict[str, str]:
    """The event loop and HTTP parser uvicorn's "auto" picks in this interpreter (uvloop and httptools if installed)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    http = "httptools" if AutoHTTPProtocol.__module__.endswith("httptools_impl") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return {"loop": loop, "http": http}


async def acknowledge(request: Request) -> Response:
    body = await request.body()  # read it all, as a webhook endpoint must before answering
    return JSONResponse({"status": "accepted", "bytes": len(body)}, status_code=202)


async def healthz(request: Request) -> Response:
    """Ready, and which event loop actually runs (the bench reports it)."""
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    return JSONResponse({"status": "ok", "loop": loop, "http": uvicorn_implementations()["http"]})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/readyz", healthz),
        Route("/{path:path}", acknowledge, methods=["POST"]),
    ]
)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # The same call as `lessonbot serve`, so both get the same loop, parser and protocol settings.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False, lifespan="on")


if __name__ == "__main__":
    main()
