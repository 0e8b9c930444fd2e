"""Plain words read by an organisation's Rasa model, before the question answerer (optional: RASA_NLU_URL).

A message no command, button or dialog step takes (bot/routing.py's fallback) is sent to the Rasa server's
`POST /model/parse`. An intent at or above RASA_NLU_THRESHOLD that the mapping names runs that command ("can we
carry on?" → ask_next → /next); anything else — another intent, a low confidence, no whole answer within
RASA_NLU_TIMEOUT_SECONDS (however its bytes trickle in), an error — goes to the question answerer, as without Rasa.
The call is made outside the turn's transaction (`turn.call_outside_transaction`), so a slow Rasa server holds no
database lock, and once per message: the replayed turn reads its result.

The mapping is RASA_NLU_INTENTS, a YAML file of `intent: /command [arguments]`, or INTENTS below; every command it
names must exist, checked when the bot is built (a ConfigError naming the file and the line's intent otherwise).
Messages from a Rasa assistant itself (the `rasa` channel) were read by its model already and are not sent again.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bot import routing
from bot.channel import RequestRejected
from bot.config import ConfigError, Settings
from channels.webhook import parse_json
from dialogs import ask
from dialogs.turn import Turn

log = logging.getLogger(__name__)

# The built-in mapping: intent names a Rasa assistant commonly has → our commands.
INTENTS: Mapping[str, str] = {
    "ask_next": "/next",
    "next_lesson": "/next",
    "pause_lessons": "/pause",
    "resume_lessons": "/resume",
    "ask_progress": "/progress",
    "ask_review": "/review",
    "change_settings": "/settings",
    "list_courses": "/courses",
    "ask_certificate": "/certificate",
    "ask_help": "/help",
    "greet": "/start",
}


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    confidence: float


class RasaNlu:
    """Asks a Rasa server's model what a text means, and runs the command its intent is mapped to."""

    def __init__(
        self,
        *,
        url: str,
        token: str = "",
        threshold: float = 0.7,
        intents: Mapping[str, str] = INTENTS,
        timeout: float = 3.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.threshold = threshold
        self.intents = dict(intents)
        self.timeout = timeout

    async def parse(self, text: str) -> Intent | None:
        """The intent Rasa reads in `text`; None when it cannot say (a timeout, an error, an answer we cannot read)."""
        params = {"token": self.token} if self.token else {}
        try:
            # httpx's timeout is for each step (connecting, each read): the whole answer must come within it too, or
            # a server sending its bytes slowly would hold the learner's reply for as long as it likes
            async with asyncio.timeout(self.timeout), httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(f"{self.url}/model/parse", params=params, json={"text": text})
            response.raise_for_status()
            intent = read_intent(parse_json(response.content))
        except (httpx.TimeoutException, TimeoutError):
            log.warning("the Rasa model did not answer within %g s; the question answerer takes the message",
                        self.timeout)
        except httpx.HTTPStatusError as exc:
            log.warning("the Rasa model answered %d; the question answerer takes the message",
                        exc.response.status_code)
        except httpx.HTTPError as exc:
            log.warning("the Rasa model could not be asked (%s); the question answerer takes the message",
                        type(exc).__name__)
        except RequestRejected:
            log.warning("the Rasa model's answer is not JSON we read; the question answerer takes the message")
        else:
            if intent is None:
                log.warning("the Rasa model's answer names no intent with a confidence from 0 to 1; the question "
                            "answerer takes the message")
            return intent
        return None

    def command_for(self, intent: Intent | None) -> str | None:
        """The command line an intent stands for, if it is mapped and Rasa is sure enough."""
        if intent is None or intent.confidence < self.threshold:
            return None
        return self.intents.get(intent.name)

    async def understand(self, turn: Turn) -> None:
        """The routing's fallback: a mapped command, or the question answerer."""
        if turn.message.channel == "rasa":  # the assistant's own model read it already
            await ask.answer_question(turn)
            return
        text, parse = turn.text, self.parse
        intent: Intent | None = await turn.call_outside_transaction("rasa-nlu", lambda: parse(text))
        line = self.command_for(intent)
        parsed = routing.parse_command(line) if line else None
        command = routing.find_command(parsed[0]) if parsed else None
        if parsed is None or command is None:
            await ask.answer_question(turn)
            return
        log.info("the Rasa model read a command", extra={"intent": intent.name if intent else None,
                                                           "command": command.name})
        await command.handler(turn, parsed[1])


def read_intent(parsed: object) -> Intent | None:
    """The intent of a `/model/parse` answer: `{"intent": {"name": "ask_next", "confidence": 0.93}, …}`; None for
    an answer that names none, or gives it no confidence from 0 to 1 (NaN, 7, true and "0.9" are none)."""
    intent = parsed.get("intent") if isinstance(parsed, dict) else None
    if not isinstance(intent, dict):
        return None
    name, confidence = intent.get("name"), intent.get("confidence")
    if not isinstance(name, str) or not isinstance(confidence, int | float) or isinstance(confidence, bool):
        return None
    return Intent(name, float(confidence)) if 0 <= confidence <= 1 else None  # (NaN is within no range)


def read_intents(path: Path) -> dict[str, str]:
    """RASA_NLU_INTENTS: intent → command line, each command checked; ConfigError says what is wrong and where."""
    where = f"RASA_NLU_INTENTS: {path}"
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror}); give a YAML file of intent: /command") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not YAML: {exc}".splitlines()[0]) from None
    if not isinstance(loaded, dict) or not loaded:
        raise ConfigError(f"{where} should map intents to commands, e.g. `ask_next: /next`")
    intents: dict[str, str] = {}
    for intent, line in loaded.items():
        parsed = routing.parse_command(str(line)) if isinstance(line, str) and line.startswith("/") else None
        if parsed is None:
            raise ConfigError(f"{where}: {intent}: {line!r} is not a command; write it as /next, /pause 7, …")
        if routing.find_command(parsed[0]) is None:
            known = [command.name for command in _commands()]
            close = difflib.get_close_matches(parsed[0], known, n=1)
            hint = f" (did you mean /{close[0]}?)" if close else ""
            raise ConfigError(f"{where}: {intent}: there is no command /{parsed[0]}{hint}")
        intents[str(intent)] = str(line)
    return intents


def _commands() -> tuple[routing.Command, ...]:
    import dialogs

    return dialogs.COMMANDS


def responder(settings: Settings) -> routing.Responder:
    """How this bot answers a message: the routing, with the Rasa model before the answerer when RASA_NLU_URL is
    set."""
    if not settings.rasa_nlu_url:
        return routing.respond
    nlu = RasaNlu(
        url=settings.rasa_nlu_url,
        token=settings.rasa_token,
        threshold=settings.rasa_nlu_threshold,
        intents=read_intents(settings.rasa_nlu_intents) if settings.rasa_nlu_intents else INTENTS,
        timeout=settings.rasa_nlu_timeout_seconds,
    )
    return functools.partial(routing.respond, fallback=nlu.understand)
