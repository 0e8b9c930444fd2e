"""What a Rasa action call asks of Lessonbot, as the core's message.

Each of our actions is one message from the person the tracker is about (`sender_id`, known to Lessonbot as
`rasa:<sender_id>`): `action_lessonbot_next` says /next, `action_lessonbot_answer` passes on what the person just
said or the button they pressed, and so on (bot/rasa_actions.py's ACTIONS). The message's platform id is the call's
id (`call_id`), the same whenever Rasa calls again for the same moment of the conversation, so a retried call is
recorded once and gets the same answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.messages import IN_RESPONSE_WITHIN, QUESTION, InboundMessage, InboundMeta
from channels.rasa.render import CHOICE_INTENT

CHANNEL = "rasa"

# The slots our actions read (a Rasa assistant fills them from entities or forms) …
COURSE_SLOT = "lessonbot_course"  # a course's slug or title: action_lessonbot_enroll
TIMEZONE_SLOT = "lessonbot_timezone"  # a city, a zone name or an offset: action_lessonbot_settings
LESSON_TIME_SLOT = "lessonbot_lesson_time"  # 08:00, 7pm …: action_lessonbot_settings
# … and the ones they set after every call (besides the course, the zone and the lesson time, as they now are).
SET_UP_SLOT = "lessonbot_set_up"  # bool: the learner finished onboarding
AWAITING_SLOT = "lessonbot_awaiting"  # the dialog waiting for the person's answer (onboarding, quiz …), or None
ERROR_SLOT = "lessonbot_error"  # None, or why the call could not be answered: "failed", "timeout"


@dataclass(frozen=True, slots=True)
class Ask:
    """What one action says on the person's behalf: typed `text`, a pressed `choice`, and `meta` marks."""

    text: str = ""
    choice: str | None = None
    question: bool = False  # a question for the course material, whatever else it might look like


def call_id(action: str, tracker: Mapping[str, Any]) -> str:
    """The id of this call: the same for the same action at the same moment of the same conversation (Rasa
    calling again), another one as soon as anything has happened since. 64 hex digits."""
    events = tracker.get("events") or []
    last = events[-1] if events else {}
    latest = tracker.get("latest_message") or {}
    moment = {
        "sender": tracker.get("sender_id"),
        "action": action,
        "events": len(events),
        "last_event": [last.get("event"), last.get("timestamp")],
        "message": latest.get("message_id"),
    }
    return hashlib.sha256(json.dumps(moment, sort_keys=True, default=str).encode()).hexdigest()


def pressed_choice(latest_message: Mapping[str, Any]) -> str | None:
    """The value of a button of ours the person pressed (the entity of the choice intent), if they pressed one."""
    for entity in latest_message.get("entities") or ():
        if isinstance(entity, Mapping) and entity.get("entity") == CHOICE_INTENT:
            value = entity.get("value")
            return value if isinstance(value, str) else None
    return None


def typed_text(latest_message: Mapping[str, Any]) -> str:
    text = latest_message.get("text")
    return text if isinstance(text, str) else ""


def slot_text(slots: Mapping[str, Any], name: str) -> str:
    value = slots.get(name)
    return value.strip() if isinstance(value, str) else ""


def answer(latest_message: Mapping[str, Any]) -> Ask:
    """What the person just said or pressed, for the dialog waiting for it."""
    choice = pressed_choice(latest_message)
    if choice is not None:
        return Ask(choice=choice)
    return Ask(text=typed_text(latest_message))


def entity_text(latest_message: Mapping[str, Any], name: str) -> str:
    for entity in latest_message.get("entities") or ():
        if isinstance(entity, Mapping) and entity.get("entity") == name and isinstance(entity.get("value"), str):
            return str(entity["value"]).strip()
    return ""


def enroll(slots: Mapping[str, Any], latest_message: Mapping[str, Any], current: str | None) -> Ask:
    """The course the person named (the entity of their message, else the course slot), as /settings course COURSE.
    The slot also holds the course they are in (our actions set it): naming no other one gets the courses to pick
    from."""
    course = entity_text(latest_message, COURSE_SLOT) or slot_text(slots, COURSE_SLOT)
    if current is not None and course == current:
        course = ""
    return Ask(text=f"/settings course {course}".strip())


_SETTINGS = ((TIMEZONE_SLOT, "zone"), (LESSON_TIME_SLOT, "time"))  # the zone first: its local time is confirmed


def settings(slots: Mapping[str, Any], latest_message: Mapping[str, Any], current: Mapping[str, Any]) -> Ask:
    """The time zone or the lesson time the person named: the entities of their message, else a slot that differs
    from what the learner has (`current`: our actions set the slots to it after every call); neither: the menu."""
    for slot, setting in _SETTINGS:
        if value := entity_text(latest_message, slot):
            return Ask(text=f"/settings {setting} {value}")
    for slot, setting in _SETTINGS:
        if (value := slot_text(slots, slot)) and value != current.get(slot):
            return Ask(text=f"/settings {setting} {value}")
    return Ask(text="/settings")


def message(sender_id: str, platform_id: str, ask: Ask, *, within: float) -> InboundMessage:
    """The message an action call stands for. `within`: how long the action waits for its replies (they are held
    for it that long; see bot.pipeline)."""
    meta: InboundMeta = {IN_RESPONSE_WITHIN: within}
    if ask.question:
        meta[QUESTION] = True
    return InboundMessage(
        channel=CHANNEL,
        platform_id=platform_id,
        chat_id=sender_id,
        sender_id=sender_id,
        text=ask.text,
        choice=ask.choice,
        meta=meta,
    )
