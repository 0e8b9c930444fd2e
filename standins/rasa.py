"""A local stand-in of a Rasa server (Rasa 3's HTTP API, `rasa run --enable-api`), the side that calls an action
server and that Lessonbot calls.

What it plays:
- **The conversation and the action calls.** It keeps a tracker per sender, as Rasa does, out of rasa-sdk's own
  event types: `say(sender, text, intent=…, entities=…, action=…)` records the person's message (`UserUttered`),
  calls the action server's `POST /webhook` with rasa-sdk's webhook JSON (`next_action`, `sender_id`, `tracker`,
  `domain`, `version`), and applies what comes back: `SlotSet` events to the slots, each response as `BotUttered`,
  the action as `ActionExecuted`. A 449 is answered by calling again with the domain, as Rasa does. `press(sender,
  button)` sends a button's payload as Rasa reads one (`/intent{"entity": "value"}`, no model involved).
- **`POST /conversations/{id}/trigger_intent`**: the intent goes into that tracker with its entities, the action
  `rules` name for it is called, and what it says is kept in `delivered[sender]` (what the person's chat window would
  show), and returned as Rasa returns it.
- **`POST /model/parse`**: `parse(text)` (set by the tests) gives the intent and its confidence; `parse_body`, when
  set, is answered instead, as it is (a server or a proxy in front of it answering what Rasa would not).

Both endpoints ask for `?token=` when `token` is set, and can be told to fail (`failures`: statuses to answer with,
one per request, before answering properly) or to be slow (`delay`, seconds; `trickle`, seconds between the pieces of
/model/parse's answer, sent a few bytes at a time after its headers, as a server or proxy under load).
`answer_delay`: trigger_intent acts at once (the reply is said) but answers that many seconds later, as a Rasa server
whose channel or action server is slow to finish.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from rasa_sdk import __version__ as rasa_sdk_version
from rasa_sdk.events import ActionExecuted, BotUttered, SlotSet, UserUttered
from rasa_sdk.interfaces import Tracker

from standins.serving import serve_locally

_BUTTON_PAYLOAD = re.compile(r"^/(?P<intent>[A-Za-z0-9_.-]+)(?P<entities>\{.*\})?$", re.DOTALL)


def no_intent(text: str) -> tuple[str, float]:
    return "nlu_fallback", 0.0


@dataclass
class Conversation:
    """One sender's tracker, as Rasa keeps it."""

    sender_id: str
    slots: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    latest_message: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """The tracker as Rasa sends it to an action server (rasa-sdk's own `Tracker.current_state`)."""
        latest_action = next(
            (event.get("name") for event in reversed(self.events) if event.get("event") == "action"), None
        )
        return Tracker(
            self.sender_id, dict(self.slots), self.latest_message, list(self.events), False, None, {},
            latest_action,
        ).current_state()

    def heard(self, text: str, intent: str, entities: dict[str, Any], confidence: float = 1.0) -> None:
        parse_data = {
            "text": text,
            "intent": {"name": intent, "confidence": confidence},
            "entities": [{"entity": name, "value": value} for name, value in entities.items()],
            "message_id": uuid.uuid4().hex,
            "metadata": {},
        }
        self.latest_message = parse_data
        event = UserUttered(text, parse_data=parse_data, timestamp=time.time())
        event["message_id"] = parse_data["message_id"]
        self.events.append(event)
        for name, value in entities.items():  # Rasa fills a slot from the entity of the same name
            if name in self.slots:
                self.slots[name] = value
                self.events.append(SlotSet(name, value, timestamp=time.time()))


@dataclass
class ActionRun:
    """What one action call came to: the HTTP status, the bot's messages and the events."""

    status: int
    responses: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @property
    def texts(self) -> list[str]:
        return [response.get("text") or "" for response in self.responses]


class RasaServerStandIn:
    def __init__(
        self,
        *,
        action_endpoint: str,
        domain: dict[str, Any],
        token: str = "",
        action_token: str = "",
        rules: dict[str, str] | None = None,
    ) -> None:
        """`action_endpoint`: the action server's webhook URL; `domain`: the assistant's domain (its slots come
        from there); `token`: asked of callers (`--auth-token`); `action_token`: sent on every action call."""
        self.action_endpoint = action_endpoint
        self.domain = domain
        self.token = token
        self.action_token = action_token
        self.rules = rules if rules is not None else {"EXTERNAL_lessonbot_message": "action_lessonbot_deliver"}
        self.parse: Callable[[str], tuple[str, float]] = no_intent
        self.parse_body: bytes | None = None  # answered to /model/parse instead of `parse`'s intent, when set
        self.conversations: dict[str, Conversation] = {}
        self.delivered: dict[str, list[dict[str, Any]]] = {}
        self.triggered: list[dict[str, Any]] = []  # every trigger_intent request: {"sender", "params", "body"}
        self.parsed: list[str] = []  # every text /model/parse was asked about
        self.action_calls: list[dict[str, Any]] = []  # every action call made, as sent
        self.failures: list[int] = []
        self.delay = 0.0
        self.answer_delay = 0.0
        self.trickle = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._domain_sent = False

    async def __aenter__(self) -> RasaServerStandIn:
        app = web.Application()
        app.router.add_post("/conversations/{sender}/trigger_intent", self._trigger_intent)
        app.router.add_post("/model/parse", self._parse)
        self._runner, self.port = await serve_locally(app)
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conversation(self, sender_id: str) -> Conversation:
        if sender_id not in self.conversations:
            slots = {name: spec.get("initial_value") for name, spec in (self.domain.get("slots") or {}).items()}
            self.conversations[sender_id] = Conversation(sender_id, slots)
        return self.conversations[sender_id]

    # the person and the assistant --------------------------------------------------------------------------------

    async def say(
        self, sender_id: str, text: str, *, action: str, intent: str = "chitchat",
        entities: dict[str, Any] | None = None,
    ) -> ActionRun:
        """The person says `text` (read as `intent`); the assistant runs `action`."""
        self.conversation(sender_id).heard(text, intent, entities or {})
        return await self.run_action(sender_id, action)

    async def press(self, sender_id: str, button: dict[str, Any], *, action: str) -> ActionRun:
        """The person presses a button: Rasa reads its payload as an intent with its entities."""
        match = _BUTTON_PAYLOAD.match(button["payload"])
        assert match, f"not a payload Rasa reads without its model: {button['payload']!r}"
        entities = json.loads(match["entities"]) if match["entities"] else {}
        self.conversation(sender_id).heard(button["payload"], match["intent"], entities)
        return await self.run_action(sender_id, action)

    async def run_action(self, sender_id: str, action: str, *, again: bool = False) -> ActionRun:
        """Call the action server for `action` as Rasa does, and apply its answer to the tracker. `again`: repeat
        the last call exactly (a retry), changing nothing before it."""
        conversation = self.conversation(sender_id)
        call = self.action_calls[-1] if again else self._action_call(conversation, action)
        status, answer = await self._post_action(call)
        if status == 449:  # the action server has no domain yet: send it
            call = {**call, "domain": self.domain}
            status, answer = await self._post_action(call)
        self.action_calls.append(call)
        if status != 200:
            return ActionRun(status, [], [])
        responses, events = answer.get("responses", []), answer.get("events", [])
        if not again:
            self._apply(conversation, action, responses, events)
        return ActionRun(status, responses, events)

    def _action_call(self, conversation: Conversation, action: str) -> dict[str, Any]:
        call: dict[str, Any] = {
            "next_action": action,
            "sender_id": conversation.sender_id,
            "tracker": conversation.state(),
            "version": rasa_sdk_version,
            "domain_digest": "stand-in-domain",
        }
        if not self._domain_sent:
            call["domain"] = self.domain
            self._domain_sent = True
        return call

    async def _post_action(self, call: dict[str, Any]) -> tuple[int, Any]:
        assert self._http is not None
        params = {"token": self.action_token} if self.action_token else {}
        async with self._http.post(self.action_endpoint, json=call, params=params) as response:
            return response.status, await response.json(content_type=None)

    def _apply(
        self, conversation: Conversation, action: str, responses: list[dict[str, Any]], events: list[dict[str, Any]]
    ) -> None:
        conversation.events.append(ActionExecuted(action, timestamp=time.time()))
        for event in events:
            conversation.events.append({**event, "timestamp": event.get("timestamp") or time.time()})
            if event.get("event") == "slot":
                conversation.slots[event["name"]] = event.get("value")
        for response in responses:
            data = {key: value for key, value in response.items() if key != "text"}
            conversation.events.append(BotUttered(response.get("text"), data=data, timestamp=time.time()))
        conversation.events.append(ActionExecuted("action_listen", timestamp=time.time()))

    # Rasa's HTTP API ----------------------------------------------------------------------------------------------

    async def _refusal(self, request: web.Request) -> web.Response | None:
        if self.token and request.query.get("token") != self.token:
            return web.json_response({"status": "failure", "reason": "NotAuthenticated", "code": 401}, status=401)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            status = self.failures.pop(0)
            return web.json_response({"status": "failure", "reason": "scripted", "code": status}, status=status)
        return None

    async def _trigger_intent(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        body = await request.json()
        self.triggered.append({"sender": sender, "params": dict(request.query), "body": body})
        if refused := await self._refusal(request):
            return refused
        intent = body.get("name")
        action = self.rules.get(intent)
        if action is None:
            return web.json_response(
                {"status": "failure", "reason": "NotFound", "message": f"The intent {intent} does not exist in the "
                 "domain.", "code": 404}, status=404,
            )
        entities = body.get("entities") or {}
        self.conversation(sender).heard(f"EXTERNAL: {intent}", intent, entities)
        run = await self.run_action(sender, action)
        self.delivered.setdefault(sender, []).extend(run.responses)
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        return web.json_response({"tracker": self.conversation(sender).state(), "messages": run.responses})

    async def _parse(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.parsed.append(body.get("text", ""))
        if refused := await self._refusal(request):
            return refused
        if self.parse_body is not None:
            return web.Response(body=self.parse_body, content_type="application/json")
        intent, confidence = self.parse(body.get("text", ""))
        answer = {
            "text": body.get("text", ""),
            "intent": {"name": intent, "confidence": confidence},
            "entities": [],
            "intent_ranking": [{"name": intent, "confidence": confidence}],
        }
        if not self.trickle:
            return web.json_response(answer)
        return await self._trickled(request, json.dumps(answer).encode())

    async def _trickled(self, request: web.Request, body: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        await response.prepare(request)
        for start in range(0, len(body), 8):
            await response.write(body[start:start + 8])
            await asyncio.sleep(self.trickle)
        await response.write_eof()
        return response
