"""JSON POSTs over kept-alive connections (channels/http1.py), against small servers that answer the way real ones
may: kept alive, closing after an answer, chunked, slow, cut off."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from channels.http1 import AnswerIncomplete, ConnectionPool, Origin, split_url

OK = b'{"ok":true}'
Answer = Callable[[bytes], bytes | None]  # a request's bytes -> what to write back (None: nothing)


def answer(body: bytes = OK, *, headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), headers, body)


@asynccontextmanager
async def server(reply: Answer, *, close_after: bool = False) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server answering each request with `reply`: its URL and, per connection, the requests it read."""
    connections: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(b"")
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                request = head + await reader.readexactly(length)
                connections[-1] += request
                written = reply(request)
                if written is None:
                    await asyncio.sleep(60)
                writer.write(written or b"")
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/bot123:abc/sendMessage", connections
    finally:
        listening.close()


async def post(pool: ConnectionPool, url: str, body: bytes = b'{"chat_id":1}', timeout: float = 2.0
               ) -> tuple[int, bytes]:
    return await pool.post_json(url, body, connect_timeout=timeout, read_timeout=timeout)


async def test_requests_share_one_kept_alive_connection():
    pool = ConnectionPool(size=4, user_agent="lessonbot-test")
    async with server(lambda request: answer()) as (url, connections):
        assert await post(pool, url, b'{"chat_id":1,"text":"a"}') == (200, OK)
        assert await post(pool, url, b'{"chat_id":1,"text":"b"}') == (200, OK)
    pool.close()
    [both] = connections
    assert both.count(b"POST /bot123:abc/sendMessage HTTP/1.1\r\n") == 2
    assert b"Content-Type: application/json\r\n" in both and b"User-Agent: lessonbot-test\r\n" in both
    assert both.endswith(b'{"chat_id":1,"text":"b"}')


@pytest.mark.parametrize("close_header", [True, False], ids=["connection-close", "closed-silently"])
async def test_a_connection_the_server_closed_is_not_used_again(close_header):
    pool = ConnectionPool(size=4, user_agent="lessonbot-test")
    headers = b"Connection: close\r\n" if close_header else b""
    async with server(lambda request: answer(headers=headers), close_after=True) as (url, connections):
        assert await post(pool, url) == (200, OK)
        await asyncio.sleep(0.05)  # the server's close arrives
        assert await post(pool, url) == (200, OK)
    pool.close()
    assert len(connections) == 2


async def test_a_chunked_answer_is_read_whole():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"ok\r\n7\r\n\":true}\r\n0\r\n\r\n"
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: chunked) as (url, _):
        assert await post(pool, url) == (200, OK)
        assert await post(pool, url) == (200, OK)
    pool.close()


async def test_no_answer_times_out_and_the_connection_is_dropped():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    answers = iter([None, answer()])
    async with server(lambda request: next(answers)) as (url, connections):
        with pytest.raises(TimeoutError):
            await post(pool, url, timeout=0.2)
        assert await post(pool, url) == (200, OK)  # the one slot is free again, on a new connection
    pool.close()
    assert len(connections) == 2


async def test_an_answer_cut_off_is_an_error_not_a_result():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: answer()[:-4], close_after=True) as (url, _):
        with pytest.raises(AnswerIncomplete):
            await post(pool, url)
    pool.close()


def test_which_urls_the_pool_takes_and_the_host_it_names():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    assert pool.takes("https://api.telegram.org/bot1:a/sendMessage")
    assert not pool.takes("https://user:secret@api.telegram.org/bot1:a/sendMessage")  # credentials: aiohttp's
    assert not pool.takes("ftp://example.org/file") and not pool.takes("http://example.org:port/")
    assert split_url("https://api.telegram.org/bot1:a/getMe?x=1") == (
        Origin("https", "api.telegram.org", 443), b"/bot1:a/getMe?x=1")
    assert Origin("http", "::1", 8081).host_header == b"[::1]:8081"
    assert Origin("https", "bücher.example", 443).host_header == b"xn--bcher-kva.example"


@pytest.mark.parametrize("head", [b"HTTP/1.0 200 OK\r\n", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n"])
async def test_an_answer_ended_by_closing_the_connection_is_read_whole(head):
    # No Content-Length and not chunked: the body runs to the close (HTTP/1.0 servers, some proxies). Read as an error,
    # a reply that was sent would be sent again.
    until_close = head + b"Content-Type: application/json\r\n\r\n" + OK
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: until_close, close_after=True) as (url, connections):
        assert await post(pool, url) == (200, OK)
        assert await post(pool, url) == (200, OK)  # on a new connection
    pool.close()
    assert len(connections) == 2


async def test_an_answer_cut_off_before_its_headers_end_is_an_error():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: b"HTTP/1.1 200 OK\r\nContent-Ty", close_after=True) as (url, _):
        with pytest.raises(AnswerIncomplete):
            await post(pool, url)
    pool.close()


async def test_an_interim_answer_is_not_taken_for_the_answer():
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: interim + answer()) as (url, connections):
        assert await post(pool, url) == (200, OK)
        assert await post(pool, url) == (200, OK)
    pool.close()
    assert len(connections) == 1
    async with server(lambda request: interim, close_after=True) as (url, _):
        with pytest.raises(AnswerIncomplete):  # closed with no answer after the interim ones
            await post(pool, url)
    pool.close()


def test_a_url_that_would_not_make_one_request_line_is_left_to_aiohttp():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    for url in ("https://api.telegram.org/bot1:a b/sendMessage", "https://api.telegram.org/bot1:a\x0b/sendMessage",
                "https://api.telegram.org/bot1:ä/sendMessage", "https://api.telegram.org/x?a=1 HTTP/1.1\x00",
                "http://api telegram.org/"):
        assert not pool.takes(url), url
    assert pool.takes("https://bücher.example/bot1:a/sendMessage")


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for `localhost` (and no other name): its certificate and key files."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"no openssl to make a certificate: {exc}")
    return cert, key


async def test_https_verifies_the_certificate_against_the_name_it_sends(certificate, monkeypatch):
    """TLS as aiohttp does it: the server's certificate checked against the system's (here SSL_CERT_FILE's)
    authorities and the URL's host name, which goes as SNI; an untrusted or misnamed certificate is a connection
    error (NetworkError for python-telegram-bot), never an answer."""
    cert, key = certificate
    names: list[str | None] = []
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    served.sni_callback = lambda _socket, name, _context: names.append(name)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
            writer.write(answer())
            await writer.drain()
        writer.close()

    listening = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=served)
    port = listening.sockets[0].getsockname()[1]
    try:
        untrusting = ConnectionPool(size=1, user_agent="lessonbot-test")
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(untrusting, f"https://localhost:{port}/bot1:a/sendMessage")
        untrusting.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        trusting = ConnectionPool(size=1, user_agent="lessonbot-test")
        assert await post(trusting, f"https://localhost:{port}/bot1:a/sendMessage") == (200, OK)
        with pytest.raises(ssl.SSLCertVerificationError):  # the same certificate, reached by another name
            await post(trusting, f"https://127.0.0.1:{port}/bot1:a/sendMessage")
        trusting.close()
    finally:
        listening.close()
    assert "localhost" in names


async def test_bytes_after_an_answer_take_its_connection_out_of_use():
    # More than the answer framed (a server out of step): what follows would be read as the next request's answer.
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with server(lambda request: answer() + b"HTTP/1.1 200 OK\r\nContent-Le") as (url, connections):
        assert await post(pool, url) == (200, OK)
        assert await post(pool, url) == (200, OK)  # on a new connection
    pool.close()
    assert len(connections) == 2


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A server that accepts connections and never says a word (a TLS handshake to it never ends): its port."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listening = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        for writer in held:
            writer.close()


async def test_opening_a_connection_is_bounded_by_the_connect_timeout_alone():
    pool = ConnectionPool(size=1, user_agent="lessonbot-test")
    async with silent_server() as port:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await pool.post_json(f"https://127.0.0.1:{port}/bot1:a/sendMessage", b"{}",
                                 connect_timeout=0.3, read_timeout=5, wait_timeout=None)
        assert asyncio.get_running_loop().time() - started < 2
    assert not pool.open and not pool.slots.locked()
    pool.close()
