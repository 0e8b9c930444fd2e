"""Slack's text formats, both ways: the core's replies as Block Kit messages, Slack's mrkdwn as the core's plain text.

Limits kept here (https://docs.slack.dev/reference/block-kit/blocks):
- a text object holds at most 3,000 characters, so long text goes over several section blocks;
- a message holds at most 50 blocks, so longer replies go over several messages;
- an actions block holds at most 25 elements; a button's text at most 75 characters, its value at most 2,000;
- `text` is always given as well: Slack shows it in notifications and to clients that cannot draw blocks.
Our light Markdown (**bold**, *italic*, links, bullets) becomes mrkdwn (channels/markdown.py); mrkdwn treats &, <
and > as control characters, so every piece of our text is escaped as &amp; &lt; &gt; first, and outside text a dialog
escaped (a name, an echo) shows its *, _, ~ and ` as look-alikes mrkdwn does not format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.messages import Document, Text, literal
from channels.markdown import SLACK_MRKDWN, render, with_links
from channels.slack.commands import as_typed_in_slack
from channels.text import split_text

SECTION_TEXT_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
BUTTONS_PER_ACTIONS_BLOCK = 25
BUTTON_TEXT_LIMIT = 75
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the buttons of choices too long for one: A, B, C … (written out above them)
BUTTON_VALUE_LIMIT = 2000
FALLBACK_TEXT_LIMIT = SECTION_TEXT_LIMIT  # notifications show only the start; Slack cuts `text` at 40,000


class ReplyNotRenderable(ValueError):
    """A reply Slack would refuse whatever we did (no text and no choices, a button value over 2,000 characters)."""


@dataclass(frozen=True, slots=True)
class SlackMessage:
    """One chat.postMessage: `text` is the notification fallback (mrkdwn), `blocks` what Slack draws; `in_thread`:
    a reply in the thread of the reply's first message (a follow-up of a threaded Text)."""

    text: str
    blocks: list[dict[str, Any]]
    in_thread: bool = False


def render_text(reply: Text, *, commands: frozenset[str] = frozenset()) -> list[SlackMessage]:
    """A text reply as one or more messages: section blocks of at most 3,000 characters, then the buttons. A threaded
    reply's follow-ups come after, each its own message in the thread of the first. The core's `commands` it names
    are written as they are typed in Slack (channels.slack.commands)."""
    post, *follow_ups = (as_typed_in_slack(piece, commands) for piece in reply.pieces())
    lettered = any(len(choice.label.strip()) > BUTTON_TEXT_LIMIT for choice in reply.choices)
    if lettered:  # a label Slack would cut: the choices written out in full, the buttons their letters
        post = f"{post}\n\n" + "\n".join(f"{letter}. {literal(choice.label.strip())}"
                                          for letter, choice in zip(LETTERS, reply.choices, strict=False))
    messages = _messages(_sections(with_links(post, reply.links)), _actions_blocks(reply, lettered=lettered), reply)
    if not messages:
        raise ReplyNotRenderable("the reply has neither text nor choices")
    for follow_up in follow_ups:
        messages += [SlackMessage(message.text, message.blocks, in_thread=True)
                     for message in _messages(_sections(follow_up), [], reply)]
    return messages


def _sections(text: str) -> list[dict[str, Any]]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": part}}
            for part in escaped_parts(text, SECTION_TEXT_LIMIT)]


def _messages(sections: list[dict[str, Any]], actions: list[dict[str, Any]], reply: Text) -> list[SlackMessage]:
    """Blocks in messages of at most BLOCKS_PER_MESSAGE."""
    blocks = sections + actions
    return [SlackMessage(text=_fallback(blocks[start : start + BLOCKS_PER_MESSAGE], reply),
                         blocks=blocks[start : start + BLOCKS_PER_MESSAGE])
            for start in range(0, len(blocks), BLOCKS_PER_MESSAGE)]


def render_caption(document: Document, *, commands: frozenset[str] = frozenset()) -> str:
    """A document's caption as mrkdwn, the core's `commands` it names as they are typed in Slack."""
    return render(as_typed_in_slack(document.caption or "", commands), SLACK_MRKDWN)


def render_link(document: Document, *, commands: frozenset[str] = frozenset()) -> SlackMessage:
    """A document we cannot upload (it has only a URL): a message with a link to it and its caption."""
    assert document.url, "render_link needs a document with a url"
    link = SLACK_MRKDWN.link(SLACK_MRKDWN.literal(document.filename or document.url), document.url)
    caption = render_caption(document, commands=commands)
    text = f"{caption}\n{link}" if caption else link
    return SlackMessage(text=text, blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}])


def escaped_parts(text: str, limit: int) -> list[str]:
    """`text` split on paragraph/line/sentence/word boundaries (channels/text.py) so that each part is at most `limit`
    once escaped."""
    if not text.strip():
        return []
    return _escaped_parts(text.strip(), raw_limit=limit, limit=limit)


def _escaped_parts(text: str, *, raw_limit: int, limit: int) -> list[str]:
    parts: list[str] = []
    for piece in split_text(text, raw_limit):
        escaped = render(piece, SLACK_MRKDWN)
        if len(escaped) <= limit:
            parts.append(escaped)
        else:
            # Escaping grew the piece past the limit (many & < >): split it again, smaller by the same ratio.
            smaller = max(1, raw_limit * limit // len(escaped) - 1)
            parts += _escaped_parts(piece, raw_limit=smaller, limit=limit)
    return parts


def _actions_blocks(reply: Text, *, lettered: bool = False) -> list[dict[str, Any]]:
    buttons = []
    for index, choice in enumerate(reply.choices):
        if len(choice.value) > BUTTON_VALUE_LIMIT:
            raise ReplyNotRenderable(
                f"choice {choice.label!r} has a value of {len(choice.value):,} characters; Slack allows "
                f"{BUTTON_VALUE_LIMIT:,}"
            )
        label = (LETTERS[index] if lettered and index < len(LETTERS) else choice.label.strip()) or choice.value or "…"
        if len(label) > BUTTON_TEXT_LIMIT:
            label = label[: BUTTON_TEXT_LIMIT - 1].rstrip() + "…"
        buttons.append(
            {
                "type": "button",
                # plain_text is shown as given: no mrkdwn, so no escaping
                "text": {"type": "plain_text", "text": label, "emoji": True},
                "value": choice.value,
                "action_id": f"choice-{index}",  # unique within the message, as Slack requires
            }
        )
    return [
        {"type": "actions", "block_id": f"choices-{start // BUTTONS_PER_ACTIONS_BLOCK}",
         "elements": buttons[start : start + BUTTONS_PER_ACTIONS_BLOCK]}
        for start in range(0, len(buttons), BUTTONS_PER_ACTIONS_BLOCK)
    ]


def _fallback(blocks: list[dict[str, Any]], reply: Text) -> str:
    """The message's first section (already escaped and within the limit), else the choices' labels."""
    for block in blocks:
        if block["type"] == "section":
            return block["text"]["text"]
    labels = ", ".join(choice.label for choice in reply.choices)
    return SLACK_MRKDWN.literal(labels[:FALLBACK_TEXT_LIMIT])



# inbound: mrkdwn → the core's plain text --------------------------------------------------------------------------

_ANGLE = re.compile(r"<([^<>]*)>")
_SPECIALS = {"!here": "@here", "!channel": "@channel", "!everyone": "@everyone"}


def plain_text(mrkdwn: str, *, bot_user_id: str | None = None, member_ids: bool = False) -> str:
    """What a person typed, from Slack's wire form: our own @mention dropped, links and mentions readable,
    &amp; &lt; &gt; unescaped (https://docs.slack.dev/messaging/formatting-message-text). `member_ids`: a mention
    of a person as "@" and their member id ("<@U012|ann>" is "@U012"), for a command that names whom it acts on."""

    def readable(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            if bot_user_id and target[1:] == bot_user_id:
                return ""
            return f"@{target[1:]}" if member_ids else f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!"):
            return _SPECIALS.get(target, label or target)
        if target.startswith("mailto:"):
            return label or target[len("mailto:") :]
        return label or target

    text = _ANGLE.sub(readable, mrkdwn)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]{2,}", " ", text).strip()
