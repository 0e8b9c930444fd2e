"""The core's message types: what every channel parses into and renders from.

A dialog says "ask this with these three choices"; it never knows whether Telegram makes an inline keyboard of it,
Slack Block Kit buttons or WhatsApp numbered options. Replies are stored in the outbox as JSON, so every reply type
round-trips through `to_payload` / `reply_from_payload`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypedDict

# The characters the light Markdown of a Text gives a meaning to: anywhere, those of emphasis, code and links, the
# backslash itself, and ~ (WhatsApp and Slack read it as strikethrough); at the start of a line, the marks of a
# heading, a bullet, a quote and a numbered item. A backslash before any of them (MARKDOWN_ESCAPES) stands for the
# character itself, as in Markdown.
_ANYWHERE = "\\*_`[]~"
MARKDOWN_ESCAPES = frozenset(_ANYWHERE + "#-+>.)")
_ESCAPABLE = re.compile("[" + re.escape(_ANYWHERE) + "]")
# After any indent: a tab, a no-break or an em space indents a line for the renderers as a space does (their \s).
_LINE_MARK = re.compile(r"^([^\S\n]*)(#|[-+>]|\d+(?=[.)]))", re.MULTILINE)


# The channels Lessonbot has: the first part of every address a person is named by (telegram:12345, slack:T01/U02).
KNOWN_CHANNELS = ("console", "web", "telegram", "whatsapp", "slack", "rasa")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def address_as_named(identity: str) -> str | None:
    """`channel:id` as the channel names the person (what their messages carry, and so what a role or ADMINS must
    say), or None where no one can have it: a WhatsApp number in E.164 ("whatsapp:1 (555) 123-4567" and
    "whatsapp:0015551234567" are "whatsapp:+15551234567"); another channel's id as written."""
    channel, _, ident = identity.partition(":")
    if channel != "whatsapp":
        return identity
    number = re.sub(r"[\s().-]", "", ident)
    number = "+" + number[2:] if number.startswith("00") else number if number.startswith("+") else "+" + number
    return f"whatsapp:{number}" if _E164.fullmatch(number) else None


def literal(text: str) -> str:
    """`text` escaped for a Text's light Markdown: every platform shows it as typed, never as formatting, a link or
    a mention.

    Names, anything a person typed and anything else from outside go into a reply through this (the dialogs'
    translator does it for every value it fills in); only our own words and course text are light Markdown. The
    escape is Markdown's backslash ("\\*"), which channels/markdown.py reads back into the character itself.
    """
    escaped = _ESCAPABLE.sub(lambda match: "\\" + match[0], text)
    return _LINE_MARK.sub(_escaped_line_mark, escaped)


_ESCAPE = re.compile(r"\\([" + re.escape("".join(sorted(MARKDOWN_ESCAPES))) + "])")


def unescaped(text: str) -> str:
    """What `literal`'s escapes stand for, for text that is plain wherever it is shown (a button's label)."""
    return _ESCAPE.sub(r"\1", text)


# The lines of light Markdown: what is read line by line (a heading, a list item, a fenced code block) before a
# line's inline forms. channels/markdown.py renders them; a dialog that puts an author's line inside one of its own
# (a digest's "• 67 %: …") takes the line's text from here (`text_line`).
HEADING = re.compile(r"^#{1,6}\s+(.*)$")
BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*(\d{1,9})[.)]\s+(.*)$")
# A code fence: three or more backticks or tildes, then an info string ("python"; no backtick after backticks).
_FENCE = re.compile(r" {0,3}(?P<marker>`{3,}(?=[^`]*$)|~{3,})(?P<info>.*)")


@dataclass(frozen=True, slots=True)
class CodeBlock:
    """A fenced code block as written: its opening fence line ("```python"), its lines of code, and the fence line
    that closes it (the opening's marker when the text leaves it open: the block then runs to the end)."""

    opening: str
    code: tuple[str, ...]
    closing: str

    def written(self) -> str:
        return "\n".join((self.opening, *self.code, self.closing))


Line: TypeAlias = str | CodeBlock


def read_lines(text: str) -> list[Line]:
    """`text`'s lines, each fenced code block read as one (`CodeBlock`), every other line as it is."""
    lines = text.split("\n")
    if "```" not in text and "~~~" not in text:
        return list(lines)
    read: list[Line] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.fullmatch(lines[index])
        if opening is None:
            read.append(lines[index])
            index += 1
            continue
        end = next((at for at in range(index + 1, len(lines)) if _closes(opening["marker"], lines[at])), None)
        code = lines[index + 1 : end]
        read.append(CodeBlock(lines[index], tuple(code), opening["marker"] if end is None else lines[end]))
        index = len(lines) if end is None else end + 1
    return read


def _closes(marker: str, line: str) -> bool:
    """Whether `line` closes a code block opened with `marker`: the same character, at least as many, nothing after."""
    fence = _FENCE.fullmatch(line)
    return (
        fence is not None
        and fence["marker"][0] == marker[0]
        and len(fence["marker"]) >= len(marker)
        and not fence["info"].strip()
    )


def text_line(text: str) -> str:
    """The first line of light Markdown `text` that is text (not blank, not a fenced code block's), without the mark
    that makes it a heading or a list item: a line that may stand inside another, its inline forms (bold, a link) as
    written, whole, for the channel to render. Empty when there is none."""
    for line in read_lines(text):
        if isinstance(line, CodeBlock) or not line.strip():
            continue
        heading, item = HEADING.match(line), BULLET.match(line) or NUMBERED.match(line)
        return (heading[1] if heading else item[2] if item else line).strip()
    return ""


class Markup(str):
    """Text that is ours and already light Markdown (an address we made or were handed by a platform we pay, such as
    a checkout page): the dialogs' translator fills it into a template as it is, where any other value is escaped
    with `literal`. Never wrap what a person typed in it."""

    __slots__ = ()


def _escaped_line_mark(match: re.Match[str]) -> str:
    indent, mark = match[1], match[2]
    if mark.isdigit():  # "1." or "1)": the punctuation after the number is what makes it an item
        return f"{indent}{mark}\\"
    return f"{indent}\\{mark}"


@dataclass(frozen=True, slots=True)
class Choice:
    """One button: `label` is shown, `value` comes back when it is pressed.

    A label is plain text on every platform, so the escapes a translated label's values carry are read back here.
    """

    label: str
    value: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", unescaped(self.label))


@dataclass(frozen=True, slots=True)
class Link:
    """An address to open (a checkout page): `label` is plain text, `url` an http(s) address of ours or of a platform
    we pay. A channel with link buttons shows it as one (Telegram, Slack); the others as a link under the text
    (channels.markdown.with_links, the one place a link becomes text)."""

    label: str
    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")) or any(c.isspace() for c in self.url):
            raise ValueError(f"a link needs an http(s) address without spaces, not {self.url[:80]!r}")
        object.__setattr__(self, "label", unescaped(self.label))


class InboundMeta(TypedDict, total=False):
    """What a channel says of an inbound message beyond its words and choice (`InboundMessage.meta`).

    Stored with the message as JSON under these very keys (`InboundMessage.to_payload`, read back by bot.pipeline),
    so a key may be added but never renamed: stored messages must still read. Write and read a key through its
    constant below (`GROUP_CHAT` for "group_chat" …), never a string of your own.
    """

    # Marks the core acts on (bot.pipeline, bot.routing, dialogs.choices)
    private: bool  # only the bot and this person see the chat, where its id does not say so (Slack)
    subscription: Literal["stop", "start"]  # an opt-out / opt-in keyword typed (WhatsApp's STOP, START)
    numbered_choices: bool  # choices go out as numbered lines, so "2" picks one (WhatsApp, the terminal)
    # the platform reports, nobody wrote: heard after an opt-out, and not the person's activity (payments, a group
    # left, the bot's membership; Slack events)
    platform_report: bool
    in_response_within: float  # seconds the platform waits for the replies in its own response (Rasa; bot.pipeline)
    # the platform waits seconds for this message's answer and then gives up (Telegram's last check before charging):
    # taken up at once, past the worker's limit of conversations at once (bot.pipeline, URGENT_CONCURRENCY)
    urgent: bool
    # the platform's address for answering this one message (Slack's response_url, its Home tab; a Telegram topic)
    reply_address: str
    question: bool  # words asked as a question on purpose, whatever a button says (Slack's /ask, Rasa's ask action)
    language: str  # the language of the person's app, a first guess at theirs (Telegram)
    # the payload of the start link the person came by, where it is not in the words ("/start PAYLOAD" on Telegram):
    # the web chat's page opened as /?start=PAYLOAD (onboarding.begin reads it)
    start_link: str
    # the person joined or left a group chat (Slack channel events), or left or was removed from one (Telegram's
    # left_chat_member, recorded only for someone the bot knows)
    membership: Literal["joined", "left"]
    moved_from: str  # the chat this one continues: a Telegram group became this supergroup (a platform's report)
    # the bot may send in this chat again: its own membership changed (a platform's report: Telegram's
    # my_chat_member; other members' changes are not asked for), which lifts a refusal of the chat (`Unreachable`);
    # False: it may not any more (removed from the group, blocked), which marks the chat refused as `Unreachable` does
    may_send: bool
    # A member's private place in a group chat, and who they are there (Slack; the team's dialogs read these)
    group_chat: str  # the group chat's own chat_id, seen from a member's private place in it
    workspace: str  # the workspace (installation) the chat belongs to
    # where the app is installed for a whole organisation (an Enterprise Grid org, the installation), the org and the
    # workspace of it the request came from, "E01/T02", as the platform names them together (Slack)
    org_workspace: str
    direct_address: str  # the person's own address: what was sent there was offered in this chat too
    answer_command: str  # the command that types an answer here, where plain typing is not heard ("/lessonbot answer")
    answer_form: bool  # a button may open the platform's form for typed answers here (`ANSWER_FORM`)
    answers: str  # the question the words typed into such a form answer, as its button named it ("quiz:12")
    workspace_admin: bool  # a workspace admin or owner, or the person who installed the app (users.info)
    guest: bool  # a guest of the workspace, left out of its teams (users.info)
    bot: bool  # the member is a bot or an app, left out of its teams (users.info)
    timezone: str  # the person's time zone as their profile gives it (users.info)
    # Platform extras, kept for the record (Slack)
    event: str  # the Slack event or request type (app_mention, block_actions, command …)
    thread_ts: str  # the thread a mention was made in
    action_id: str  # the pressed button's action_id
    command: str  # the slash command typed
    surface: str  # where a button was pressed, when not in a conversation ("home": the Home tab)
    # Platform extras, kept for the record (Telegram, WhatsApp)
    # the platform's id of the message, or of the one whose button was pressed (Telegram): the same button of the
    # same message pressed again at once is a double tap (dialogs/choices.py, `pressed_again`)
    message_id: int
    replying_to: str  # the platform's id of the bot's message this one replies to (WhatsApp: swiped to reply)
    chat_type: str  # private, group or supergroup (Telegram)
    username: str  # the person's @username (Telegram)
    callback_query_id: str  # the pressed button's callback query (Telegram)
    caption: str  # the caption of a photo or file (Telegram)
    forwarded: bool  # the message was forwarded from elsewhere (Telegram)
    media: dict[str, Any] | list[dict[str, str]]  # a file: its kind and fields (Telegram), or its URLs (WhatsApp)
    location: dict[str, str]  # a shared location: latitude, longitude, address, label (WhatsApp)
    # A payment platform's fields, which the payment dialogs check against the offer
    pre_checkout: dict[str, Any]  # the last check before charging (Telegram's pre_checkout_query)
    successful_payment: dict[str, Any]  # a payment made in Stars (Telegram)
    refunded_payment: dict[str, Any]  # a payment refunded (Telegram)
    stripe_event: dict[str, Any]  # a checkout, subscription or invoice event, with its payment's id (Stripe)


# The keys of `InboundMeta`, one constant each.
PRIVATE: Final = "private"
SUBSCRIPTION: Final = "subscription"
NUMBERED_CHOICES: Final = "numbered_choices"
PLATFORM_REPORT: Final = "platform_report"
IN_RESPONSE_WITHIN: Final = "in_response_within"
URGENT: Final = "urgent"
# Also the key, in the stored payloads of the message's replies, that carries the address to the channel
# (bot.channel.Delivery), which may answer through it.
REPLY_ADDRESS: Final = "reply_address"
QUESTION: Final = "question"
LANGUAGE: Final = "language"
START_LINK: Final = "start_link"
MEMBERSHIP: Final = "membership"
MOVED_FROM: Final = "moved_from"
MAY_SEND: Final = "may_send"
GROUP_CHAT: Final = "group_chat"
WORKSPACE: Final = "workspace"
ORG_WORKSPACE: Final = "org_workspace"
DIRECT_ADDRESS: Final = "direct_address"
ANSWER_COMMAND: Final = "answer_command"
ANSWER_FORM_OFFERED: Final = "answer_form"
ANSWERS: Final = "answers"
WORKSPACE_ADMIN: Final = "workspace_admin"
GUEST: Final = "guest"
FROM_A_BOT: Final = "bot"
TIMEZONE: Final = "timezone"
EVENT: Final = "event"
THREAD_TS: Final = "thread_ts"
ACTION_ID: Final = "action_id"
COMMAND: Final = "command"
SURFACE: Final = "surface"
MESSAGE_ID: Final = "message_id"
REPLYING_TO: Final = "replying_to"
CHAT_TYPE: Final = "chat_type"
USERNAME: Final = "username"
CALLBACK_QUERY_ID: Final = "callback_query_id"
CAPTION: Final = "caption"
FORWARDED: Final = "forwarded"
MEDIA: Final = "media"
LOCATION: Final = "location"
PRE_CHECKOUT: Final = "pre_checkout"
SUCCESSFUL_PAYMENT: Final = "successful_payment"
REFUNDED_PAYMENT: Final = "refunded_payment"
STRIPE_EVENT_FIELDS: Final = "stripe_event"


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A verified message from a person, in the core's terms.

    `platform_id` is the platform's own id for this delivery (Telegram update_id, Twilio MessageSid, Slack event_id):
    a second delivery with the same id is acknowledged and ignored. `chat_id` is where replies go; `sender_id` is who
    spoke (they differ in groups). `meta` is what the channel adds (`InboundMeta`: every key, its type, its meaning
    and which channel sets it): platform extras (media, a location) and the marks the core and the dialogs act on.
    """

    channel: str
    platform_id: str
    chat_id: str
    sender_id: str
    text: str = ""
    choice: str | None = None
    sender_name: str | None = None
    meta: InboundMeta = field(default_factory=InboundMeta)

    @property
    def private(self) -> bool:
        """Whether only the bot and this person are in the chat: a chat whose id is the person's own (Telegram,
        WhatsApp, the web chat), or one the channel marked `meta[PRIVATE]` (a Slack direct message). In a group
        the bot shows nothing that belongs to one member alone (a link code, their data)."""
        return self.chat_id == self.sender_id or bool(self.meta.get(PRIVATE))

    @property
    def tells_chat_kind(self) -> bool:
        """Whether `private` says what kind of chat this is: not for a platform's report (a payment), whose sender
        is the platform's record of the buyer, not someone in the chat."""
        return not self.meta.get(PLATFORM_REPORT)

    @property
    def about_the_chat(self) -> bool:
        """Whether this is a platform's report about the chat itself (the bot may send there again, a group moved,
        someone left it), its sender only whoever made the change or went: someone the bot need not know (one it
        never knew who leaves changes nothing)."""
        return bool(self.meta.get(PLATFORM_REPORT) and (MAY_SEND in self.meta or self.meta.get(MOVED_FROM)
                                                        or self.meta.get(MEMBERSHIP) == "left"))

    def to_payload(self) -> dict[str, Any]:
        """The message as stored (its inbound row's JSON payload); `meta` under its `InboundMeta` keys as they are."""
        payload: dict[str, Any] = {"text": self.text}
        if self.choice is not None:
            payload["choice"] = self.choice
        if self.sender_name:
            payload["sender_name"] = self.sender_name
        if self.meta:
            payload["meta"] = self.meta
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], *, channel: str, platform_id: str, chat_id: str,
                     sender_id: str) -> InboundMessage:
        """The message `to_payload` stored, with the columns its row keeps beside it."""
        return cls(channel=channel, platform_id=platform_id, chat_id=chat_id, sender_id=sender_id,
                   text=payload.get("text", ""), choice=payload.get("choice"),
                   sender_name=payload.get("sender_name"), meta=payload.get("meta", {}))


# The mark in a text reply's payload of one that carries a credential (`Text.secret`): an export shows a placeholder
# in its place (storage.personal_data.SECRET reads the same key; storage imports nothing of ours, a test holds the
# two together).
SECRET = "secret"
# The key, in a stored reply's payload, of what goes instead where the platform refuses the reply's chat for good
# (`bot.channel.Unreachable`): a reply for a member's private chat, to a command typed in a group, carries the note
# the group gets then (dialogs.linking.queue; bot.dispatcher queues it): `IfUnreachable`.
IF_UNREACHABLE: Final = "if_unreachable"


class IfUnreachable(TypedDict):
    """Where a reply's chat is refused for good (`IF_UNREACHABLE`): the note queued instead, in the conversation the
    command was typed in, once under `key`; a button labelled `link_label` under it where the platform has an address
    that opens the private chat (`bot.channel.OpensPrivateChats`)."""

    conversation_id: int
    chat_id: str
    key: str
    reply: dict[str, Any]  # the note's payload
    link_label: str


@dataclass(frozen=True, slots=True)
class Text:
    """A text reply, with optional choices rendered as buttons (or numbered options) and links to open.

    `text` is light Markdown (channels/markdown.py), written by us or a course's authors; outside text goes in
    through `literal`. A choice's or a link's `label` is plain text, shown as it is.

    `thread_breaks`: where the text breaks into follow-ups (offsets into `text`, made by `threaded`). A platform
    with threads (Slack) posts the text before the first break, with the choices and links, and each follow-up as a
    reply in that post's thread (`pieces`); every other platform shows the text whole, as it shows any other.

    `secret`: the text carries a credential (a dashboard sign-in link, a /link code) that works for whoever holds
    it: sent as any other, but marked in its payload (SECRET), so that no export of the person's data hands it over.
    """

    text: str
    choices: tuple[Choice, ...] = ()
    links: tuple[Link, ...] = ()
    thread_breaks: tuple[int, ...] = ()
    secret: bool = False

    def __post_init__(self) -> None:
        bounds = (0, *self.thread_breaks, len(self.text) + 1)
        if any(later <= earlier for earlier, later in zip(bounds, bounds[1:], strict=False)):
            raise ValueError(f"thread breaks {self.thread_breaks} do not fall in order within the text")

    @classmethod
    def threaded(cls, post: str, follow_ups: tuple[str, ...] | list[str], choices: tuple[Choice, ...] = (),
                 links: tuple[Link, ...] = ()) -> Text:
        """`post`, then each follow-up as a reply in its thread where the platform has threads; one text (the
        follow-ups as paragraphs after the post) everywhere else."""
        text, breaks = post, []
        for follow_up in follow_ups:
            if follow_up.strip():
                text += "\n\n"
                breaks.append(len(text))
                text += follow_up
        return cls(text, choices, links, tuple(breaks))

    def pieces(self) -> list[str]:
        """The post and its follow-ups, in order (one piece when the text has no thread)."""
        bounds = (0, *self.thread_breaks, len(self.text))
        return [self.text[start:end].strip() for start, end in zip(bounds, bounds[1:], strict=False)]

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"kind": "text", "text": self.text}
        if self.choices:
            payload["choices"] = [{"label": c.label, "value": c.value} for c in self.choices]
        if self.links:
            payload["links"] = [{"label": link.label, "url": link.url} for link in self.links]
        if self.thread_breaks:
            payload["thread_breaks"] = list(self.thread_breaks)
        if self.secret:
            payload[SECRET] = True
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


@dataclass(frozen=True, slots=True)
class Invoice:
    """A request to pay inside the platform (Telegram Stars: currency XTR, whole Stars). `payload` identifies what
    is bought; the platform hands it back, unchanged, with the last check before charging and with the payment.

    With `period_days`, a subscription: the platform charges `amount` again every period until the person cancels,
    and each charge comes back as a payment with the same payload. It is offered as `description` with a button
    labelled `button` that opens the platform's payment sheet. `description` is light Markdown, as a Text's (the
    payment sheet shows plain text: it gets it rendered plain); `title` and `label` are plain."""

    title: str
    description: str
    payload: str
    currency: str
    amount: int  # in the currency's minor unit (Stars have none)
    label: str
    period_days: int = 0  # 0: paid once
    button: str = ""  # a subscription's button

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "kind": "invoice", "title": self.title, "description": self.description, "payload": self.payload,
            "currency": self.currency, "amount": self.amount, "label": self.label,
        }
        if self.period_days:
            payload |= {"period_days": self.period_days, "button": self.button}
        return payload


@dataclass(frozen=True, slots=True)
class CheckoutAnswer:
    """The answer to a platform's last check before it charges (Telegram's pre_checkout_query): go ahead, or not
    and why (`error`, shown to the person by the platform)."""

    query_id: str
    ok: bool
    error: str = ""

    def to_payload(self) -> dict[str, Any]:
        return {"kind": "checkout_answer", "query_id": self.query_id, "ok": self.ok, "error": self.error}


Reply = Text | Document | Invoice | CheckoutAnswer

def reply_from_payload(payload: dict[str, Any]) -> Reply:
    kind = payload.get("kind")
    if kind == "text":
        choices = tuple(Choice(c["label"], c["value"]) for c in payload.get("choices", ()))
        links = tuple(Link(link["label"], link["url"]) for link in payload.get("links", ()))
        return Text(payload["text"], choices, links, tuple(int(at) for at in payload.get("thread_breaks", ())),
                    secret=bool(payload.get(SECRET)))
    if kind == "document":
        return Document(
            filename=payload["filename"],
            caption=payload.get("caption", ""),
            path=payload.get("path"),
            url=payload.get("url"),
            media_type=payload.get("media_type", "application/octet-stream"),
        )
    if kind == "invoice":
        return Invoice(payload["title"], payload["description"], payload["payload"], payload["currency"],
                       int(payload["amount"]), payload["label"], int(payload.get("period_days", 0)),
                       payload.get("button", ""))
    if kind == "checkout_answer":
        return CheckoutAnswer(payload["query_id"], bool(payload["ok"]), payload.get("error", ""))
    raise ValueError(f"unknown reply kind {kind!r}")

# A choice whose value starts so asks the person for words in a form of the platform's own (a Slack modal), where
# typing is not heard (a Slack member's private place in a channel, whose inbound message carries
# `meta[ANSWER_FORM_OFFERED]`): the channel opens the form when it is pressed and records nothing, and what is typed
# into the form comes back as the text of an ordinary message from that place, with `meta[ANSWERS]`: the button's
# value after this prefix, the question the form was opened for (its words answer that one only).
ANSWER_FORM = "form:"
