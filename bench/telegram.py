"""`lessonbot bench telegram`: Telegram end to end, update in → sendMessage at the Bot API stand-in, beside the bare
python-telegram-bot echo application, in one run.

Both servers get the same signed Telegram updates from the same load generator and send their replies to the same
Bot API stand-in (standins/telegram.py, in this process), one after the other, each on its own:
- Lessonbot: `lessonbot serve` with only Telegram on, on a fresh database (SQLite file, or a PostgreSQL database
  created and dropped), its platform rate limits out of the way (OUTBOX_PACED=false: against a stand-in, Telegram's
  30 messages/s would be all there is to measure);
- the bare application: bench/ptb_echo.py, python-telegram-bot's own `run_webhook` with one handler that echoes.

--learners people write at once; each sends --messages messages of `/help`, one after another, each as soon as the
reply to the one before has reached the stand-in, as a person waiting for the answer does. Measured per server: round
trips a second (update POSTed → its reply's sendMessage received), their latency p50/p99, and the server's CPU a
message; then Lessonbot's rate against the issue's target, 2× the bare application's. The first --warmup messages of
every learner (creating their user; learning how many messages a reply is) are left out. With --rounds N the two
servers are measured N times, one after the other each round (each round a fresh Lessonbot and database), and the
ratio reported is the median of the rounds' ratios: on a 2-core machine a single pair moved between 1.44× and 2.05×
within minutes (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from bench.channels import NO_TORNADO, TELEGRAM_SECRET, bare_ptb, import_standins, ms
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
from bench.report import add_json_option, machine, number, percentile, print_report, progress, run_event_loop, table
from bot.cli.numbers import whole

HELP = "Telegram end to end (update in → sendMessage at the stand-in), beside the bare python-telegram-bot echo app"
DESCRIPTION = __doc__.split("\n", 2)[2]
TARGET_RATIO = 2.0  # the target: Lessonbot's end-to-end rate at least twice the bare application's
LABELS = {"lessonbot": "Lessonbot (limits out of the way)", "ptb": "bare python-telegram-bot echo"}
REPLY_TIMEOUT = 30.0
UPDATE_IDS = itertools.count(20_000_000)
QUIET_SECONDS = 0.5  # after a warm-up reply: any further part of it arrives within this


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--learners", type=whole(), default=32, help="people writing at once (32)")
    # 60: about 1,900 round trips a server, 1.5 to 2.5 s measured (at 20, under half a second: too short to be steady)
    parser.add_argument("--messages", type=whole(), default=60, help="messages each, waiting for each reply (60)")
    parser.add_argument("--warmup", type=whole(), default=2, help="first messages of each learner left out (2)")
    parser.add_argument("--text", default="/help", help="what they send (default /help)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite", help="(default sqlite)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL,
                        help="with --database postgresql: where the bench may create and drop databases")
    parser.add_argument("--no-ptb", dest="ptb", action="store_false", help="leave out the bare application")
    parser.add_argument("--rounds", type=whole(), default=1,
                        help="measure both servers this many times, alternating; the ratio is the rounds' median (1)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    if min(args.learners, args.messages, args.rounds) < 1 or not 1 <= args.warmup < args.messages:
        print("lessonbot bench telegram: --learners, --messages and --rounds must be at least 1, and --warmup from 1 "
              "to --messages - 1", file=sys.stderr)
        return 2
    report = run_event_loop(run_benchmark(args, import_standins()))
    print_report(report, args, render)
    return 1 if any(result["status"] == "failed" for result in report["results"]) else 0


@dataclass
class Arrivals:
    """sendMessage calls as the stand-in answers them: how many each chat got, and who waits for the next."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    waiting: dict[str, tuple[int, asyncio.Future[float]]] = field(default_factory=dict)

    def seen(self, call: Any) -> None:
        if call.method != "sendMessage":
            return
        chat = call.params["chat_id"]
        self.counts[chat] += 1
        wanted = self.waiting.get(chat)
        if wanted is not None and self.counts[chat] >= wanted[0] and not wanted[1].done():
            wanted[1].set_result(time.perf_counter())
            del self.waiting[chat]

    async def until(self, chat: str, count: int) -> float:
        """The moment the chat's sendMessage count reached `count` (now, if it has)."""
        if self.counts[chat] >= count:
            return time.perf_counter()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[chat] = (count, future)
        return await asyncio.wait_for(future, REPLY_TIMEOUT)


@asynccontextmanager
async def unpaced_lessonbot(world: Any, args: argparse.Namespace, workdir: Path, http: Any
                            ) -> AsyncIterator[ServerProcess]:
    workdir.mkdir(parents=True)
    with database_for(args.database, workdir, args.postgres_url) as database_url:
        env = child_environment(workdir, database_url)
        env.update(WEB_CHAT_ENABLED="false", OUTBOX_PACED="false", **world.settings("telegram", "http://127.0.0.1"))
        await asyncio.to_thread(upgrade_schema, workdir, env)
        server = start_process(LABELS["lessonbot"], [*LESSONBOT, "serve"], workdir, env,
                               port=free_port())
        try:
            await server.wait_ready(http, "/readyz")
            yield server
        finally:
            server.stop()


async def measure(target: str, server: ServerProcess, path: str, world: Any, args: argparse.Namespace,
                  http: Any, chats: itertools.count[int]) -> dict[str, Any]:
    telegram = world.modules.telegram
    arrivals = Arrivals()
    world.telegram.on_call = arrivals.seen
    learners = [next(chats) for _ in range(args.learners)]
    parts: list[int] = []
    errors: dict[str, int] = defaultdict(int)
    latencies: list[float] = []

    async def post(chat: int) -> float:
        update = telegram.text_update(args.text, chat_id=chat, user=telegram.person(chat, f"Learner {chat}"),
                                      update_id=next(UPDATE_IDS))
        sent_at = time.perf_counter()
        async with http.post(server.url + path, data=json.dumps(update).encode(), headers={
            "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET,
        }) as response:
            await response.read()
            if not 200 <= response.status < 300:
                raise ServerFailed(f"answered {response.status}")
        return sent_at

    async def warm_up(chat: int) -> None:
        for _ in range(args.warmup):
            before = arrivals.counts[str(chat)]
            await post(chat)
            await arrivals.until(str(chat), before + 1)
            await asyncio.sleep(QUIET_SECONDS)  # the reply's other parts, if it has any
        parts.append(arrivals.counts[str(chat)] - before)

    async def converse(chat: int, per_message: int) -> None:
        for _ in range(args.messages - args.warmup):
            expected = arrivals.counts[str(chat)] + per_message
            try:
                sent_at = await post(chat)
                latencies.append(await arrivals.until(str(chat), expected) - sent_at)
            except (ServerFailed, TimeoutError, OSError) as exc:
                errors[str(exc) or type(exc).__name__] += 1
                return

    try:
        await asyncio.gather(*(warm_up(chat) for chat in learners))
        per_message = max(parts)
        cpu_before = server.cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(converse(chat, per_message) for chat in learners))
        seconds = time.perf_counter() - started
        cpu_after = server.cpu_seconds()
    finally:
        world.telegram.on_call = None
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "target": target,
        "label": LABELS[target],
        "status": "ok",
        "messages": len(latencies),
        "sends_per_reply": per_message,
        "seconds": round(seconds, 3),
        "messages_per_s": round(len(latencies) / seconds, 1) if seconds > 0 else None,
        "round_trip_ms": {"p50": ms(percentile(latencies, 50)), "p99": ms(percentile(latencies, 99))},
        "server_cpu_ms_per_message": round(cpu / len(latencies) * 1000, 2) if cpu is not None and latencies else None,
        "errors": dict(errors),
    }


async def run_benchmark(args: argparse.Namespace, modules: Any) -> dict[str, Any]:
    import aiohttp

    from bench.channels import platforms

    report: dict[str, Any] = {
        "machine": machine(),
        "options": {"learners": args.learners, "messages": args.messages, "warmup": args.warmup, "text": args.text,
                    "database": args.database, "rounds": args.rounds},
        "results": [],
    }
    http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.learners * 2, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(total=REPLY_TIMEOUT),
    )
    chats = itertools.count(7_000_000)
    try:
        async with platforms(modules) as world:
            with tempfile.TemporaryDirectory(prefix="lessonbot-bench-telegram-") as scratch:
                for each_round in range(1, args.rounds + 1):
                    for target in ("lessonbot", "ptb") if args.ptb else ("lessonbot",):
                        workdir = Path(scratch) / str(each_round)
                        result = await measure_target(target, world, args, workdir, http, chats)
                        report["results"].append({**result, "round": each_round})
    finally:
        await http.close()
    report["ratios"] = [ratio([r for r in report["results"] if r["round"] == each_round])
                        for each_round in range(1, args.rounds + 1)]
    report["ratio"] = median_ratio(report["ratios"])
    return report


async def measure_target(target: str, world: Any, args: argparse.Namespace, scratch: Path, http: Any,
                         chats: itertools.count[int]) -> dict[str, Any]:
    if target == "ptb" and importlib.util.find_spec("tornado") is None:
        return {"target": target, "label": LABELS[target], "status": "skipped", "note": NO_TORNADO}
    progress(f"{LABELS[target]}: starting")
    try:
        if target == "ptb":
            async with bare_ptb(world, scratch / target, http) as server:
                progress(f"{LABELS[target]}: measuring")
                return await measure(target, server, "/telegram", world, args, http, chats)
        async with unpaced_lessonbot(world, args, scratch / target, http) as server:
            progress(f"{LABELS[target]}: measuring")
            return await measure(target, server, "/webhooks/telegram", world, args, http, chats)
    except (ServerFailed, DatabaseUnreachable, TimeoutError) as exc:
        return {"target": target, "label": LABELS[target], "status": "failed", "note": str(exc) or repr(exc)}


def median_ratio(ratios: list[float | None]) -> float | None:
    """The rounds' median ratio (the lower middle of an even count), or None unless every round gave one."""
    if not ratios or any(each is None for each in ratios):
        return None
    ordered = sorted(cast(list[float], ratios))
    return ordered[(len(ordered) - 1) // 2]


def ratio(results: list[dict[str, Any]]) -> float | None:
    by_target = {result["target"]: result for result in results if result["status"] == "ok"}
    ours, bare = by_target.get("lessonbot"), by_target.get("ptb")
    if not ours or not bare or not bare["messages_per_s"] or ours["messages_per_s"] is None:
        return None
    return round(ours["messages_per_s"] / bare["messages_per_s"], 2)


def render(report: dict[str, Any]) -> str:
    m, o = report["machine"], report["options"]
    lines = [
        "Lessonbot Telegram benchmark: update in → sendMessage at the Bot API stand-in, end to end",
        f"machine: {m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]:.2f} at start; {m['os']}",
        f"software: Python {m['python']}; load generator {m['client']}; database {o['database']}",
        f"{o['learners']} learners at once, {o['messages']} messages of {o['text']!r} each, every one after the "
        f"reply to the one before ({o['warmup']} warm-up messages each left out)",
        "",
    ]
    rows, notes = [], []
    rounds = o.get("rounds", 1)
    for result in report["results"]:
        label = result["label"] if rounds == 1 else f"{result['label']}, round {result['round']}"
        if result["status"] != "ok":
            rows.append((label, result["status"], "", "", "", ""))
            notes.append(f"{label} {result['status']}: {result['note']}")
            continue
        rows.append((
            label, number(result["messages_per_s"]), number(result["round_trip_ms"]["p50"], 1),
            number(result["round_trip_ms"]["p99"], 1), number(result["server_cpu_ms_per_message"], 2),
            str(sum(result["errors"].values())),
        ))
        if result["errors"]:
            notes.append(f"{result['label']} errors: {result['errors']}")
    lines += table(("server", "messages/s", "round trip p50 ms", "p99 ms", "server CPU ms a message", "errors"), rows)
    bare = [r["messages_per_s"] for r in report["results"] if r["target"] == "ptb" and r["status"] == "ok"]
    if report.get("ratio") is not None and len(bare) == 1:
        lines.append(
            f"Lessonbot / bare python-telegram-bot: {report['ratio']:.2f}x the end-to-end rate "
            f"(target: {TARGET_RATIO:g}x, {number(bare[0] * TARGET_RATIO)} messages/s in this run)"
        )
    elif report.get("ratio") is not None:
        each = ", ".join(f"{value:.2f}x" for value in report["ratios"])
        lines.append(
            f"Lessonbot / bare python-telegram-bot: {report['ratio']:.2f}x the end-to-end rate, the median of "
            f"{len(report['ratios'])} rounds ({each}; target: {TARGET_RATIO:g}x)"
        )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)
