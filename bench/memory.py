"""`lessonbot bench memory`: what each active conversation costs the process in memory.

The core runs in this process on a scratch database (SQLite file, or a PostgreSQL database created and dropped), with
a channel that takes every reply at once (a platform with no limits). N conversations each send `--messages`
messages of `--text` (at most `--concurrency` conversations at a time), every reply is delivered, and the process's
resident memory (VmRSS) is read before and after, with a garbage collection first. The growth divided by N is what
the process keeps per conversation: remembered ids, caches, and whatever else outlives a message.

With --turn lesson, each conversation first goes through onboarding (not measured) into the sample course
(--course, by default SAMPLE_COURSE_DIR), then, all conversations a step at a time: the first lesson's three parts
(each a part of text with buttons: "Start my first lesson", "Next ▸", "Next ▸"), the quiz opened, its three questions
answered (each answer: the learner's state, the feedback and the next question in the outbox, an FSRS card
scheduled), and a `/help`. CPU a message and messages/s are given per kind of turn, side by side with the `/help`
turn of the same run and its target (2.5 ms of CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.processes import DEFAULT_POSTGRES_ADMIN_URL, DatabaseUnreachable, database_for, resident_kb
from bench.report import machine, number, print_report, progress, run_event_loop, table
from bot.cli.numbers import whole

if TYPE_CHECKING:
    from bot.channel import Delivery, RateLimit
    from bot.core import Lessonbot

HELP = "memory a conversation costs the process, measured over many conversations"
DESCRIPTION = __doc__.split("\n", 2)[2]
TARGET_KB = 50.0  # under this a conversation, measured at 10,000
TARGET_CPU_MS = 2.5  # of CPU a `/help` message, acknowledgement and delivery included
WAVE_SECONDS = 600.0  # the longest one step of every conversation may take with --turn lesson


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--conversations", type=whole(), default=10_000, help="conversations (default 10,000)")
    parser.add_argument("--messages", type=whole(), default=1, help="messages per conversation (default 1)")
    parser.add_argument("--concurrency", type=whole(), default=200,
                        help="conversations in flight at once (default 200)")
    parser.add_argument("--text", default="/help", help="what each conversation sends (default /help)")
    parser.add_argument(
        "--turn", choices=("help", "lesson"), default="help",
        help="help: --messages of --text each (default); lesson: onboarding, then a /help, a lesson's parts and its "
             "quiz answered, each kind of turn measured apart",
    )
    parser.add_argument("--course", type=Path, help="with --turn lesson: the course (default: SAMPLE_COURSE_DIR)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL)
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH", help="machine-readable results")


def run(args: argparse.Namespace, *, sample_course: Path | None = None) -> int:
    """`sample_course`: the course folder --turn lesson takes when --course is not given."""
    args.course = args.course or sample_course
    if args.turn == "lesson" and (args.course is None or not (args.course / "course.yaml").is_file()):
        print(f"lessonbot bench memory: {args.course} is not a course folder (no course.yaml); give one with --course "
              "or SAMPLE_COURSE_DIR, such as the project's courses/sample", file=sys.stderr)
        return 2
    if args.conversations < 1 or args.messages < 1 or args.concurrency < 1:
        print(
            "lessonbot bench memory: --conversations, --messages and --concurrency must be at least 1", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="lessonbot-bench-memory-") as scratch:
        try:
            with database_for(args.database, Path(scratch), args.postgres_url) as url:
                report = run_event_loop(measure(args, url, Path(scratch)))
        except (DatabaseUnreachable, BenchStepFailed) as exc:
            print(f"lessonbot bench memory: {exc}", file=sys.stderr)
            return 1
    print_report(report, args, render)
    return 0


async def measure(args: argparse.Namespace, url: str, scratch: Path) -> dict[str, Any]:
    from bot.config import load_settings
    from bot.core import Lessonbot
    from storage.migrate import upgrade

    await asyncio.to_thread(upgrade, url)
    settings = load_settings(
        _env_file=None, database_url=url, data_dir=scratch, secret_key="bench-secret-key-0123456789",
        log_level="WARNING", log_format="text", web_chat_enabled=False,
    )
    platform = Platform()
    bot = Lessonbot(settings, [platform])
    try:
        if args.turn == "lesson":
            turns = await lesson_turns(args, bot, platform)
        else:
            turns = await help_turns(args, bot, platform)
    finally:
        await bot.stop()
    return {"machine": machine(), "database": args.database, "turn": args.turn, **turns}


class Platform:
    """Takes every reply at once, as a platform without limits would; keeps them, and tells whoever waits."""

    name = "bench"

    def __init__(self) -> None:
        from bot.messages import Text

        self.text_type = Text
        self.replied: dict[str, asyncio.Event] = {}
        self.last: dict[str, Any] = {}  # a chat's newest text reply with something to answer (--turn lesson)
        self.keep = False
        self.received: dict[str, int] = {}  # text replies a chat got (--turn lesson)
        self.finished: set[str] = set()  # chats that got "🎉 Lesson done"

    async def send(self, delivery: Delivery) -> str:
        event = self.replied.get(delivery.chat_id)
        if event is not None:
            event.set()
        if self.keep and isinstance(delivery.reply, self.text_type):
            self.last[delivery.chat_id] = delivery.reply
            self.received[delivery.chat_id] = self.received.get(delivery.chat_id, 0) + 1
            if delivery.reply.text.startswith("🎉"):
                self.finished.add(delivery.chat_id)
        return f"bench-{delivery.outbox_id}"

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        return ()


async def help_turns(args: argparse.Namespace, bot: Lessonbot, platform: Platform) -> dict[str, Any]:
    """--messages of --text from each conversation, each waiting for its reply; memory before and after."""
    from bot.messages import InboundMessage

    slots = asyncio.Semaphore(args.concurrency)

    async def converse(number: int) -> None:
        chat = f"learner-{number}"
        async with slots:
            for index in range(args.messages):
                platform.replied[chat] = asyncio.Event()
                await bot.receive(InboundMessage("bench", f"{number}-{index}", chat, chat, text=args.text))
                await asyncio.wait_for(platform.replied[chat].wait(), timeout=120)
            del platform.replied[chat]

    await converse(-1)  # warm up: imports, compiled statements, the first session
    gc.collect()
    before = resident_kb() or 0
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(converse(number) for number in range(args.conversations)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await bot.settle()
    gc.collect()
    after = resident_kb() or 0
    messages = args.conversations * args.messages
    return {
        "conversations": args.conversations,
        "messages": messages,
        "memory_kb": {"before": before, "after": after},
        "kb_per_conversation": round(max(0, after - before) / args.conversations, 2),
        "messages_per_s": round(messages / seconds, 1),
        "cpu_ms_per_message": round(cpu / messages * 1000, 2),
    }


# --turn lesson -------------------------------------------------------------------------------------------------------

ONBOARDING = (  # (typed or pressed, what): the shortest way into a course
    ("say", "/start"), ("press", "Yes, let's start"), ("say", "Ann"), ("say", "Lisbon"), ("press", "Yes, that's right"),
    ("say", "08:00"), ("press", "Every day"), ("press", "{course}"), ("press", "1 lesson (about 5 minutes)"),
)
KINDS = {
    "help": "/help",
    "part": "lesson part with buttons",
    "answer": "quiz answer (state + outbox + FSRS card)",
}


@dataclass
class Kind:
    messages: int = 0
    seconds: float = 0.0
    cpu: float = 0.0


class Learners:
    """The conversations of --turn lesson, a step at a time: each sends what its newest reply asks for."""

    def __init__(self, args: argparse.Namespace, bot: Lessonbot, platform: Platform) -> None:
        self.args, self.bot, self.platform = args, bot, platform
        self.chats = [f"learner-{number}" for number in range(args.conversations)]
        self.serial = 0
        self.questions: dict[int, Any] = {}

    async def wave(self, step: Callable[[str], tuple[str, str | None]]) -> int:
        """Every conversation sends `step(chat)` (text, button value), at most --concurrency at once; then
        everything they caused is processed and sent. The messages sent."""
        from bot.messages import InboundMessage

        slots = asyncio.Semaphore(self.args.concurrency)

        async def one(chat: str) -> None:
            text, choice = step(chat)
            self.serial += 1
            async with slots:
                await self.bot.receive(InboundMessage("bench", f"m{self.serial}", chat, chat, text=text, choice=choice))

        before = {chat: self.platform.received.get(chat, 0) for chat in self.chats}
        await asyncio.gather(*(one(chat) for chat in self.chats))
        await self.bot.settle(timeout=WAVE_SECONDS)
        async with asyncio.timeout(WAVE_SECONDS):  # and every conversation has its reply, whatever settle saw
            while any(self.platform.received.get(chat, 0) <= before[chat] for chat in self.chats):
                await asyncio.sleep(0.01)
        return len(self.chats)

    async def measured(self, kind: Kind, step: Callable[[str], tuple[str, str | None]]) -> None:
        started, cpu = time.perf_counter(), time.process_time()
        kind.messages += await self.wave(step)
        kind.seconds += time.perf_counter() - started
        kind.cpu += time.process_time() - cpu

    def press(self, label: str) -> Callable[[str], tuple[str, str | None]]:
        def step(chat: str) -> tuple[str, str | None]:
            reply = self.platform.last.get(chat)
            for choice in getattr(reply, "choices", ()):
                if choice.label == label:
                    return choice.label, choice.value
            shown = getattr(reply, "text", "(nothing)")
            raise BenchStepFailed(f"{chat}: no button {label!r} on the newest reply: {shown[:200]!r}")

        return step

    @staticmethod
    def say(text: str) -> Callable[[str], tuple[str, str | None]]:
        return lambda chat: (text, None)

    def answer(self, chat: str) -> tuple[str, str | None]:
        """The right answer to the question the newest reply asks: a button, or typed."""
        reply = self.platform.last.get(chat)
        choices = list(getattr(reply, "choices", ()))
        for choice in choices:
            if choice.value.startswith("quiz:"):
                question = self.questions[int(choice.value.split(":")[1])]
                if question.kind == "choice":  # the button offered for it (its value carries the choice's words)
                    right = choices[question.correct_choice]
                    return right.label, right.value
                return choice.label, f"quiz:{question.id}:{str(bool(question.is_true)).lower()}"
        asked = getattr(reply, "text", "")
        for question in self.questions.values():
            if question.kind == "text" and question.prompt in asked:
                return question.accepted_answers[0], None
        raise BenchStepFailed(f"{chat}: the newest reply asks no question of the course: {asked[:200]!r}")


class BenchStepFailed(Exception):
    """A conversation of --turn lesson did not get the reply the next step answers."""


async def lesson_turns(args: argparse.Namespace, bot: Lessonbot, platform: Platform) -> dict[str, Any]:
    from sqlalchemy import select

    from authoring.format import load_course
    from authoring.importer import import_course
    from storage.courses import Question

    course = load_course(args.course)
    async with bot.db.transaction() as session:
        await import_course(session, course)
    async with bot.db.sessions() as session:
        questions = {question.id: question for question in await session.scalars(select(Question))}
    learners = Learners(args, bot, platform)
    learners.questions = questions
    platform.keep = True
    progress(f"lesson turns: onboarding {args.conversations:,} conversations (not measured)")
    for how, what in ONBOARDING:
        await learners.wave(learners.say(what) if how == "say" else learners.press(what.format(course=course.title)))
    gc.collect()
    before = resident_kb() or 0
    kinds = {name: Kind() for name in KINDS}
    progress("lesson turns: the first lesson's parts, its quiz, a /help")
    await learners.measured(kinds["part"], learners.press("Start my first lesson"))
    await learners.measured(kinds["part"], learners.press("Next ▸"))
    await learners.measured(kinds["part"], learners.press("Next ▸"))
    await learners.wave(learners.press("Take the quiz ▸"))
    for _question in range(3):
        await learners.measured(kinds["answer"], learners.answer)
    done = len(platform.finished)
    await learners.measured(kinds["help"], learners.say("/help"))
    gc.collect()
    after = resident_kb() or 0
    return {
        "conversations": args.conversations,
        "messages": sum(kind.messages for kind in kinds.values()),
        "lessons_done": done,
        "memory_kb": {"before": before, "after": after},
        "kb_per_conversation": round(max(0, after - before) / args.conversations, 2),
        "turns": {
            name: {
                "label": KINDS[name],
                "messages": kind.messages,
                "messages_per_s": round(kind.messages / kind.seconds, 1) if kind.seconds else None,
                "cpu_ms_per_message": round(kind.cpu / kind.messages * 1000, 2) if kind.messages else None,
            }
            for name, kind in kinds.items()
        },
    }


def render(report: dict[str, Any]) -> str:
    memory = report["memory_kb"]
    machine_line = (
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, load average "
        f"{report['machine']['load_average'][0]:.2f} at the start; database {report['database']}"
    )
    memory_line = (
        f"{report['conversations']:,} conversations, {report['messages']:,} messages: resident memory "
        f"{memory['before'] / 1024:.1f} → {memory['after'] / 1024:.1f} MB, "
        f"{report['kb_per_conversation']:.2f} KB a conversation (target: under {TARGET_KB:g} KB)"
    )
    if report["turn"] != "lesson":
        return "\n".join([
            "Lessonbot memory benchmark: the core in this process, replies taken at once",
            machine_line,
            memory_line,
            f"the core alone: {report['messages_per_s']:,.0f} messages/s, {report['cpu_ms_per_message']:.2f} ms of "
            f"CPU a message (no HTTP; {report['conversations']:,} of them first contacts, each making a user, an "
            f"identity and a conversation; the target of {TARGET_CPU_MS:g} ms is for a /help from someone known: "
            "--turn lesson measures it)",
        ])
    rows = [
        (turn["label"], f"{turn['messages']:,}", number(turn["messages_per_s"]), number(turn["cpu_ms_per_message"], 2),
         f"{TARGET_CPU_MS:g} ms" if name == "help" else "")
        for name, turn in report["turns"].items()
    ]
    return "\n".join([
        "Lessonbot turn benchmark: the core in this process, replies taken at once; every conversation a step at a "
        "time",
        machine_line,
        *table(("turn", "messages", "messages/s", "CPU ms a message", "target"), rows),
        f"lessons finished: {report['lessons_done']:,} of {report['conversations']:,}",
        memory_line + " (after onboarding, over the measured turns)",
    ])
