"""The action server on a port of this machine, with the Rasa server stand-in calling it (standins/rasa.py)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from bot.core import Lessonbot
from bot.rasa_actions import create_action_app
from standins.rasa import ActionRun, RasaServerStandIn
from tests.dialogs.learning_support import import_sample

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rasa"
ACTIONS_TOKEN = "actions-token-0123456789"
RASA_TOKEN = "rasa-token-0123456789"


def example_domain() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE / "domain.yml").read_text())


def listening() -> socket.socket:
    """A socket bound to a free port of 127.0.0.1, held until `serving` hands it to uvicorn: a port only looked up
    and let go may be taken meanwhile (a busy machine's outgoing connections get ports of the same range)."""
    bound = socket.socket()
    bound.bind(("127.0.0.1", 0))
    return bound


def port_of(bound: socket.socket) -> int:
    return int(bound.getsockname()[1])


@asynccontextmanager
async def serving(app: Any, bound: socket.socket) -> AsyncIterator[None]:
    """`app` under uvicorn on the socket `bound` (from `listening`), lifespan included, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[bound]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def rasa_assistant(
    settings: Any, *, files: bool = False, nlu: bool = False, **overrides: Any
) -> AsyncIterator[tuple[RasaServerStandIn, Lessonbot]]:
    """A Rasa server (the stand-in) calling `lessonbot rasa-actions`'s app, which sends through that Rasa server;
    the sample course imported. `files`: documents go as links to the action server; `nlu`: plain words go to the
    stand-in's model too (RASA_NLU_URL)."""
    bound = listening()
    port = port_of(bound)
    if files:
        overrides["rasa_actions_public_url"] = f"http://127.0.0.1:{port}"
    async with RasaServerStandIn(
        action_endpoint=f"http://127.0.0.1:{port}/webhook", domain=example_domain(), token=RASA_TOKEN,
        action_token=ACTIONS_TOKEN,
    ) as rasa:
        configured = settings.model_copy(
            update={
                "rasa_url": rasa.url,
                "rasa_token": RASA_TOKEN,
                "rasa_actions_token": ACTIONS_TOKEN,
                "rasa_action_timeout_seconds": 15.0,
                "web_chat_enabled": False,
                **({"rasa_nlu_url": rasa.url} if nlu else {}),
                **overrides,
            }
        )
        app = create_action_app(configured)
        async with serving(app, bound):
            bot = app.state.lessonbot
            await import_sample(bot)
            yield rasa, bot


async def onboard(rasa: RasaServerStandIn, sender: str) -> ActionRun:
    """Lessonbot's onboarding, every answer given through action_lessonbot_answer (typed or a button pressed)."""
    run = await rasa.say(sender, "hi", action="action_lessonbot_answer", intent="greet")
    run = await rasa.press(sender, button(run, "Yes, let's start"), action="action_lessonbot_answer")
    run = await rasa.say(sender, "Ann", action="action_lessonbot_answer")
    run = await rasa.say(sender, "Lisbon", action="action_lessonbot_answer")
    run = await rasa.press(sender, button(run, "Yes, that's right"), action="action_lessonbot_answer")
    run = await rasa.say(sender, "08:00", action="action_lessonbot_answer")
    run = await rasa.press(sender, button(run, "Every day"), action="action_lessonbot_answer")
    run = await rasa.press(sender, button(run, "Spot the phish, five minutes a day"), action="action_lessonbot_answer")
    return await rasa.press(sender, button(run, "1 lesson (about 5 minutes)"), action="action_lessonbot_answer")


def button(run: ActionRun, title: str) -> dict[str, Any]:
    """The button titled `title` among the buttons of an action's responses."""
    for response in reversed(run.responses):
        for found in response.get("buttons", ()):
            if found["title"] == title:
                return found
    raise AssertionError(f"no button {title!r} in {[r.get('buttons') for r in run.responses]}")
