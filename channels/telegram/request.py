"""How python-telegram-bot's Bot reaches the Bot API here: its `BaseRequest` over aiohttp.

python-telegram-bot builds every call (parameters, files), reads every answer (its JSON, its status: 429 →
RetryAfter, 403 → Forbidden, 400 → BadRequest, 5xx → NetworkError …) and makes the objects; a `BaseRequest` only
carries the bytes, and the library lets an application bring its own (`Bot(request=...)`). Its default, over httpx,
cost about as much CPU a sendMessage as the rest of the message's way through Lessonbot (`lessonbot bench telegram`,
docs/benchmarks.md): httpx checks every pooled connection on each request and builds its request and response
models in Python, where aiohttp parses HTTP in C. aiohttp is already what slack_sdk and twilio send over.

Timeouts as python-telegram-bot means them: connect, read (per read: a long poll's getUpdates passes its own), pool
(waiting for a free connection, counted with the connect timeout: aiohttp measures the two together); aiohttp has no
write timeout, so the whole call is bounded by the sum of the four. A timeout becomes TimedOut, any other failure to
reach the API NetworkError, as the httpx request does. A redirect is not followed (httpx does not follow one either):
it goes back as the answer, a NetworkError; followed, aiohttp would turn the POST into a GET without its parameters
and hand back whatever answered that as the call's result. A proxy in HTTPS_PROXY / HTTP_PROXY (NO_PROXY) is used, as
httpx used it, if its own address is http://: aiohttp skips (with a warning) one written https:// and reads no
ALL_PROXY, both of which httpx honoured. The environment is read once per host when the session opens, not on each
call (aiohttp's own `trust_env` reads it, and ~/.netrc, in a thread on every request); like httpx, no ~/.netrc
credentials are sent to the Bot API.

The parameters go as one JSON object (the Bot API takes application/json for every method), not as a form of
JSON-encoded values; a call that uploads a file goes as multipart.

A call with parameters and no file, straight to the API (no proxy) — every reply's sendMessage — goes over
channels/http1.py's kept-alive connections instead of aiohttp's session: the same bytes on the wire (one JSON object,
python-telegram-bot's parameters), the same answer handed back to python-telegram-bot, for about half the CPU of the
call (docs/benchmarks.md). Its timeouts are the same (pool with connect, connect alone, then read), a failure the
same NetworkError or TimedOut; it never follows a redirect either. Uploads, calls without parameters (getMe) and
proxied calls go through aiohttp as described above.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import BasicAuth, get_env_proxy_for_url
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData
from yarl import URL

from channels.http1 import ConnectionPool
from channels.webhook import may_hold_a_long_integer


class AiohttpRequest(BaseRequest):
    """Bot API requests over one aiohttp session (HTTP/1.1 keep-alive), made on first use inside the running loop."""

    def __init__(
        self,
        *,
        connection_pool_size: int = 1,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ) -> None:
        self._pool_size = connection_pool_size
        self._timeouts = {"read": read_timeout, "write": write_timeout, "connect": connect_timeout,
                          "pool": pool_timeout}
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None
        self._pool: ConnectionPool | None = None  # JSON calls straight to the API (no proxy, no file)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[str, tuple[URL | None, BasicAuth | None]] = {}  # origin → its proxy, for this session

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts["read"]

    async def initialize(self) -> None:
        self._open()

    async def shutdown(self) -> None:
        session, self._session, self._loop = self._session, None, None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        if session is not None and not session.closed:
            await session.close()

    def _open(self) -> aiohttp.ClientSession:
        """The session, made again after shutdown. A session belongs to the event loop it was made in: one still open
        in another loop is an error (shut the request down there first), never dropped with its sockets open."""
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and self._loop is not loop:
            raise RuntimeError("this Bot API request is open in another event loop: shut it down there first")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )
            self._loop = loop
            self._proxies = {}
            if self._pool is not None:
                self._pool.close()
            self._pool = ConnectionPool(size=self._pool_size, user_agent=self.USER_AGENT)
        return self._session

    def _proxy(self, url: str) -> tuple[URL | None, BasicAuth | None]:
        """The proxy for `url` from HTTPS_PROXY / HTTP_PROXY / NO_PROXY (None: straight there), as aiohttp's own
        `trust_env` finds it, looked up once per origin while the session is open."""
        scheme, _, rest = url.partition("://")
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
        found = self._proxies.get(origin)
        if found is None:
            try:
                found = get_env_proxy_for_url(URL(origin))
            except LookupError:
                found = (None, None)
            self._proxies[origin] = found
        return found

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        """The Bot API's answer, read by orjson (a fifth of the standard library's CPU); what orjson refuses goes to
        python-telegram-bot's own reading, which replaces bad UTF-8 and raises its TelegramError for what is no JSON."""
        if may_hold_a_long_integer(payload):
            return BaseRequest.parse_json_payload(payload)
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return BaseRequest.parse_json_payload(payload)
        return parsed if isinstance(parsed, dict) else BaseRequest.parse_json_payload(payload)

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        files = request_data is not None and request_data.contains_files
        read = self._timeouts["read"] if isinstance(read_timeout, DefaultValue) else read_timeout
        connect = self._timeouts["connect"] if isinstance(connect_timeout, DefaultValue) else connect_timeout
        pool = self._timeouts["pool"] if isinstance(pool_timeout, DefaultValue) else pool_timeout
        write = (self._media_write_timeout if files else self._timeouts["write"]) if isinstance(
            write_timeout, DefaultValue) else write_timeout
        # waiting for a free connection and connecting, together (as aiohttp's `connect` timeout counts them)
        connect_within = None if connect is None or pool is None else connect + pool
        session = self._open()
        proxy, proxy_auth = self._proxy(url)
        parameters = request_data.parameters if request_data is not None and not files else None
        assert self._pool is not None
        if method == "POST" and parameters and proxy is None and self._pool.takes(url):
            try:
                return await self._pool.post_json(
                    url, _json_body(parameters),
                    wait_timeout=connect_within,
                    connect_timeout=connect,
                    read_timeout=read,
                )
            except TimeoutError as exc:
                raise TimedOut from exc
            except OSError as exc:  # ConnectionError included: refused, reset, closed before the whole answer
                raise NetworkError(f"{type(exc).__name__}: {exc}") from exc
        parts = (read, connect, pool, write)
        timeout = aiohttp.ClientTimeout(
            total=None if None in parts else sum(part for part in parts if part is not None),
            connect=connect_within,
            sock_connect=connect,
            sock_read=read,
        )
        try:
            async with session.request(
                method, url, timeout=timeout, allow_redirects=False, proxy=proxy, proxy_auth=proxy_auth,
                **_body(request_data),
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:  # aiohttp's timeouts are TimeoutErrors too
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _body(request_data: RequestData | None) -> dict[str, Any]:
    """The parameters as one JSON object, or as a multipart form when files go along (each value JSON-encoded, as the
    Bot API takes them there); nothing when there are none."""
    if request_data is None:
        return {}
    if not request_data.contains_files:
        parameters = request_data.parameters
        return {"json": parameters} if parameters else {}
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, (filename, content, mimetype) in request_data.multipart_data.items():
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return {"data": form}


def _json_body(parameters: dict[str, Any]) -> bytes:
    """A call's parameters as its JSON body: orjson (UTF-8 as it is, where the standard library escapes it), or the
    standard library for what orjson refuses (a key that is not a string, an integer past 64 bits). A float NaN or
    infinity goes as null (the standard library wrote `NaN`, which the Bot API refuses as no JSON)."""
    try:
        return orjson.dumps(parameters)
    except TypeError:
        return json.dumps(parameters).encode()
