"""`lessonbot bench pipeline|channels|telegram|scheduler|memory|dashboard|slack-team|round-trips`: the benches (bench/),
registered here; `bench knowledge` is with the knowledge commands (bot/cli/knowledge.py).

The bench modules bring their options (`add_arguments`) and their run (`run(args)`); what they need of the wiring —
the scheduler bench's dispatcher — they are handed from here.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.groups import subcommands

if TYPE_CHECKING:
    from bot.config import Settings
    from storage.db import Database


def register(subparsers: argparse._SubParsersAction) -> None:
    from bench import channels, dashboard, memory, pipeline, round_trips, scheduler, slack_team, telegram

    kinds = subcommands(subparsers, "bench", "measure the bot's speed")
    for name, bench, run in (
        ("pipeline", pipeline, lambda settings, args: pipeline.run(args)),
        ("channels", channels, lambda settings, args: channels.run(args)),
        ("telegram", telegram, lambda settings, args: telegram.run(args)),
        ("scheduler", scheduler, cmd_bench_scheduler),
        ("memory", memory, lambda settings, args: memory.run(args, sample_course=settings.sample_course_dir)),
        ("dashboard", dashboard, lambda settings, args: dashboard.run(args)),
        ("slack-team", slack_team, cmd_bench_slack_team),
        ("round-trips", round_trips, lambda settings, args: round_trips.run(args)),
    ):
        parser = kinds.add_parser(
            name, help=bench.HELP, description=bench.DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        bench.add_arguments(parser)
        parser.set_defaults(func=run)


def cmd_bench_slack_team(settings: Settings, args: argparse.Namespace) -> int:
    from bench import slack_team

    return slack_team.run(args, sample_course=settings.sample_course_dir)


def cmd_bench_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from bench import scheduler

    return scheduler.run(args, sample_course=settings.sample_course_dir, dispatching=dispatching)


@asynccontextmanager
async def dispatching(
    database_url: str, data_dir: Path, channel_settings: dict[str, Any]
) -> AsyncIterator[tuple[Database, Callable[[str], None]]]:
    """`lessonbot dispatch` (not elected: the bench's is the only one) on `database_url`, with the channels
    `channel_settings` turn on, while the block lasts; its database, and its way to run a clock's job now."""
    from bot.cli.serve import dispatcher
    from bot.config import load_settings

    settings = load_settings(
        _env_file=None, database_url=database_url, data_dir=data_dir, secret_key="bench-secret-key-0123456789",
        log_level="WARNING", log_format="text", web_chat_enabled=False, **channel_settings,
    )
    lessonbot = dispatcher(settings, elect=False)
    lessonbot.start()
    try:
        yield lessonbot.db, lessonbot.start_job
    finally:
        await lessonbot.stop()
