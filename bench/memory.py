"""`lessonbot bench memory`: what each active conversation costs the process in memory.

The core runs in this process on a scratch database (SQLite file, or a PostgreSQL database created and dropped), with
a channel that takes every reply at once (a platform with no limits). N conversations each send `--messages`
messages of `--text` (at most `--concurrency` conversations at a time), every reply is delivered, and the process's
resident memory (VmRSS) is read before and after, with a garbage collection first. The growth divided by N is what
the process keeps per conversation: remembered ids, caches, and whatever else outlives a message.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.processes import DEFAULT_POSTGRES_ADMIN_URL, DatabaseUnreachable, database_for, resident_kb
from bench.report import machine, print_report, run_event_loop

HELP = "memory a conversation costs the process, measured over many conversations"
DESCRIPTION = __doc__.split("\n", 2)[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=int, default=10_000, help="conversations (default 10,000)")
    parser.add_argument("--messages", type=int, default=1, help="messages per conversation (default 1)")
    parser.add_argument("--concurrency", type=int, default=200, help="conversations in flight at once (default 200)")
    parser.add_argument("--text", default="/help", help="what each conversation sends (default /help)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL)
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="machine-readable results")


def run(args: argparse.Namespace) -> int:
    if args.conversations < 1 or args.messages < 1 or args.concurrency < 1:
        print(
            "lessonbot bench memory: --conversations, --messages and --concurrency must be at least 1", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-memory-") as scratch:
        try:
            with database_for(args.database, Path(scratch), args.postgres_url) as url:
                report = run_event_loop(measure(args, url, Path(scratch)))
        except DatabaseUnreachable as exc:
            print(f"lessonbot bench memory: {exc}", file=sys.stderr)
            return 1
    print_report(report, args, render)
    return 0


async def measure(args: argparse.Namespace, url: str, scratch: Path) -> dict[str, Any]:
    from bot.channel import Delivery, RateLimit
    from bot.config import load_settings
    from bot.core import Lessonbot
    from bot.messages import InboundMessage
    from storage.migrate import upgrade

    await asyncio.to_thread(upgrade, url)
    settings = load_settings(
        _env_file=None, database_url=url, data_dir=scratch, secret_key="bench-secret-key-0123456789",
        log_level="WARNING", log_format="text", web_chat_enabled=False,
    )
    replied: dict[str, asyncio.Event] = {}

    class Platform:
        """Takes every reply at once, as a platform without limits would."""

        name = "bench"

        async def send(self, delivery: Delivery) -> str:
            event = replied.get(delivery.chat_id)
            if event is not None:
                event.set()
            return f"bench-{delivery.outbox_id}"

        def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
            return ()

    bot = Lessonbot(settings, [Platform()])
    slots = asyncio.Semaphore(args.concurrency)

    async def converse(number: int) -> None:
        chat = f"learner-{number}"
        async with slots:
            for index in range(args.messages):
                replied[chat] = asyncio.Event()
                await bot.receive(InboundMessage("bench", f"{number}-{index}", chat, chat, text=args.text))
                await asyncio.wait_for(replied[chat].wait(), timeout=120)
            del replied[chat]

    try:
        await converse(-1)  # warm up: imports, compiled statements, the first session
        gc.collect()
        before = resident_kb() or 0
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(converse(number) for number in range(args.conversations)))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        await bot.settle()
        gc.collect()
        after = resident_kb() or 0
    finally:
        await bot.stop()
    messages = args.conversations * args.messages
    return {
        "machine": machine(),
        "database": args.database,
        "conversations": args.conversations,
        "messages": messages,
        "memory_kb": {"before": before, "after": after},
        "kb_per_conversation": round(max(0, after - before) / args.conversations, 2),
        "messages_per_s": round(messages / seconds, 1),
        "cpu_ms_per_message": round(cpu / messages * 1000, 2),
    }


def render(report: dict[str, Any]) -> str:
    memory = report["memory_kb"]
    return "\n".join([
        "Lessonbot memory benchmark: the core in this process, replies taken at once",
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; database {report['database']}",
        f"{report['conversations']:,} conversations, {report['messages']:,} messages: resident memory "
        f"{memory['before'] / 1024:.1f} → {memory['after'] / 1024:.1f} MB, "
        f"{report['kb_per_conversation']:.2f} KB a conversation (target: under 50 KB)",
        f"the core alone: {report['messages_per_s']:,.0f} messages/s, {report['cpu_ms_per_message']:.2f} ms of CPU a "
        "message (no HTTP)",
    ])
