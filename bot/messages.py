"""The core's message types: what every channel parses into and renders from.

A dialog says "ask this with these three choices"; it never knows whether Telegram makes an inline keyboard of it,
Slack Block Kit buttons or WhatsApp numbered options. Replies are stored in the outbox as JSON, so every reply type
round-trips through `to_payload` / `reply_from_payload`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Choice:
    """One button: `label` is shown, `value` comes back when it is pressed."""

    label: str
    value: str


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A verified message from a person, in the core's terms.

    `platform_id` is the platform's own id for this delivery (Telegram update_id, Twilio MessageSid, Slack event_id):
    a second delivery with the same id is acknowledged and ignored. `chat_id` is where replies go; `sender_id` is who
    spoke (they differ in groups). `meta` holds platform extras (media, a location), `private` where the chat id
    alone does not tell a direct message (Slack), and two marks the core acts on: `subscription` ("stop" / "start",
    an opt-out keyword) and `numbered_choices` (see dialogs.choices).
    """

    channel: str
    platform_id: str
    chat_id: str
    sender_id: str
    text: str = ""
    choice: str | None = None
    sender_name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def private(self) -> bool:
        """Whether only the bot and this person are in the chat: a chat whose id is the person's own (Telegram,
        WhatsApp, the web chat), or one the channel marked `meta["private"]` (a Slack direct message). In a group
        the bot shows nothing that belongs to one member alone (a link code, their data)."""
        return self.chat_id == self.sender_id or bool(self.meta.get("private"))

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"text": self.text}
        if self.choice is not None:
            payload["choice"] = self.choice
        if self.sender_name:
            payload["sender_name"] = self.sender_name
        if self.meta:
            payload["meta"] = self.meta
        return payload


@dataclass(frozen=True, slots=True)
class Text:
    """A text reply, with optional choices rendered as buttons (or numbered options)."""

    text: str
    choices: tuple[Choice, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"kind": "text", "text": self.text}
        if self.choices:
            payload["choices"] = [{"label": c.label, "value": c.value} for c in self.choices]
        return payload


@dataclass(frozen=True, slots=True)
class Document:
    """A file sent as a document (a certificate, a handout): `path` on disk or `url`."""

    filename: str
    caption: str = ""
    path: str | None = None
    url: str | None = None
    media_type: str = "application/octet-stream"

    def to_payload(self) -> dict[str, Any]:
        return {
            "kind": "document",
            "filename": self.filename,
            "caption": self.caption,
            "path": self.path,
            "url": self.url,
            "media_type": self.media_type,
        }


Reply = Text | Document


def reply_from_payload(payload: dict[str, Any]) -> Reply:
    kind = payload.get("kind")
    if kind == "text":
        choices = tuple(Choice(c["label"], c["value"]) for c in payload.get("choices", ()))
        return Text(payload["text"], choices)
    if kind == "document":
        return Document(
            filename=payload["filename"],
            caption=payload.get("caption", ""),
            path=payload.get("path"),
            url=payload.get("url"),
            media_type=payload.get("media_type", "application/octet-stream"),
        )
    raise ValueError(f"unknown reply kind {kind!r}")
