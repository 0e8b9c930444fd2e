"""`lessonbot chat`: talk to the bot in this terminal, or pipe lines into it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import io
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.core import Lessonbot


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help="talk to the bot in this terminal (or pipe lines into it)")
    chat.add_argument("--user", type=user_id, default=getpass.getuser(),
                      help="who you are in the conversation; only this person's replies are shown (default: $USER)")
    chat.set_defaults(func=cmd_chat, uses_database=True)


def user_id(text: str) -> str:
    """An argparse `type`: `--user` as the core takes a chat's and a sender's id (`bot.pipeline.storable_message`),
    refused here with one line rather than by the first message typed."""
    from bot.pipeline import ID_LENGTHS
    from bot.text import storable

    most = min(ID_LENGTHS["chat_id"], ID_LENGTHS["sender_id"])
    if not text.strip():
        raise argparse.ArgumentTypeError("it is empty: give a name, e.g. --user ann")
    if len(text) > most:
        raise argparse.ArgumentTypeError(f"{len(text)} characters is too long: at most {most}")
    if storable(text) != text:
        raise argparse.ArgumentTypeError(f"{text!r} holds a character no database stores (NUL, or a byte that is "
                                         "not UTF-8)")
    return text


def cmd_chat(settings: Settings, args: argparse.Namespace) -> int:
    from bot.core import Lessonbot
    from channels.console import ConsoleChannel

    console = ConsoleChannel(args.user)
    interactive = sys.stdin.isatty()
    if isinstance(sys.stdin, io.TextIOWrapper):  # a line not in the terminal's encoding is read as it can be (�)
        sys.stdin.reconfigure(errors="replace")

    async def main() -> None:
        lessonbot = Lessonbot(settings, [console])
        try:
            if interactive:
                print(f"Chatting as {args.user}. Type a message; /help lists commands; Ctrl-D quits.")
            await settled(lessonbot)  # what was queued for this person while no terminal was open
            while True:
                if interactive:
                    print("you> ", end="", flush=True)
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    break
                if not line.strip():
                    continue
                await lessonbot.receive(console.inbound(line))
                await settled(lessonbot)
        finally:
            await lessonbot.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print()
    return 0


async def settled(lessonbot: Lessonbot) -> None:
    """Wait for the replies to what was typed; a turn slower than the wait (a model's long answer) goes on, and its
    replies are printed when they come."""
    try:
        await lessonbot.settle()
    except TimeoutError:
        print("(still working on it: the answer follows when it is ready)", flush=True)
