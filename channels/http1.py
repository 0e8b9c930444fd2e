"""JSON POSTs to one HTTP API over kept-alive HTTP/1.1 connections: the bytes of a request written at once, the
answer read by httptools (the C parser uvicorn serves with).

A platform SDK's own client (aiohttp, httpx) builds each request through a general machine: cookies, tracing hooks,
redirects, auth, proxies, a header map merged per call, a task that writes the body. A bot's replies are one JSON
object POSTed to one host again and again, and that machine cost more CPU a reply than the rest of sending it
(`lessonbot bench telegram`, docs/benchmarks.md). This pool does only that one thing; whatever else a request needs
(a proxy, an upload) stays with the SDK's client.

Kept alive: a connection goes back to the pool after an answer that lets it (HTTP/1.1 without `Connection: close`),
and is closed after IDLE_SECONDS unused, before a server's own keep-alive timeout would close it under a request. One
the server closed is never used again. At most `size` connections are open; a request waits for one within the
wait timeout. An answer is framed by its Content-Length, its chunks, or (neither given) the close of the
connection; an interim one (1xx) is passed over, and one that comes for no request closes its connection (out of
step, it would be read as the next request's). Timeouts: waiting for a free connection and connecting together,
connecting alone (the TLS handshake included), then reading the answer; each raises TimeoutError. A connection that
fails or times out in the middle of a request is closed, never reused, and the request is not sent again: a POST may
have done its work, and the caller (the outbox dispatcher) decides.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

IDLE_SECONDS = 15.0  # as aiohttp: well under the usual server keep-alive (nginx 75 s)
DEFAULT_PORTS = {"http": 80, "https": 443}
_REQUEST_TARGET = re.compile(r"[\x21-\x7e]+")  # written as it is: visible ASCII only (aiohttp quotes the rest)
_NOT_IN_A_HOST = re.compile(r"[\x00-\x20\x7f]")  # (a name beyond ASCII goes as IDNA: `Origin.host_header`)


class AnswerIncomplete(ConnectionError):
    """The connection ended, or the answer could not be read, before a whole answer arrived."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> bytes:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address in brackets
        host = host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"
        return host.encode() if host.isascii() else host.encode("idna")


def split_url(url: str) -> tuple[Origin, bytes] | None:
    """An http(s) URL as its origin and the path (with query) to request; None for any other URL, or one that
    carries credentials (this pool sends none)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not _REQUEST_TARGET.fullmatch(target) or _NOT_IN_A_HOST.search(parts.hostname):
        return None  # a space, a control or a non-ASCII character would not make one request line: aiohttp's
    return Origin(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]), target.encode()


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.framed = False  # the answer under way has a Content-Length or is chunked
        self.headed = False  # its headers have all arrived
        self.closed = False
        self.reusable = False
        self.idle_since = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is None and self.answer is not None and self.headed and not self.framed:
            self._answered(reusable=False)  # an answer without a length runs to the close: it is whole
            return
        self._fail(AnswerIncomplete("the connection closed before the whole answer arrived"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(AnswerIncomplete(f"the answer is not HTTP/1.1: {exc}"))
            self.close()

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self.answer is None:  # an answer to no request: the connection is out of step, never used again
            self.close()
        self.body, self.framed, self.headed = [], False, False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()  # (a transfer coding other than chunked last runs to the close, as no length does)
        if name == b"content-length" or name == b"transfer-encoding" and value.lower().endswith(b"chunked"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headed = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            self.body, self.headed = [], False  # an interim answer (100 Continue, 103 Early Hints): the answer follows
            return
        self._answered(reusable=self.parser.should_keep_alive())

    def _answered(self, *, reusable: bool) -> None:
        answer, self.answer = self.answer, None
        body, self.body = b"".join(self.body), []
        self.headed = False
        self.reusable = reusable
        if answer is not None and not answer.done():
            answer.set_result((self.parser.get_status_code(), body))

    def _fail(self, exc: Exception) -> None:
        answer, self.answer = self.answer, None
        if answer is not None and not answer.done():
            answer.set_exception(exc)

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future is its (status, body)."""
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.reusable = False
        self.transport.write(request)
        return self.answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Kept-alive connections to the origins requested, at most `size` open at once, for one event loop."""

    def __init__(self, *, size: int, user_agent: str) -> None:
        self.size = size
        self.user_agent = user_agent.encode()
        self.idle: dict[Origin, list[Connection]] = {}
        self.slots = asyncio.Semaphore(size)
        self.open: set[Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._urls: dict[str, tuple[Origin, bytes] | None] = {}  # a bot calls a few dozen URLs: each split once

    def takes(self, url: str) -> bool:
        """Whether `url` is one this pool requests: http(s), without credentials."""
        return self._split(url) is not None

    def _split(self, url: str) -> tuple[Origin, bytes] | None:
        if url not in self._urls:
            self._urls[url] = split_url(url)
        return self._urls[url]

    async def post_json(
        self, url: str, body: bytes, *, connect_timeout: float | None, read_timeout: float | None,
        wait_timeout: float | None = None,
    ) -> tuple[int, bytes]:
        """POST `body` (JSON) to `url`: the answer's status and body. TimeoutError, or ConnectionError/OSError when
        the answer did not come whole. `connect_timeout` bounds opening a connection (TLS handshake included),
        `wait_timeout` waiting for a free one and opening it together (as aiohttp's `connect` and `sock_connect`);
        None leaves that step unbounded."""
        split = self._split(url)
        if split is None:
            raise ValueError(f"not an http(s) URL without credentials: {url!r}")
        origin, target = split
        request = b"".join((
            b"POST ", target, b" HTTP/1.1\r\nHost: ", origin.host_header, b"\r\nUser-Agent: ", self.user_agent,
            b"\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: ",
            str(len(body)).encode(), b"\r\n\r\n", body,
        ))
        # A free connection, and connecting if none is idle, within the wait timeout (no timer when one is free).
        deadline = None if wait_timeout is None else asyncio.get_running_loop().time() + wait_timeout
        if self.slots.locked():
            async with asyncio.timeout_at(deadline):
                await self.slots.acquire()
        else:
            await self.slots.acquire()  # at once
        try:
            connection = self._idle_connection(origin)
            if connection is None:
                async with asyncio.timeout_at(deadline), asyncio.timeout(connect_timeout):
                    connection = await self._connect(origin)
        except BaseException:
            self.slots.release()
            raise
        answered = False
        try:
            async with asyncio.timeout(read_timeout):
                answer = await connection.send(request)
            answered = True
            return answer
        finally:
            if answered and connection.reusable and not connection.closed:
                connection.idle_since = time.monotonic()
                self.idle.setdefault(origin, []).append(connection)
            else:
                self._forget(connection)
            self.slots.release()

    def _idle_connection(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection to `origin` the server has not closed; older ones past
        IDLE_SECONDS are closed."""
        idle = self.idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS:
                stale = [each for each in idle if now - each.idle_since >= IDLE_SECONDS]
                for each in stale:
                    idle.remove(each)
                    self._forget(each)
                return connection
            self._forget(connection)
        return None

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if origin.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()  # verified against the system's certificates
            tls = self._tls
        _, connection = await loop.create_connection(
            Connection, origin.host, origin.port, ssl=tls, server_hostname=origin.host if tls else None,
        )
        self.open.add(connection)
        return connection

    def _forget(self, connection: Connection) -> None:
        connection.close()
        self.open.discard(connection)

    def close(self) -> None:
        """Close every connection; requests still waiting for an answer fail."""
        for connection in list(self.open):
            self._forget(connection)
        self.idle.clear()
