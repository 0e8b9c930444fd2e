"""A local stand-in for an OpenAI-compatible server: `/v1/chat/completions` (plain and streamed) and `/v1/embeddings`.

It runs on 127.0.0.1 in a thread of its own, so both the sync clients (ingest embeds in a worker thread) and the
async ones reach it; the real `openai` and `langchain-openai` clients talk to it through their base URL.

Chat replies come from `reply(request)`, a function of the request's messages that tests set (it may raise
`Fail(status)` to answer with an error); every request is recorded. `stops_early` makes a streamed reply end before
the model would have: "length" (finish_reason "length", as OpenAI reports a reply cut at max_tokens) or "dropped"
(the stream just ends: no finish_reason, no usage, no [DONE]). Usage is reported as OpenAI does (in the last
streamed chunk when `stream_options.include_usage` is asked for): `prompt_tokens` is the prompt's length / 4.
Embeddings are bag-of-words vectors hashed into 64 dimensions: deterministic, and texts sharing words are close;
of unit length unless `unit_embeddings` is off (as some OpenAI-compatible servers answer: word counts, then).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MODEL = "standin-chat"
EMBEDDING_DIMENSIONS = 64


class Fail(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def embed(text: str, *, unit: bool = True) -> list[float]:
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"\w+", text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % EMBEDDING_DIMENSIONS] += 1.0
    norm = (sum(v * v for v in vector) ** 0.5 or 1.0) if unit else 1.0
    return [v / norm for v in vector]


def system_text(request: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "system")


def user_text(request: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in request["messages"] if m["role"] == "user")


def cite_first_passage(request: dict[str, Any]) -> str:
    """A well-behaved model: passage 1's first two sentences (the first in bold), cited."""
    passage = re.search(r'<passage number="1"[^>]*>\n(.+?)\n</passage>', user_text(request), re.S)
    said = re.split(r"(?<=[.!?])\s+", passage.group(1)) if passage else [""]
    return f"**{said[0]}** {' '.join(said[1:2])} [1]"


@dataclass
class OpenAIStandIn:
    reply: Callable[[dict[str, Any]], str] = cite_first_passage
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    embedding_requests: int = 0
    piece_delay: float = 0.0  # seconds between streamed pieces: a model that takes its time
    stops_early: str | None = None  # "length" or "dropped": the streamed reply ends before its end
    unit_embeddings: bool = True  # off: vectors of word counts, not scaled to unit length
    fail_embeddings: bool = False  # on: every embeddings request is refused (400, which the client does not retry)
    # set to a cleared Event: every embeddings request waits until it is set (a slow endpoint), and `embedding_waits`
    # is set when the first one starts waiting
    hold_embeddings: threading.Event | None = None
    embedding_waits: threading.Event = field(default_factory=threading.Event)
    # the same for chat requests (a model that takes its time to start answering): `chat_waits` is set when the first
    # one starts waiting for `hold_chat`
    hold_chat: threading.Event | None = None
    chat_waits: threading.Event = field(default_factory=threading.Event)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.chat_requests.append(body)
        hold = self.hold_chat
        if hold is not None and not hold.is_set():
            self.chat_waits.set()
            await asyncio.get_running_loop().run_in_executor(None, hold.wait, 30)
        try:
            text = self.reply(body)
        except Fail as failure:
            return web.json_response({"error": {"message": "scripted failure", "type": "server_error"}},
                                     status=failure.status)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(text) // 4,
                 "total_tokens": prompt_tokens + len(text) // 4}
        common = {"id": "chatcmpl-standin", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            return web.json_response({
                **common, "object": "chat.completion", "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)

        async def send(payload: dict[str, Any]) -> None:
            await response.write(f"data: {json.dumps(payload)}\n\n".encode())

        pieces = re.findall(r"\S+\s*", text) or [""]
        for n, piece in enumerate(pieces):
            if n and self.piece_delay:
                await asyncio.sleep(self.piece_delay)
            delta = {"role": "assistant", "content": piece} if n == 0 else {"content": piece}
            await send({**common, "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        if self.stops_early == "dropped":
            return response  # the connection closes mid-reply
        await send({**common, "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": self.stops_early or "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            await send({**common, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests += 1
        if self.fail_embeddings:
            return web.json_response({"error": {"message": "refused", "type": "invalid_request_error"}}, status=400)
        hold = self.hold_embeddings
        if hold is not None and not hold.is_set():
            self.embedding_waits.set()
            await asyncio.get_running_loop().run_in_executor(None, hold.wait, 30)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        return web.json_response({
            "object": "list", "model": body["model"],
            "data": [{"object": "embedding", "index": i, "embedding": embed(text, unit=self.unit_embeddings)}
                     for i, text in enumerate(inputs)],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        })

    def start(self) -> OpenAIStandIn:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/v1/chat/completions", self._chat)
            app.router.add_post("/v1/embeddings", self._embeddings)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, daemon=True, name="openai-standin").start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop and self._runner:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
