"""Lessonbot's actions for a Rasa assistant: rasa-sdk's own `ActionExecutor` and `Action`s, served from our
Starlette app (`lessonbot rasa-actions`) instead of rasa-sdk's Sanic server, on the same database and core as
`lessonbot serve`.

Rasa calls `POST /webhook` with the action to run and the conversation's tracker (rasa-sdk's webhook JSON) and
waits for the answer: `{"events": [...], "responses": [...]}`. Each of our actions is one message from
`rasa:<sender_id>` (channels/rasa/tracker.py), recorded and processed through the pipeline like any other, so the
same dialogs, invariants and order hold: the message's platform id is the call's id, so a call Rasa makes again is
recorded once; its replies are committed with the state change that caused them, held for this call
(`in_response_within`), taken by it (`storage.outbox.answer_of`) and returned as Rasa's bot messages with buttons.
After each call the slots channels/rasa/tracker.py names are set to the learner's facts, those the domain declares.

A failure is a polite message and `lessonbot_error` set, never a 500: a turn that failed returns the pipeline's
apology; an answer not ready within RASA_ACTION_TIMEOUT_SECONDS says it is on its way, and the replies go out
through the Rasa server's trigger_intent when they come (with RASA_URL set).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import zlib
from collections.abc import Sequence
from typing import Any, ClassVar

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection, ActionMissingDomainException, ActionNotFoundException
from rasa_sdk.utils import check_version_compatibility
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.channel import ChannelHost, RequestRejected
from bot.config import Settings
from bot.core import Lessonbot
from bot.messages import reply_from_payload
from channels.http import PRIVATE, read_limited_body, sent_document
from channels.rasa import tracker as said
from channels.rasa.channel import MESSAGE_ENTITY, MessageSeal
from channels.rasa.files import FileLinks, document_link
from channels.rasa.render import bot_message
from channels.webhook import parse_json
from dialogs import apologies, flow
from dialogs.learner import is_set_up
from storage.db import Database
from storage.learners import ChatLearner, learner_of_chat
from storage.outbox import Answer, answer_of

log = logging.getLogger(__name__)

MAX_ACTION_CALL_BYTES = 8 * 1024 * 1024  # a tracker carries the whole conversation's events
HOLD_MARGIN_SECONDS = 1.0  # replies stay held a little longer than the call waits, for its last look to take them
LOOK_AGAIN_SECONDS = 0.1


class ActionDesk:
    """Runs one action call through the pipeline and turns what came of it into Rasa's answer."""

    def __init__(self, lessonbot: Lessonbot, *, wait_seconds: float, files: FileLinks | None = None) -> None:
        """`files`: the addresses of documents (a certificate) for these users; none: a document is its caption."""
        self.lessonbot = lessonbot
        self.wait_seconds = wait_seconds
        self.files = files

    async def perform(
        self, action: str, ask: said.Ask, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        state = tracker.current_state()
        platform_id = said.call_id(action, state)
        message = said.message(
            tracker.sender_id, platform_id, ask, within=self.wait_seconds + HOLD_MARGIN_SECONDS
        )
        try:
            recorded = await self.lessonbot.receive(message)
            answer = await self._answer(platform_id, recorded.conversation_id)
        except RequestRejected as exc:  # a sender id no column holds
            log.warning("a Rasa action call was refused: %s", exc.message)
            dispatcher.utter_message(text=apologies.failed(None))
            return [SlotSet(said.ERROR_SLOT, "refused")]
        if answer is None:
            log.warning("a Rasa action's answer was not ready in time", extra={"action": action})
            dispatcher.utter_message(text=apologies.late(await self.language(tracker.sender_id)))
            return [SlotSet(said.ERROR_SLOT, "timeout")]
        for outbox_id, payload in answer.replies:
            link = document_link(self.files, tracker.sender_id, outbox_id)
            shown = bot_message(reply_from_payload(payload), link=link)
            if shown is not None:
                dispatcher.utter_message(**shown)
        return await self.slots(tracker.sender_id, domain, failed=answer.failed)

    async def _answer(self, platform_id: str, conversation_id: int) -> Answer | None:
        """The call's answer once its message is processed, taken for this response; None if that takes longer than
        the wait. A turn this process commits wakes the look at once; one another process commits (it held the
        conversation) is found by looking again every LOOK_AGAIN_SECONDS."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            with self.lessonbot.watching_turns(conversation_id) as turn_committed:
                async with self.lessonbot.db.transaction() as session:
                    answer = await answer_of(session, said.CHANNEL, platform_id)
                left = deadline - time.monotonic()
                if answer is not None or left <= 0:
                    return answer
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(turn_committed.wait(), min(LOOK_AGAIN_SECONDS, left))

    async def learner(self, sender_id: str) -> ChatLearner | None:
        """What is known of the learner `rasa:<sender_id>`."""
        async with self.lessonbot.db.sessions() as session:
            return await learner_of_chat(session, said.CHANNEL, sender_id)

    async def language(self, sender_id: str) -> str | None:
        """The learner's language for an apology, when it can be read: an apology must not fail in turn."""
        try:
            found = await self.learner(sender_id)
        except Exception:
            log.exception("the learner's language could not be read for an apology")
            return None
        return found.user.locale if found else None

    async def slots(self, sender_id: str, domain: dict[str, Any], *, failed: bool = False) -> list[EventType]:
        """The learner's facts as slot events, for the slots the domain declares (all of them without a domain)."""
        found = await self.learner(sender_id)
        values = learner_slots(found)
        values[said.ERROR_SLOT] = "failed" if failed else None
        declared = (domain or {}).get("slots")
        return [SlotSet(name, value) for name, value in values.items() if not declared or name in declared]


def learner_slots(found: ChatLearner | None) -> dict[str, Any]:
    """The slots our actions set, from what is known of the learner in the chat."""
    learner = found.learner if found else None
    flows = flow.stack(found.state) if found else []  # (the learner's own chat: every flow there is theirs)
    waiting = flows[-1] if flows else None
    return {
        said.SET_UP_SLOT: bool(learner and is_set_up(learner)),
        said.AWAITING_SLOT: waiting["name"] if waiting else None,
        said.COURSE_SLOT: found.course_slug if found else None,
        said.TIMEZONE_SLOT: found.user.timezone if found else None,
        said.LESSON_TIME_SLOT: f"{learner.lesson_time:%H:%M}" if learner and learner.lesson_time else None,
    }


# The actions ---------------------------------------------------------------------------------------------------------


class LessonbotAction(Action):
    """One of our actions: what it says on the person's behalf (`ask`), run through the desk."""

    action: ClassVar[str]

    def __init__(self, desk: ActionDesk) -> None:
        self.desk = desk

    def name(self) -> str:
        return self.action

    async def ask(self, tracker: Tracker) -> said.Ask:
        raise NotImplementedError

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            return await self.desk.perform(self.action, await self.ask(tracker), dispatcher, tracker, domain)
        except Exception:
            log.exception("a Rasa action failed", extra={"action": self.action})
            dispatcher.utter_message(text=apologies.failed(await self.desk.language(tracker.sender_id)))
            return [SlotSet(said.ERROR_SLOT, "failed")]


class NextAction(LessonbotAction):
    """The next part of the lesson, its quiz, or the next lesson (/next)."""

    action = "action_lessonbot_next"

    async def ask(self, tracker: Tracker) -> said.Ask:
        return said.Ask(text="/next")


class AnswerAction(LessonbotAction):
    """What the person just said or pressed, for the dialog waiting for it: a quiz answer (graded, spaced review
    updated, feedback), an onboarding answer, a button of ours."""

    action = "action_lessonbot_answer"

    async def ask(self, tracker: Tracker) -> said.Ask:
        return said.answer(tracker.latest_message)


class AskAction(LessonbotAction):
    """The person's message as a question for the course material: an answer with its sources."""

    action = "action_lessonbot_ask"

    async def ask(self, tracker: Tracker) -> said.Ask:
        return said.Ask(text=said.typed_text(tracker.latest_message), question=True)


class ProgressAction(LessonbotAction):
    """Lessons done, quiz accuracy, streak, points (/progress)."""

    action = "action_lessonbot_progress"

    async def ask(self, tracker: Tracker) -> said.Ask:
        return said.Ask(text="/progress")


class EnrollAction(LessonbotAction):
    """The course in the `lessonbot_course` slot becomes the learner's (the courses to pick from without one)."""

    action = "action_lessonbot_enroll"

    async def ask(self, tracker: Tracker) -> said.Ask:
        found = await self.desk.learner(tracker.sender_id)
        return said.enroll(tracker.slots, tracker.latest_message, found.course_slug if found else None)


class SettingsAction(LessonbotAction):
    """The time zone or lesson time the person named (their message's entities, else a slot other than theirs), or
    the settings menu."""

    action = "action_lessonbot_settings"

    async def ask(self, tracker: Tracker) -> said.Ask:
        found = await self.desk.learner(tracker.sender_id)
        return said.settings(tracker.slots, tracker.latest_message, learner_slots(found))


class DeliverAction(Action):
    """Says a reply Lessonbot sent on its own (a lesson at the learner's hour, a nudge) through the Rasa server's
    trigger_intent: the reply is the triggered intent's `lessonbot_message` entity (channels/rasa/channel.py)."""

    def __init__(self, seal: MessageSeal, desk: ActionDesk) -> None:
        self.seal = seal
        self.desk = desk

    def name(self) -> str:
        return "action_lessonbot_deliver"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        # only a reply Lessonbot sealed: a person may type the intent with an entity of their own
        carried = next(tracker.get_latest_entity_values(MESSAGE_ENTITY), None)
        message = self.seal.opened(carried)
        if message is None or not isinstance(message.get("text"), str):
            log.warning("action_lessonbot_deliver was called without a message of ours")
            return []
        if said_before(tracker, carried):
            log.info("action_lessonbot_deliver: this reply was said already (its send was tried again)")
            return []
        shown = {key: message[key] for key in ("text", "buttons", "attachment") if key in message}
        dispatcher.utter_message(**shown)
        # what the learner is at now (a late answer moved them on: the assistant routes their next words by it)
        return await self.desk.slots(tracker.sender_id, domain)


def said_before(tracker: Tracker, carried: object) -> bool:
    """Whether the assistant said this sealed reply already, in answer to an earlier trigger_intent of this
    conversation: Rasa acted on a send but answered after the channel's timeout, and the dispatcher sent it again
    (a sealed reply carries its outbox id: the same reply is the same entity at every try)."""
    events = tracker.events
    current = max((n for n, event in enumerate(events) if event.get("event") == "user"), default=0)
    carrying = False
    for event in events[:current]:
        if event.get("event") == "user":
            entities = (event.get("parse_data") or {}).get("entities") or ()
            carrying = any(entity.get("entity") == MESSAGE_ENTITY and entity.get("value") == carried
                           for entity in entities)
        elif event.get("event") == "bot" and carrying:
            return True
    return False


ACTIONS: tuple[type[LessonbotAction], ...] = (
    NextAction, AnswerAction, AskAction, ProgressAction, EnrollAction, SettingsAction,
)


def action_executor(desk: ActionDesk) -> ActionExecutor:
    executor = ActionExecutor()
    for action in ACTIONS:
        executor.register_action(action(desk))
    executor.register_action(DeliverAction(rasa_message_seal(desk.lessonbot.settings), desk))
    return executor


# The HTTP side: what rasa-sdk's own server answers, on Starlette ---------------------------------------------------


def _inflated(body: bytes) -> bytes:
    """A deflated action call, held to the same limit once inflated (a few hundred kilobytes may inflate to
    gigabytes)."""
    inflater = zlib.decompressobj()
    inflated = inflater.decompress(body, MAX_ACTION_CALL_BYTES + 1)
    if len(inflated) > MAX_ACTION_CALL_BYTES or inflater.unconsumed_tail:
        raise RequestRejected(413, f"The action call is over {MAX_ACTION_CALL_BYTES:,} bytes once inflated.")
    return inflated


def action_routes(executor: ActionExecutor, *, token: str = "") -> list[Route]:
    """`POST /webhook` (an action call), `GET /actions` (the actions served), `GET /health`, answered as rasa-sdk's
    own server answers them. With `token`, an action call must carry it (`?token=`, as Rasa's endpoints.yml sends
    it, or `Authorization: Bearer`)."""

    async def webhook(request: Request) -> Response:
        if token and not _carries(request, token):
            return JSONResponse({"error": "The action call did not carry the right token."}, status_code=401)
        try:
            body = await read_limited_body(request, MAX_ACTION_CALL_BYTES)
            if request.headers.get("content-encoding") == "deflate":
                body = _inflated(body)
            action_call = parse_json(body)  # (the one parse of a platform's JSON: its nesting bounded first)
        except RequestRejected as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)
        except (ValueError, zlib.error):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        if not isinstance(action_call, dict) or not isinstance(action_call.get("tracker", {}), dict):
            return JSONResponse({"error": "Invalid body request"}, status_code=400)
        if isinstance(action_call.get("version"), str):  # (rasa-sdk's check splits it; anything else is no version)
            check_version_compatibility(action_call["version"])
        try:
            result = await executor.run(action_call)
        except ActionExecutionRejection as exc:
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=400)
        except ActionNotFoundException as exc:
            log.error("Rasa asked for an action we do not serve: %s", exc.action_name)
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=404)
        except ActionMissingDomainException as exc:  # Rasa sends the domain again on 449
            return JSONResponse({"error": exc.message, "action_name": exc.action_name}, status_code=449)
        except Exception:  # a tracker we cannot read: still a polite answer
            log.exception("a Rasa action call could not be run")
            return JSONResponse({"events": [SlotSet(said.ERROR_SLOT, "failed")],
                                 "responses": [{"text": apologies.failed(None)}]})
        return JSONResponse(result.model_dump() if result else None)

    async def actions(request: Request) -> Response:
        return JSONResponse([name.model_dump() for name in executor.list_actions()])

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return [
        Route("/webhook", webhook, methods=["POST"]),
        Route("/actions", actions, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]


def file_routes(files: FileLinks, host: ChannelHost) -> list[Route]:
    """`GET /files/CHAT/REPLY/SIGNATURE`: the file of a document reply sent to a Rasa user (channels/rasa/files.py),
    for that chat's signed address only; 404 for anything else."""

    async def document(request: Request) -> Response:
        chat_id, signature = request.path_params["chat"], request.path_params["signature"]
        outbox_id: int = request.path_params["reply"]
        if not files.matches(chat_id, outbox_id, signature):
            return Response("No such file here.", status_code=404, media_type="text/plain", headers=PRIVATE)
        return await sent_document(host, said.CHANNEL, chat_id, outbox_id)

    return [Route("/files/{chat:path}/{reply:int}/{signature}", document)]  # a sender id may hold a "/"


def _carries(request: Request, token: str) -> bool:
    given = request.query_params.get("token") or request.headers.get("authorization", "").removeprefix("Bearer ")
    return hmac.compare_digest(given.encode(), token.encode())


def rasa_message_seal(settings: Settings) -> MessageSeal:
    """The seal of what Lessonbot sends through trigger_intent, from SECRET_KEY (the sender's and the action
    server's alike)."""
    return MessageSeal(settings.resolved_secret_key)


def rasa_file_links(settings: Settings) -> FileLinks | None:
    """The addresses of documents for Rasa users, when RASA_ACTIONS_PUBLIC_URL says where the action server is."""
    if not settings.rasa_actions_public_url:
        return None
    return FileLinks(settings.resolved_secret_key, settings.rasa_actions_public_url)


def create_action_app(
    settings: Settings, *, channels: Sequence[Any] | None = None, dispatch: bool = True
) -> Starlette:
    """The action server: a Lessonbot that processes what the actions record (and, when elected, dispatches and
    keeps the clock, as `lessonbot serve` does; with `dispatch` False never, leaving both to a `lessonbot dispatch`
    process that has every channel), with the action routes and /healthz."""
    from bot.app import build_channels, healthz, lifespan_of
    from bot.core import attach_clock

    db = Database(settings.resolved_database_url)
    lessonbot = Lessonbot(
        settings, build_channels(settings, db) if channels is None else channels, dispatch=dispatch, elect=True, db=db,
        answers=(said.CHANNEL,),  # the action calls' messages, answered in each call's response (RASA_URL or not)
    )
    attach_clock(lessonbot)
    files = rasa_file_links(settings)
    desk = ActionDesk(lessonbot, wait_seconds=settings.rasa_action_timeout_seconds, files=files)
    routes = [*action_routes(action_executor(desk), token=settings.rasa_actions_token), Route("/healthz", healthz)]
    if files is not None:
        routes += file_routes(files, lessonbot)
    app = Starlette(routes=routes, lifespan=lifespan_of(lessonbot))
    app.state.lessonbot = lessonbot
    return app
