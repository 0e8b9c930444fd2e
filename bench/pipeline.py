"""`lessonbot bench pipeline`: learners at the web chat API of real servers, measured side by side.

One command starts what it measures, one after another, each a separate process on 127.0.0.1 with a free port:
a bare Starlette echo app under uvicorn (the ceiling: HTTP alone, nothing stored), `lessonbot serve` on a fresh
SQLite file and `lessonbot serve` on a fresh PostgreSQL database (created, then dropped). `--url` measures a server
that is already running (instead of those, unless --targets names some).

Each of N conversations opens its own web chat session and sends M messages one after another. Per message:
- acknowledge latency: from sending the POST to its 202 (the part a webhook caller waits for);
- reply latency: from sending the POST until the reply arrives on the conversation's event stream
  (GET /chat/api/events, as the page receives it); with --poll, until it shows up in GET /chat/api/messages
  (polled every --poll-ms, so it is measured to within that interval).
The first --warmup messages of every conversation (new session, new user) are left out of the figures; the measured
phase starts for all conversations at once. By default a conversation waits for each reply before its next message,
as a learner does; `--no-wait` sends back to back and measures how many messages the server can take in while it
processes them too; `--intake-only` sends back to back to servers that only record and acknowledge (`serve
--no-worker`, as when other processes do the turns): the acknowledgement's own rate, a durable record and its
dedupe key a message. With either, the rate taken in is printed as a share of the echo ceiling's in the same run.

The load generator (aiohttp, on uvloop when installed) shares the machine's cores with the server: its figures are
a floor of what the server can do alone, and only figures from one run compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.processes import (
    DEFAULT_POSTGRES_ADMIN_URL,
    LESSONBOT,
    DatabaseUnreachable,
    ServerFailed,
    ServerProcess,
    child_environment,
    database_for,
    start_process,
    upgrade_schema,
)
from bench.report import (
    add_json_option,
    machine,
    number,
    percentile,
    print_report,
    progress,
    run_event_loop,
    table,
)
from bot.cli.numbers import whole

TARGETS = ("echo", "sqlite", "postgresql")
LABELS = {"echo": "echo (ceiling)", "sqlite": "SQLite", "postgresql": "PostgreSQL", "url": "server at --url"}
WARMUP_CAP_SECONDS = 60.0


# the command -------------------------------------------------------------------------------------------------------

BENCH_STREAM_CAP = 1_000_000
HELP = "web chat conversations against an echo ceiling, SQLite and PostgreSQL"
DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(pipeline: argparse.ArgumentParser) -> None:
    pipeline.add_argument("--conversations", type=whole(), default=50, help="conversations at once (default 50)")
    pipeline.add_argument("--messages", type=whole(), default=20, help="messages per conversation (default 20)")
    pipeline.add_argument("--warmup", type=whole(), default=2, help="first messages of each conversation left out (2)")
    pipeline.add_argument(
        "--targets",
        help=f"comma-separated, from {', '.join(TARGETS)} (default: all; none with --url unless given)",
    )
    pipeline.add_argument("--url", help="also measure a Lessonbot already running there, e.g. http://127.0.0.1:8000")
    pipeline.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_ADMIN_URL,
        help="a PostgreSQL server where the bench may create and drop a database (default: %(default)s)",
    )
    pipeline.add_argument(
        "--no-wait",
        dest="wait_for_reply",
        action="store_false",
        help="send each conversation's messages back to back instead of waiting for each reply",
    )
    pipeline.add_argument(
        "--intake-only",
        action="store_true",
        help="servers that only record and acknowledge (serve --no-worker); implies --no-wait",
    )
    pipeline.add_argument("--text", default="/help", help="what learners send; one reply per message (default /help)")
    pipeline.add_argument(
        "--poll",
        action="store_true",
        help="learners poll GET /chat/api/messages for replies instead of following the page's event stream",
    )
    pipeline.add_argument("--poll-ms", type=float, default=20.0, help="with --poll: how often a learner looks")
    pipeline.add_argument("--duration", type=float, default=60.0, help="cap on the measured phase per target, seconds")
    pipeline.add_argument("--reply-timeout", type=float, default=30.0, help="a reply later than this is an error")
    pipeline.add_argument("--request-timeout", type=float, default=10.0, help="per HTTP request, seconds")
    add_json_option(pipeline)


def run(args: argparse.Namespace) -> int:
    try:
        options = LoadOptions.from_args(args)
        targets = chosen_targets(args)
    except ValueError as exc:
        print(f"lessonbot bench pipeline: {exc}", file=sys.stderr)
        return 2
    report = run_event_loop(run_benchmark(options, targets, url=args.url, postgres_url=args.postgres_url))
    print_report(report, args, render_report)
    return 1 if any(result["status"] == "failed" for result in report["results"]) else 0


def chosen_targets(args: argparse.Namespace) -> list[str]:
    if args.targets is None:
        return [] if args.url else list(TARGETS)
    targets = [name.strip().lower() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in targets if name not in TARGETS]
    if unknown:
        raise ValueError(f"unknown target {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if not targets and not args.url:
        raise ValueError("nothing to measure: name --targets or give --url")
    return [name for name in TARGETS if name in targets]  # the ceiling first, whatever the order given


# what is measured --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOptions:
    conversations: int
    messages: int
    warmup: int
    wait_for_reply: bool
    text: str
    intake_only: bool
    poll: bool
    poll_seconds: float
    duration: float
    reply_timeout: float
    request_timeout: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadOptions:
        if args.conversations < 1 or args.messages < 1:
            raise ValueError("--conversations and --messages must be at least 1")
        if not 0 <= args.warmup < args.messages:
            raise ValueError(
                f"--warmup {args.warmup} leaves nothing to measure with --messages {args.messages}; "
                "give more messages than warm-up messages"
            )
        for name in ("poll_ms", "duration", "reply_timeout", "request_timeout"):
            if getattr(args, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be greater than 0")
        if not args.text.strip():
            raise ValueError("--text must not be empty")
        return cls(
            conversations=args.conversations,
            messages=args.messages,
            warmup=args.warmup,
            wait_for_reply=args.wait_for_reply and not args.intake_only,
            text=args.text,
            intake_only=args.intake_only,
            poll=args.poll,
            poll_seconds=args.poll_ms / 1000,
            duration=args.duration,
            reply_timeout=args.reply_timeout,
            request_timeout=args.request_timeout,
        )


@dataclass
class Samples:
    """What one target's measured phase produced; times are perf_counter seconds."""

    acks: list[float] = field(default_factory=list)
    replies: list[float] = field(default_factory=list)
    last_ack_at: float = 0.0
    last_reply_at: float = 0.0
    polls: int = 0
    extra_replies: int = 0  # more than one reply to a message: --text should get exactly one
    errors: Counter[str] = field(default_factory=Counter)

    def ack(self, latency: float, at: float) -> None:
        self.acks.append(latency)
        self.last_ack_at = max(self.last_ack_at, at)

    def reply(self, latency: float, at: float) -> None:
        self.replies.append(latency)
        self.last_reply_at = max(self.last_reply_at, at)


def summarize(samples: Samples, *, started: float, replies_expected: bool) -> dict[str, Any]:
    def rate(count: int, until: float) -> float | None:
        return count / (until - started) if count and until > started else None

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "messages": len(samples.acks),
        "messages_per_s": rate(len(samples.acks), samples.last_ack_at),
        "ack_ms": {"p50": ms(percentile(samples.acks, 50)), "p99": ms(percentile(samples.acks, 99))},
        "replies": len(samples.replies) if replies_expected else None,
        "replies_per_s": rate(len(samples.replies), samples.last_reply_at) if replies_expected else None,
        "reply_ms": {"p50": ms(percentile(samples.replies, 50)), "p99": ms(percentile(samples.replies, 99))},
        "polls": samples.polls if replies_expected else None,
        "extra_replies": samples.extra_replies if replies_expected else None,
        "errors": dict(samples.errors),
        "error_count": sum(samples.errors.values()),
    }


# the load ----------------------------------------------------------------------------------------------------------


class StartLine:
    """Every conversation finishes its warm-up before the measured phase starts for any of them."""

    def __init__(self, conversations: int, duration: float) -> None:
        self.waiting = conversations
        self.duration = duration
        self.go = asyncio.Event()
        self.started_at = 0.0
        self.deadline = math.inf
        if conversations == 0:
            self.start()

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self.deadline = self.started_at + self.duration
        self.go.set()

    def leave(self) -> None:
        """One conversation is ready (or gave up during its warm-up): it no longer holds the start back."""
        self.waiting -= 1
        if self.waiting == 0:
            self.start()

    async def arrive(self) -> None:
        self.leave()
        await self.go.wait()


class Learner:
    """One conversation: a web chat session, its messages, and the replies still awaited (oldest first)."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.session = f"echo-{number}"
        self.cursor = 0  # id of the last reply seen
        self.awaited: deque[tuple[float, bool]] = deque()  # (POST sent at, measured) per accepted message
        self.early: deque[float] = deque()  # replies seen before their message's 202 came back
        self.given_up = 0  # replies counted as missing (too late): skipped when they do come
        self.sending_done = False
        self.caught_up = asyncio.Event()
        self.caught_up.set()
        self.work = asyncio.Event()  # something awaited, or the sender finished


class LoadGenerator:
    def __init__(self, http: Any, base_url: str, options: LoadOptions, *, replies: bool, sessions: bool) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.replies = replies  # awaited on the event stream (or polled)
        self.sessions = sessions  # a web chat session opened first (the echo takes any)
        self.samples = Samples()
        self.line = StartLine(options.conversations if options.warmup else 0, options.duration)
        self.refused = asyncio.Event()  # the server refused an event stream: nothing more can be measured

    async def run(self) -> tuple[Samples, float]:
        """Drive every conversation to its end (or the duration cap), or stop them all when the server refuses an
        event stream; the samples and the measured phase's start."""
        learners = [Learner(number) for number in range(self.options.conversations)]
        conversations: asyncio.Future[Any] = asyncio.gather(*(self.converse(learner) for learner in learners))
        refused: asyncio.Future[Any] = asyncio.ensure_future(self.refused.wait())
        try:
            await asyncio.wait({conversations, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # also when the cap cancels the run: no conversation goes on loading the server after it
            for task in (conversations, refused):
                task.cancel()
            await asyncio.gather(conversations, refused, return_exceptions=True)
        return self.samples, self.line.started_at

    def error(self, kind: str) -> None:
        self.samples.errors[kind] += 1

    async def converse(self, learner: Learner) -> None:
        arrived = self.options.warmup == 0
        watcher: asyncio.Task[None] | None = None
        try:
            if self.sessions:
                learner.session = await self.open_session()
            if self.replies:
                watcher = asyncio.get_running_loop().create_task(self.watch(learner))
            for index in range(self.options.messages):
                if index == self.options.warmup:
                    await learner.caught_up.wait()  # warm-up replies are in before the start line
                    arrived = True
                    await self.line.arrive()
                measured = index >= self.options.warmup
                if measured and time.perf_counter() >= self.line.deadline:
                    break
                await self.send(learner, index, measured=measured)
                if self.replies and self.options.wait_for_reply:
                    await learner.caught_up.wait()
            learner.sending_done = True
            learner.work.set()
            if watcher is not None:
                await watcher
        except Exception as exc:
            self.error(f"{type(exc).__name__} ({exc})"[:120] if str(exc) else type(exc).__name__)
        finally:
            if not arrived:
                self.line.leave()
            if watcher is not None and not watcher.done():
                watcher.cancel()

    async def open_session(self) -> str:
        async with self.http.post(f"{self.base_url}/chat/api/sessions") as response:
            body = await response.read()
            if response.status != 201:
                raise RuntimeError(f"POST /chat/api/sessions answered {response.status}: {body[:200]!r}")
            return json.loads(body)["session"]

    async def send(self, learner: Learner, index: int, *, measured: bool) -> None:
        body = json.dumps({"session": learner.session, "text": self.options.text, "id": f"m{index}"}).encode()
        sent_at = time.perf_counter()
        try:
            async with self.http.post(
                f"{self.base_url}/chat/api/messages", data=body, headers={"Content-Type": "application/json"}
            ) as response:
                await response.read()
                status = response.status
        except Exception as exc:
            self.error(f"POST: {type(exc).__name__}")
            return
        acknowledged_at = time.perf_counter()
        if status != 202:
            self.error(f"POST answered {status}")
            return
        if measured:
            self.samples.ack(acknowledged_at - sent_at, acknowledged_at)
        if not self.replies:
            return
        while learner.early:
            seen_at = learner.early.popleft()
            if seen_at >= sent_at:  # its reply came before its 202
                self.replied(sent_at, measured, seen_at)
                return
            self.samples.extra_replies += 1  # seen before this message was sent: a second reply to an earlier one
        learner.awaited.append((sent_at, measured))
        learner.caught_up.clear()
        learner.work.set()

    def replied(self, sent_at: float, measured: bool, seen_at: float) -> None:
        if measured:
            self.samples.reply(seen_at - sent_at, seen_at)

    async def watch(self, learner: Learner) -> None:
        """Follow the conversation's replies and match them to messages in order: from the event stream, as the
        page does (the default), or by polling (--poll)."""
        if self.options.poll:
            await self.watch_by_polling(learner)
            return
        while not (learner.sending_done and not learner.awaited) and not self.refused.is_set():
            try:
                await self.watch_events(learner)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error(f"events: {type(exc).__name__}")
                await asyncio.sleep(self.options.poll_seconds)

    async def watch_events(self, learner: Learner) -> None:
        """One connection to GET /chat/api/events, read until every awaited reply has come and sending is done."""
        url = f"{self.base_url}/chat/api/events"
        params = {"session": learner.session, "after": str(learner.cursor)}
        async with self.http.get(url, params=params, timeout=None) as response:
            if response.status == 429:
                # The server's cap on event streams (one address's, or all), not a moment's load: a learner without
                # its stream never sees its reply, and every other learner waits for it at the start line.
                wanted = self.options.conversations
                self.error(f"events answered 429 (the server holds fewer event streams than {wanted} conversations "
                           f"open: start it with WEB_CHAT_STREAMS_PER_ADDRESS={wanted} and a WEB_CHAT_STREAMS_TOTAL "
                           f"as large, or add --poll)")
                self.refused.set()
                return
            if response.status != 200:
                self.error(f"events answered {response.status}")
                await asyncio.sleep(self.options.poll_seconds)
                return
            event, data = "", ""
            while not (learner.sending_done and not learner.awaited):
                try:
                    line = await asyncio.wait_for(response.content.readline(), timeout=self.options.reply_timeout)
                except TimeoutError:
                    self.give_up_late(learner, time.perf_counter())
                    continue
                if not line:
                    return  # the server closed the stream: open it again
                text = line.decode().rstrip("\r\n")
                if text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:"):
                    data += text[5:].strip()
                elif not text:
                    if event == "reply" and data:
                        self.seen(learner, [json.loads(data)], time.perf_counter())
                    event, data = "", ""

    def seen(self, learner: Learner, replies: list[dict[str, Any]], seen_at: float) -> None:
        for reply in replies:
            learner.cursor = max(learner.cursor, int(reply["id"]))
            if learner.given_up:
                learner.given_up -= 1
            elif learner.awaited:
                sent_at, measured = learner.awaited.popleft()
                self.replied(sent_at, measured, seen_at)
            else:
                learner.early.append(seen_at)
        self.give_up_late(learner, seen_at)

    def give_up_late(self, learner: Learner, now: float) -> None:
        while learner.awaited and now - learner.awaited[0][0] > self.options.reply_timeout:
            learner.awaited.popleft()
            learner.given_up += 1
            self.error(f"no reply within {self.options.reply_timeout:g} s")
        if not learner.awaited:
            learner.caught_up.set()

    async def watch_by_polling(self, learner: Learner) -> None:
        """Poll the conversation's replies while any is awaited; match them to messages in order."""
        while not (learner.sending_done and not learner.awaited):
            if not learner.awaited:
                learner.work.clear()
                await learner.work.wait()
                continue
            await asyncio.sleep(self.options.poll_seconds)
            self.seen(learner, await self.poll(learner), time.perf_counter())

    async def poll(self, learner: Learner) -> list[dict[str, Any]]:
        if self.line.go.is_set():
            self.samples.polls += 1
        try:
            async with self.http.get(
                f"{self.base_url}/chat/api/messages", params={"session": learner.session, "after": learner.cursor}
            ) as response:
                body = await response.read()
                if response.status != 200:
                    self.error(f"GET answered {response.status}")
                    return []
                return json.loads(body)["replies"]
        except Exception as exc:
            self.error(f"GET: {type(exc).__name__}")
            return []


# the servers -------------------------------------------------------------------------------------------------------


@asynccontextmanager
async def started_server(
    target: str, workdir: Path, http: Any, postgres_url: str, *, intake_only: bool = False
) -> AsyncIterator[ServerProcess]:
    """Start one target's server and wait until it is ready; stop it (and drop its database) afterwards.
    `intake_only`: a Lessonbot that records and acknowledges only (`serve --no-worker`)."""
    if target == "echo":
        argv = [sys.executable, "-m", "bench.echo"]
        server = start_process(LABELS[target], argv, workdir, child_environment(workdir))
        try:
            await server.wait_ready(http, "/healthz")
            yield server
        finally:
            server.stop()
        return
    with database_for(target, workdir, postgres_url) as database_url:
        env = child_environment(workdir, database_url)
        # Every learner of the bench comes from this one address, each with its page's event stream open: the
        # caps meant for strangers on the internet do not apply.
        env.update(WEB_CHAT_STREAMS_PER_ADDRESS=str(BENCH_STREAM_CAP), WEB_CHAT_STREAMS_TOTAL=str(BENCH_STREAM_CAP))
        await asyncio.to_thread(upgrade_schema, workdir, env)
        serve = [*LESSONBOT, "serve", *(["--no-worker"] if intake_only else [])]
        server = start_process(LABELS[target], serve, workdir, env)
        try:
            await server.wait_ready(http, "/readyz")
            yield server
        finally:
            server.stop()


# one run -----------------------------------------------------------------------------------------------------------


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_client(options: LoadOptions) -> Any:
    import aiohttp

    # Each conversation holds at most two requests at once (its message and its poll); the pool never makes one wait.
    pool = options.conversations * 2
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=pool, limit_per_host=pool, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=options.request_timeout),
    )


async def measure(target: str, url: str, options: LoadOptions, http: Any, server: ServerProcess | None) -> dict:
    replies = target != "echo" and not options.intake_only
    load = LoadGenerator(http, url, options, replies=replies, sessions=target != "echo")
    cap = WARMUP_CAP_SECONDS + options.duration + options.reply_timeout
    cpu: dict[str, float | None] = {}

    async def measured_phase_cpu() -> None:
        await load.line.go.wait()
        cpu["server"] = server.cpu_seconds() if server else None
        cpu["client"] = client_cpu_seconds()

    memory_before = server.resident_kb() if server and replies else None
    watcher = asyncio.get_running_loop().create_task(measured_phase_cpu())
    try:
        async with asyncio.timeout(cap):
            samples, started = await load.run()
    except TimeoutError:
        load.error(f"cut off by the {cap:g} s cap")
        samples, started = load.samples, load.line.started_at
    finally:
        watcher.cancel()
    result: dict[str, Any] = {"target": target, "label": LABELS[target], "url": url, "status": "ok", "note": None}
    result.update(summarize(samples, started=started, replies_expected=replies))
    server_now = server.cpu_seconds() if server else None
    server_before, client_before = cpu.get("server"), cpu.get("client")
    result["server_cpu_s"] = (
        round(server_now - server_before, 2) if server_now is not None and server_before is not None else None
    )
    result["client_cpu_s"] = round(client_cpu_seconds() - client_before, 2) if client_before is not None else None
    last = max(samples.last_ack_at, samples.last_reply_at)
    result["measured_s"] = round(last - started, 2) if started and last >= started else None
    result["memory_kb"] = None
    result["conversations"] = options.conversations
    if memory_before is not None and server is not None:
        await settled(server)
        memory_after = server.resident_kb()
        if memory_after is not None:
            result["memory_kb"] = {"before": memory_before, "after": memory_after}
    return result


async def settled(server: ServerProcess, *, quiet_share: float = 0.05, cap_seconds: float = 60.0) -> None:
    """Wait until the server is nearly idle (the messages taken in are processed), at most `cap_seconds`."""
    deadline = time.perf_counter() + cap_seconds
    while time.perf_counter() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(1.0)
        after = server.cpu_seconds()
        if before is None or after is None or after - before < quiet_share:
            return


def skipped(target: str, status: str, note: str) -> dict[str, Any]:
    return {"target": target, "label": LABELS[target], "status": status, "note": note}


async def run_benchmark(options: LoadOptions, targets: list[str], *, url: str | None, postgres_url: str) -> dict:
    report: dict[str, Any] = {
        "machine": machine(), "options": asdict(options) | {"targets": targets, "url": url}, "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-") as scratch:
        for target in targets:
            progress(f"{LABELS[target]}: starting")
            workdir = Path(scratch) / target
            workdir.mkdir()
            http = http_client(options)
            try:
                async with started_server(
                    target, workdir, http, postgres_url, intake_only=options.intake_only
                ) as server:
                    progress(f"{LABELS[target]}: measuring")
                    result = await measure(target, server.url, options, http, server)
                    if server.process.poll() is not None:
                        result |= {"status": "failed", "note": f"the server died during the run:\n{server.log_tail()}"}
                    report["results"].append(result)
            except DatabaseUnreachable as exc:
                report["results"].append(skipped(target, "skipped", f"{exc}; start it or pass --postgres-url"))
            except ServerFailed as exc:
                report["results"].append(skipped(target, "failed", str(exc)))
            finally:
                await http.close()
        if url:
            progress(f"{url}: measuring")
            http = http_client(options)
            try:
                async with http.get(f"{url.rstrip('/')}/healthz") as response:
                    response.raise_for_status()
                report["results"].append(await measure("url", url, options, http, None))
            except Exception as exc:
                report["results"].append(skipped("url", "failed", f"{url} did not answer /healthz: {exc}"))
            finally:
                await http.close()
    return report


# the report --------------------------------------------------------------------------------------------------------


def render_report(report: dict[str, Any]) -> str:
    m, o = report["machine"], report["options"]
    pace = (
        "each learner waits for the reply before the next message"
        if o["wait_for_reply"]
        else "each learner sends back to back to servers that only record and acknowledge (--intake-only)"
        if o.get("intake_only")
        else "each learner sends back to back (--no-wait)"
    )
    replies_by = (
        "no replies awaited"
        if o.get("intake_only")
        else f"replies polled every {o['poll_seconds'] * 1000:g} ms"
        if o.get("poll")
        else "replies from the event stream"
    )
    lines = [
        "Lessonbot pipeline benchmark: learners at the web chat API",
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]:.2f} at start; {m['os']}",
        f"software: Python {m['python']}, uvicorn {m['uvicorn']} (loop {m['loop']}, http {m['http']}); "
        f"load generator {m['client']}",
        f"load: {o['conversations']} conversations x {o['messages']} messages of {o['text']!r} "
        f"(first {o['warmup']} of each not counted); {pace}; {replies_by}; "
        f"cap {o['duration']:g} s",
        "The load generator runs on the same cores as the server: compare rows of one run, not runs of two machines.",
    ]
    if m["cores"] and m["load_average"][0] > m["cores"] / 2:
        lines.append(
            f"Busy machine: a load average of {m['load_average'][0]:.1f} on {m['cores']} cores before the run means "
            "other work competes for the CPU; expect lower figures than on a quiet machine."
        )
    lines.append("")
    header = ("target", "messages/s", "ack p50 ms", "ack p99 ms", "replies/s", "reply p50 ms", "reply p99 ms", "errors")
    rows: list[tuple[str, ...]] = []
    notes: list[str] = []
    for result in report["results"]:
        if result["status"] != "ok":
            rows.append((result["label"], result["status"], *[""] * 6))
            notes.append(f"{result['label']} {result['status']}: {result['note']}")
            continue
        rows.append(
            (
                result["label"],
                number(result["messages_per_s"]),
                number(result["ack_ms"]["p50"], 1),
                number(result["ack_ms"]["p99"], 1),
                number(result["replies_per_s"]),
                number(result["reply_ms"]["p50"], 1),
                number(result["reply_ms"]["p99"], 1),
                str(result["error_count"]),
            )
        )
        detail = [f"{result['messages']} messages measured over {result['measured_s'] or 0:.1f} s"]
        detail += cpu_notes(result)
        if result["polls"] and result["replies"]:
            detail.append(f"{result['polls'] / result['replies']:.1f} polls a reply")
        if result["extra_replies"]:
            detail.append(f"{result['extra_replies']} extra replies (send a --text that gets exactly one)")
        if result["errors"]:
            detail.append("errors: " + ", ".join(f"{kind} x{count}" for kind, count in result["errors"].items()))
        notes.append(f"{result['label']}: " + "; ".join(detail))
    lines += table(header, rows)
    lines += intake_shares(report)
    lines.append("")
    lines += notes
    return "\n".join(lines)


INTAKE_TARGETS = {"sqlite": 0.40, "postgresql": 0.30}  # shares of the echo ceiling's requests/s to take in


def intake_shares(report: dict[str, Any]) -> list[str]:
    """Back to back: each Lessonbot's rate taken in as a share of the echo ceiling's in the same run, beside its
    target."""
    if report["options"]["wait_for_reply"]:
        return []
    ok = {result["target"]: result for result in report["results"] if result["status"] == "ok"}
    ceiling = ok.get("echo", {}).get("messages_per_s")
    if not ceiling:
        return []
    shares = []
    for target, wanted in INTAKE_TARGETS.items():
        rate = ok.get(target, {}).get("messages_per_s")
        if rate:
            shares.append(f"{LABELS[target]} {rate / ceiling:.1%} (target {wanted:.0%})")
    return [f"taken in, as a share of the echo ceiling's requests/s: {', '.join(shares)}"] if shares else []


def cpu_notes(result: dict[str, Any]) -> list[str]:
    """CPU time used in the measured phase: a server far below one core while slow is waiting, or starved."""
    notes, seconds = [], result["measured_s"]
    if result["server_cpu_s"] is not None and result["messages"] and seconds:
        notes.append(
            f"server CPU {result['server_cpu_s']:.2f} s ({result['server_cpu_s'] / seconds:.0%} of one core, "
            f"{result['server_cpu_s'] / result['messages'] * 1000:.2f} ms a message)"
        )
    memory = result.get("memory_kb")
    if memory and result["messages"]:
        grown = max(0, memory["after"] - memory["before"])
        notes.append(
            f"server memory {memory['before'] / 1024:.0f} → {memory['after'] / 1024:.0f} MB "
            f"({grown / result['conversations']:.1f} KB a conversation)"
        )
    if result["client_cpu_s"] is not None and seconds:
        notes.append(f"load generator CPU {result['client_cpu_s']:.2f} s ({result['client_cpu_s'] / seconds:.0%})")
    return notes
