"""`lessonbot bench channels`: the three platforms' webhooks and outbound pace, against local stand-ins.

Everything runs on this machine: the stand-ins of the Telegram Bot API, the Twilio API and the Slack Web API (the
ones the tests use, from standins/) in this process, and each server under test as its own process on a free
port of 127.0.0.1, each on a fresh database.

Webhooks, per channel: a fresh `lessonbot serve` with that channel on; --senders people each send one message first
(not counted: it creates their learner), then --requests more, --concurrency at once, signed as the platform signs
them (Telegram's secret token, Twilio's X-Twilio-Signature over PUBLIC_BASE_URL, Slack's v0 signature). Measured:
requests acknowledged per second and the acknowledge latency p50/p99 — what the platform waits for. In the same run,
the same Telegram updates go to a bare python-telegram-bot application that echoes each text (`run_webhook`, see
bench/ptb_echo.py) talking to the same stand-in; the report gives the ratio. Replies the servers sent during the
measured phase are counted too (Lessonbot's are paced by the platform limits; the bare application has none).

Outbound: one more `lessonbot serve` with all three channels on; replies are written straight into its outbox, a
batch per case, and the stand-ins time what arrives: messages per second from the first to the last, and the most
that arrived in any one second, overall and in one chat — against each platform's limit.

The load generator and the stand-ins share the machine's cores with the server: compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from bench.processes import (
    DEFAULT_POSTGRES_ADMIN_URL,
    LESSONBOT,
    DatabaseUnreachable,
    ServerFailed,
    ServerProcess,
    child_environment,
    database_for,
    free_port,
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

if TYPE_CHECKING:
    from storage.db import Database

CHANNELS = ("telegram", "whatsapp", "slack")
TELEGRAM_SECRET = "bench-" + "0" * 32
READY_SECONDS = 60.0
NO_TORNADO = (
    "tornado is not installed, and python-telegram-bot's webhook server needs it: pip install 'lessonbot[bench]' "
    "(or leave the bare application out with --no-ptb)"
)


HELP = "Telegram, WhatsApp and Slack webhooks and outbound pace, against local stand-ins"
DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(channels: argparse.ArgumentParser) -> None:
    channels.add_argument("--requests", type=whole(), default=2000, help="measured webhook requests per target (2000)")
    channels.add_argument("--senders", type=whole(), default=200, help="distinct people sending them (200)")
    channels.add_argument("--concurrency", type=whole(), default=32, help="requests in flight at once (32)")
    channels.add_argument("--channels", help=f"comma-separated, from {', '.join(CHANNELS)} (default: all)")
    channels.add_argument(
        "--no-ptb", dest="ptb", action="store_false", help="leave out the bare python-telegram-bot app"
    )
    channels.add_argument("--no-outbound", dest="outbound", action="store_false", help="webhooks only")
    channels.add_argument(
        "--outbound-scale", type=float, default=1.0,
        help="multiplies the outbound batches (600 Telegram, 800 WhatsApp, 300 Slack messages at 1.0)",
    )
    channels.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite", help="(default sqlite)")
    channels.add_argument(
        "--split", action="store_true",
        help="webhooks to `lessonbot serve --no-worker` (record, acknowledge, send) beside a second process that "
             "only processes (`serve --no-dispatcher`)",
    )
    channels.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL,
        help="with --database postgresql: a server where the bench may create and drop databases (%(default)s)",
    )
    add_json_option(channels)


@dataclass(frozen=True)
class Options:
    requests: int
    senders: int
    concurrency: int
    channels: tuple[str, ...]
    ptb: bool
    outbound: bool
    outbound_scale: float
    database: str
    postgres_url: str
    split: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        if min(args.requests, args.senders, args.concurrency) < 1:
            raise ValueError("--requests, --senders and --concurrency must be at least 1")
        if args.outbound_scale <= 0:
            raise ValueError("--outbound-scale must be greater than 0")
        chosen = CHANNELS
        if args.channels is not None:
            chosen = tuple(name.strip().lower() for name in args.channels.split(",") if name.strip())
            unknown = [name for name in chosen if name not in CHANNELS]
            if unknown or not chosen:
                raise ValueError(f"unknown channel {', '.join(unknown) or '(none)'}; choose from {', '.join(CHANNELS)}")
        return cls(
            requests=args.requests, senders=args.senders, concurrency=args.concurrency,
            channels=tuple(name for name in CHANNELS if name in chosen), ptb=args.ptb, outbound=args.outbound,
            outbound_scale=args.outbound_scale, database=args.database, postgres_url=args.postgres_url,
            split=args.split,
        )


def run(args: argparse.Namespace) -> int:
    try:
        options = Options.from_args(args)
    except ValueError as exc:
        print(f"lessonbot bench channels: {exc}", file=sys.stderr)
        return 2
    report = run_event_loop(run_benchmark(options, import_standins()))
    print_report(report, args, render_report)
    return 1 if any(result.get("status") == "failed" for result in report["webhooks"] + report["outbound"]) else 0


def import_standins() -> Any:
    """The platform stand-ins, imported when the bench runs (they bring aiohttp's server and twilio with them)."""
    from standins import slack, telegram, twilio

    return argparse.Namespace(telegram=telegram, twilio=twilio, slack=slack)


# the stand-ins -----------------------------------------------------------------------------------------------------


@dataclass
class Platforms:
    """The three stand-ins, running in this process's event loop, and how to read what they received."""

    telegram: Any
    twilio: Any
    slack: Any
    modules: Any

    def sent_times(self, channel: str) -> list[tuple[float, str]]:
        """(monotonic time, chat) of every message the channel's stand-in accepted, in arrival order."""
        if channel == "telegram":
            return [(call.at, call.params["chat_id"]) for call in self.telegram.calls
                    if call.ok and call.method == "sendMessage"]
        if channel == "whatsapp":
            return [(message.at, message.to or "") for message in self.twilio.sent]
        return [(call.at, str(call.params.get("channel"))) for call in self.slack.calls
                if call.ok and call.method == "chat.postMessage"]

    def settings(self, channel: str, server_url: str) -> dict[str, str]:
        """The environment that turns one channel on in a served process, pointed at its stand-in."""
        modules = self.modules
        if channel == "telegram":
            return {
                "TELEGRAM_BOT_TOKEN": modules.telegram.TOKEN,
                "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
                "TELEGRAM_API_BASE_URL": self.telegram.base_url,
            }
        if channel == "whatsapp":
            return {
                "TWILIO_ACCOUNT_SID": modules.twilio.ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": modules.twilio.AUTH_TOKEN,
                "TWILIO_WHATSAPP_FROM": modules.twilio.SENDER,
                "TWILIO_API_BASE_URL": self.twilio.base_url,
                "PUBLIC_BASE_URL": server_url,
            }
        return {
            "SLACK_SIGNING_SECRET": modules.slack.SIGNING_SECRET,
            "SLACK_BOT_TOKEN": modules.slack.BOT_TOKEN,
            "SLACK_API_BASE_URL": self.slack.base_url,
        }


@asynccontextmanager
async def platforms(modules: Any) -> AsyncIterator[Platforms]:
    async with (
        modules.telegram.TelegramStandIn() as telegram,
        modules.twilio.TwilioStandIn() as twilio,
        modules.slack.SlackStandIn() as slack,
    ):
        yield Platforms(telegram, twilio, slack, modules)


# webhook requests, as each platform sends them ----------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    path: str
    body: bytes
    headers: dict[str, str]


class Requests:
    """Builds signed webhook requests: request n comes from sender n % senders, every one with a fresh platform id."""

    def __init__(self, modules: Any, senders: int) -> None:
        self.modules = modules
        self.senders = senders
        self.serial = 0

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def telegram(self, count: int, *, path: str = "/webhooks/telegram") -> list[Hit]:
        hits = []
        for n in range(count):
            sender = 3_000_000 + n % self.senders
            update = self.modules.telegram.text_update(
                f"/help {n}", chat_id=sender, user=self.modules.telegram.person(sender, f"Learner {sender}"),
                update_id=10_000_000 + self.next_serial(),
            )
            hits.append(Hit(path, json.dumps(update).encode(), {
                "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
            }))
        return hits

    def whatsapp(self, count: int, *, public_base_url: str) -> list[Hit]:
        from twilio.request_validator import RequestValidator

        twilio = self.modules.twilio
        validator = RequestValidator(twilio.AUTH_TOKEN)
        path = "/webhooks/twilio/whatsapp"
        hits = []
        for n in range(count):
            number = f"+1555{n % self.senders:07d}"
            form = twilio.message_form(number, f"help {n}", sid=f"SM{self.next_serial():032x}")
            signature = validator.compute_signature(public_base_url + path, form)
            hits.append(Hit(path, urlencode(form).encode(), {
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature,
            }))
        return hits

    def slack(self, count: int) -> list[Hit]:
        slack = self.modules.slack
        hits = []
        for n in range(count):
            sender = n % self.senders
            event = slack.dm_event(f"help {n}", event_id=f"Ev{self.next_serial():012d}", user=f"U{sender:08d}",
                                   channel=f"D{sender:08d}")
            body = json.dumps(event).encode()
            hits.append(Hit("/slack/events", body, slack.signed(body)))
        return hits


@dataclass
class Fired:
    acks: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0
    ended: float = 0.0


async def fire(http: Any, base_url: str, hits: Sequence[Hit], concurrency: int) -> Fired:
    """POST every hit, `concurrency` at once; the latency of each 2xx answer, the kind of every other outcome."""
    fired = Fired(started=time.perf_counter())
    pending = iter(hits)

    async def worker() -> None:
        for hit in pending:  # one iterator shared by every worker: each hit is sent once
            sent_at = time.perf_counter()
            try:
                async with http.post(base_url + hit.path, data=hit.body, headers=hit.headers) as response:
                    await response.read()
                    status = response.status
            except Exception as exc:
                fired.errors[f"POST: {type(exc).__name__}"] += 1
                continue
            if 200 <= status < 300:
                fired.acks.append(time.perf_counter() - sent_at)
            else:
                fired.errors[f"answered {status}"] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    fired.ended = time.perf_counter()
    return fired


# the servers -------------------------------------------------------------------------------------------------------


async def wait_listening(server: ServerProcess, http: Any, path: str) -> None:
    """Until the server answers `path` with anything below 500 (a bare webhook server has no health check)."""
    deadline = time.perf_counter() + READY_SECONDS
    while time.perf_counter() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"{server.label} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            async with http.get(server.url + path) as response:
                await response.read()
                if response.status < 500:
                    return
        except Exception:
            pass
        await asyncio.sleep(0.1)
    raise ServerFailed(f"{server.label} was not listening within {READY_SECONDS:g} s:\n{server.log_tail()}")


@asynccontextmanager
async def lessonbot(
    label: str, channels: Sequence[str], world: Platforms, options: Options, workdir: Path, http: Any
) -> AsyncIterator[tuple[ServerProcess, str]]:
    """`lessonbot serve` with these channels on, on a fresh database; (the process, its database URL)."""
    workdir.mkdir(parents=True)
    with database_for(options.database, workdir, options.postgres_url) as database_url:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = child_environment(workdir, database_url)
        env["WEB_CHAT_ENABLED"] = "false"
        for channel in channels:
            env.update(world.settings(channel, url))
        await asyncio.to_thread(upgrade_schema, workdir, env)
        serve = [*LESSONBOT, "serve"]
        server = start_process(label, serve + (["--no-worker"] if options.split else []), workdir, env, port=port)
        worker = None
        try:
            if options.split:
                (workdir / "worker").mkdir()
                worker = start_process(f"{label} worker", [*serve, "--no-dispatcher"], workdir / "worker", env)
                await worker.wait_ready(http, "/readyz")
            await server.wait_ready(http, "/readyz")
            yield server, database_url
        finally:
            server.stop()
            if worker is not None:
                worker.stop()


@asynccontextmanager
async def bare_ptb(world: Platforms, workdir: Path, http: Any) -> AsyncIterator[ServerProcess]:
    workdir.mkdir(parents=True)
    argv = [
        sys.executable, "-m", "bench.ptb_echo", "--base-url", world.telegram.base_url,
        "--token", world.modules.telegram.TOKEN, "--secret", TELEGRAM_SECRET,
    ]
    server = start_process("bare python-telegram-bot", argv, workdir, child_environment(workdir))
    try:
        await wait_listening(server, http, "/telegram")
        yield server
    finally:
        server.stop()


# the webhook phase -------------------------------------------------------------------------------------------------

WEBHOOK_LABELS = {
    "telegram": "Telegram: Lessonbot",
    "ptb": "Telegram: bare python-telegram-bot echo",
    "whatsapp": "WhatsApp (Twilio): Lessonbot",
    "slack": "Slack: Lessonbot",
}


async def measure_webhooks(
    target: str, server: ServerProcess, hits: Callable[[int], list[Hit]], world: Platforms, options: Options,
    http: Any,
) -> dict[str, Any]:
    channel = "telegram" if target == "ptb" else target
    warmup = await fire(http, server.url, hits(options.senders), options.concurrency)
    if warmup.errors:
        raise ServerFailed(f"{WEBHOOK_LABELS[target]} refused the warm-up requests: {dict(warmup.errors)}")
    measured = hits(options.requests)  # built (and signed) before the clock starts
    before = len(world.sent_times(channel))
    cpu_before = server.cpu_seconds()
    started_mono = time.monotonic()
    fired = await fire(http, server.url, measured, options.concurrency)
    ended_mono = time.monotonic()
    cpu_after = server.cpu_seconds()
    seconds = fired.ended - fired.started
    replies = [at for at, _chat in world.sent_times(channel)[before:] if started_mono <= at <= ended_mono]
    return {
        "target": target,
        "label": WEBHOOK_LABELS[target],
        "status": "ok",
        "requests": len(measured),
        "acknowledged": len(fired.acks),
        "seconds": round(seconds, 3),
        "requests_per_s": round(len(fired.acks) / seconds, 1) if seconds > 0 else None,
        "ack_ms": {
            "p50": ms(percentile(fired.acks, 50)),
            "p99": ms(percentile(fired.acks, 99)),
            "max": ms(max(fired.acks, default=None)),
        },
        "replies_sent_in_phase": len(replies),
        "server_cpu_s": round(cpu_after - cpu_before, 2) if cpu_before is not None and cpu_after is not None else None,
        "errors": dict(fired.errors),
    }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


async def webhook_phase(world: Platforms, options: Options, scratch: Path, http: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    requests = Requests(world.modules, options.senders)
    targets = list(options.channels)
    if options.ptb and "telegram" in targets:
        targets.insert(targets.index("telegram") + 1, "ptb")
    for target in targets:
        if target == "ptb" and importlib.util.find_spec("tornado") is None:
            results.append({"target": target, "label": WEBHOOK_LABELS[target], "status": "skipped", "note": NO_TORNADO})
            continue
        progress(f"{WEBHOOK_LABELS[target]}: starting")
        try:
            if target == "ptb":
                async with bare_ptb(world, scratch / target, http) as server:
                    progress(f"{WEBHOOK_LABELS[target]}: measuring")
                    hits = lambda count: requests.telegram(count, path="/telegram")  # noqa: E731
                    results.append(await measure_webhooks(target, server, hits, world, options, http))
                continue
            async with lessonbot(WEBHOOK_LABELS[target], [target], world, options, scratch / target, http) as (
                server, _database
            ):
                progress(f"{WEBHOOK_LABELS[target]}: measuring")
                if target == "telegram":
                    hits = requests.telegram
                elif target == "whatsapp":
                    hits = lambda count: requests.whatsapp(count, public_base_url=server.url)  # noqa: E731
                else:
                    hits = requests.slack
                results.append(await measure_webhooks(target, server, hits, world, options, http))
        except (ServerFailed, DatabaseUnreachable) as exc:
            results.append({"target": target, "label": WEBHOOK_LABELS[target], "status": "failed", "note": str(exc)})
    return results


# the outbound phase ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundCase:
    channel: str
    label: str
    chats: int
    per_chat: int
    limit: str
    overall_per_s: float | None  # the limit that binds across chats, if any
    per_chat_per_s: float | None

    @property
    def messages(self) -> int:
        return self.chats * self.per_chat


def outbound_cases(options: Options) -> list[OutboundCase]:
    def scaled(value: int) -> int:
        return max(1, round(value * options.outbound_scale))

    cases = {
        "telegram": [
            OutboundCase("telegram", "Telegram, many chats", scaled(300), 2, "30/s overall", 30, 1),
            OutboundCase("telegram", "Telegram, one chat", 1, max(3, scaled(10)), "1/s per chat", 30, 1),
        ],
        "whatsapp": [
            OutboundCase("whatsapp", "WhatsApp, one sender", scaled(400), 2, "80/s per sender", 80, None),
        ],
        "slack": [
            OutboundCase("slack", "Slack, one channel", 1, max(3, scaled(10)), "1/s per channel", None, 1),
            OutboundCase("slack", "Slack, many channels", scaled(300), 1, "1/s per channel", None, 1),
        ],
    }
    return [case for channel in options.channels for case in cases[channel]]


def chat_ids(case: OutboundCase, batch: int) -> list[str]:
    if case.channel == "telegram":
        return [str(5_000_000 + batch * 100_000 + n) for n in range(case.chats)]
    if case.channel == "whatsapp":
        return [f"+1666{batch:02d}{n:05d}" for n in range(case.chats)]
    return [f"C{batch:02d}{n:07d}" for n in range(case.chats)]


async def queue_replies(db: Database, case: OutboundCase, batch: int) -> None:
    """Write the case's replies into the served process's outbox in one transaction, as a dialog would."""
    from storage.models import Conversation, utcnow
    from storage.outbox import OutboxEntry, enqueue

    async with db.transaction() as session:
        now = utcnow()
        conversations = [
            Conversation(channel=case.channel, chat_id=chat, state={}, last_inbound_at=now - timedelta(minutes=1))
            for chat in chat_ids(case, batch)
        ]
        session.add_all(conversations)
        await session.flush()
        for part in range(case.per_chat):  # in id order: the first reply of every chat, then the second …
            await enqueue(session, [
                OutboxEntry(
                    conversation_id=conversation.id, channel=case.channel, chat_id=conversation.chat_id,
                    payload={"kind": "text", "text": f"Reply {part + 1} of {case.per_chat}: keep going!"},
                )
                for conversation in conversations
            ], now=now)


def busiest_second(times: Sequence[float]) -> int:
    """The most arrivals within any window of one second."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def measure_outbound(
    case: OutboundCase, batch: int, server: ServerProcess, db: Database, world: Platforms
) -> dict[str, Any]:
    before = len(world.sent_times(case.channel))
    paces = [case.overall_per_s, case.per_chat_per_s * case.chats if case.per_chat_per_s else None]
    cap = 30.0 + 3 * case.messages / min([pace for pace in paces if pace] or [100.0])
    cpu_before = server.cpu_seconds()
    await queue_replies(db, case, batch)
    deadline = time.monotonic() + cap
    while len(world.sent_times(case.channel)) - before < case.messages and time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"the server died:\n{server.log_tail()}")
        await asyncio.sleep(0.05)
    cpu_after = server.cpu_seconds()
    arrived = world.sent_times(case.channel)[before:]
    times = [at for at, _chat in arrived]
    per_chat: dict[str, list[float]] = {}
    for at, chat in arrived:
        per_chat.setdefault(chat, []).append(at)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "case": case.label,
        "channel": case.channel,
        "status": "ok" if len(times) == case.messages else "failed",
        "note": None if len(times) == case.messages else f"{len(times)} of {case.messages} arrived in {cap:.0f} s",
        "messages": case.messages,
        "chats": case.chats,
        "limit": case.limit,
        "sent": len(times),
        "seconds": round(span, 2),
        "per_s": round((len(times) - 1) / span, 1) if span > 0 else None,
        "busiest_second": busiest_second(times),
        "busiest_chat_second": max((busiest_second(chat_times) for chat_times in per_chat.values()), default=0),
        "server_cpu_s": round(cpu_after - cpu_before, 2) if cpu_before is not None and cpu_after is not None else None,
    }


async def outbound_phase(world: Platforms, options: Options, scratch: Path, http: Any) -> list[dict[str, Any]]:
    from storage.db import Database

    results: list[dict[str, Any]] = []
    progress("outbound: starting")
    try:
        async with lessonbot("Lessonbot (outbound)", options.channels, world, options, scratch / "outbound", http) as (
            server, database_url
        ):
            db = Database(database_url, pool_size=1)  # the served process's database, written to as a dialog would
            try:
                for batch, case in enumerate(outbound_cases(options)):
                    progress(f"outbound: {case.label}, {case.messages} messages")
                    results.append(await measure_outbound(case, batch, server, db, world))
            finally:
                await db.dispose()
    except (ServerFailed, DatabaseUnreachable) as exc:
        results.append({"case": "outbound", "status": "failed", "note": str(exc)})
    return results


# one run -----------------------------------------------------------------------------------------------------------


async def run_benchmark(options: Options, modules: Any) -> dict[str, Any]:
    import aiohttp

    report: dict[str, Any] = {
        "machine": machine(),
        "options": {name: getattr(options, name) for name in Options.__dataclass_fields__},
        "webhooks": [],
        "outbound": [],
    }
    report["options"]["channels"] = list(options.channels)
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=options.concurrency * 2, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=30),
    )
    try:
        async with platforms(modules) as world:
            with tempfile.TemporaryDirectory(prefix="lessonbot-bench-channels-") as scratch:
                report["webhooks"] = await webhook_phase(world, options, Path(scratch), http)
                if options.outbound:
                    report["outbound"] = await outbound_phase(world, options, Path(scratch), http)
    finally:
        await http.close()
    report["ratio"] = ptb_ratio(report["webhooks"])
    return report


def ptb_ratio(results: list[dict[str, Any]]) -> dict[str, float] | None:
    by_target = {result["target"]: result for result in results if result.get("status") == "ok"}
    ours, bare = by_target.get("telegram"), by_target.get("ptb")
    if not ours or not bare or not bare["requests_per_s"] or not ours["ack_ms"]["p50"]:
        return None
    return {
        "requests_per_s": round(ours["requests_per_s"] / bare["requests_per_s"], 2),
        "ack_p50": round(ours["ack_ms"]["p50"] / bare["ack_ms"]["p50"], 2),
        "ack_p99": round(ours["ack_ms"]["p99"] / bare["ack_ms"]["p99"], 2),
    }


# the report --------------------------------------------------------------------------------------------------------


def render_report(report: dict[str, Any]) -> str:
    m, o = report["machine"], report["options"]
    lines = [
        "Lessonbot channel benchmark: webhooks and outbound pace against local platform stand-ins",
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]:.2f} at start; {m['os']}",
        f"software: Python {m['python']}, uvicorn {m['uvicorn']} (loop {m['loop']}, http {m['http']}); "
        f"load generator {m['client']}; database {o['database']}"
        + ("; split: webhooks to `serve --no-worker`, processing in a second process" if o.get("split") else ""),
        f"webhooks: {o['requests']} requests per target from {o['senders']} senders, {o['concurrency']} at once "
        f"(after one warm-up message per sender)",
        "",
    ]
    rows, notes = [], []
    for result in report["webhooks"]:
        if result["status"] != "ok":
            rows.append((result["label"], result["status"], "", "", "", "", ""))
            notes.append(f"{result['label']} {result['status']}: {result['note']}")
            continue
        cpu = result["server_cpu_s"]
        rows.append((
            result["label"], number(result["requests_per_s"]), number(result["ack_ms"]["p50"], 1),
            number(result["ack_ms"]["p99"], 1), str(result["replies_sent_in_phase"]),
            "n/a" if cpu is None else f"{cpu / max(result['acknowledged'], 1) * 1000:.2f}",
            str(sum(result["errors"].values())),
        ))
        if result["errors"]:
            notes.append(f"{result['label']} errors: {result['errors']}")
    lines += table(("webhook target", "requests/s", "ack p50 ms", "ack p99 ms", "replies sent", "CPU ms/req",
                    "errors"), rows)
    ratio = report.get("ratio")
    if ratio:
        lines.append(
            f"Lessonbot / bare python-telegram-bot: {ratio['requests_per_s']:.2f}x the requests per second, "
            f"{ratio['ack_p50']:.2f}x the p50 and {ratio['ack_p99']:.2f}x the p99 acknowledge latency"
        )
    lines.append("(replies sent: during the measured phase; Lessonbot's go out at the platforms' pace)")
    if report["outbound"]:
        lines += ["", "outbound: replies written into the outbox at once, timed where the stand-in receives them", ""]
        rows = []
        for result in report["outbound"]:
            if "sent" not in result:
                rows.append((result["case"], "failed", "", "", "", "", ""))
                notes.append(f"outbound failed: {result['note']}")
                continue
            rows.append((
                result["case"], f"{result['sent']}/{result['messages']} to {result['chats']}",
                number(result["per_s"], 1), result["limit"], str(result["busiest_second"]),
                str(result["busiest_chat_second"]), f"{result['seconds']:.1f}",
            ))
            if result["note"]:
                notes.append(f"{result['case']}: {result['note']}")
        lines += table(("case", "messages", "sent/s", "limit", "busiest 1 s", "busiest chat 1 s", "seconds"), rows)
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
