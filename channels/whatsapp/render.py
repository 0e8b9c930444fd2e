"""The core's replies in WhatsApp's terms: the parameters of the Twilio Messages each reply becomes.

- Text: at most 1,600 characters per message (Twilio's limit for WhatsApp bodies, counted in UTF-16 code units, so
  an emoji counts twice); longer text is split on paragraph, line, sentence or word boundaries (a code block kept
  whole when it fits, else cut between its lines with its fences closed and opened again) and sent as several
  messages, in order.
- Formatting: the light Markdown dialogs and courses write (**bold**, *italic*, links, bullets) becomes WhatsApp's
  own *bold* and _italic_ (channels/markdown.py). WhatsApp has no escape character: outside text a dialog escaped
  (a name, an echo, a model's answer) and choice labels show their *, _, ~ and ` as look-alikes WhatsApp does not
  format, but for a web or e-mail address in that text, which goes as typed (a look-alike would make another one).
- Choices: numbered lines under the text ("1. Alpha"); the person answers with the number or the words, and the core
  maps that back to the choice (bot.pipeline). When a quick-reply content template is configured for that many
  buttons (at most 3 in a session message, titles of at most 20 characters), it is used instead and a tap comes back
  as ButtonPayload = the choice's value.
- Outside the 24-hour window only an approved template may go: the reply, on one line, fills its variable {{1}}; a
  text too long for it goes in as many templates as it needs, split as a long text is, its numbered choices whole in
  the last.
"""

from __future__ import annotations

import json
import re

from bot.messages import Choice, Text
from channels.markdown import WHATSAPP, render, with_links
from channels.text import split_utf16, utf16_units

MAX_BODY_CHARS = 1600
TEMPLATE_CHARS = 900  # a template body holds 1,024 characters; its own words need some of them
QUICK_REPLY_TITLE_CHARS = 20
QUICK_REPLY_ID_CHARS = 200
QUICK_REPLY_BODY_CHARS = 1024


def options(choices: tuple[Choice, ...]) -> str:
    """The choices as "1. label" lines, each label shown as it is."""
    return "\n".join(f"{number}. {WHATSAPP.literal(choice.label)}" for number, choice in enumerate(choices, start=1))


def numbered(text: str, choices: tuple[Choice, ...]) -> str:
    """The text with its choices as "1. label" lines below it, each label shown as it is."""
    if not choices:
        return text
    return f"{text}\n\n{options(choices)}" if text.strip() else options(choices)


def whatsapp_text(reply: Text) -> str:
    """The whole of a Text in WhatsApp's formatting, its choices numbered below it."""
    return numbered(render(with_links(reply.text, reply.links), WHATSAPP), reply.choices)


def text_bodies(reply: Text) -> list[str]:
    """The bodies of the messages a Text becomes, each within Twilio's 1,600 characters (UTF-16 code units, as
    Twilio counts them: an emoji counts twice)."""
    return split_utf16(whatsapp_text(reply), MAX_BODY_CHARS)


def quick_reply_variables(reply: Text) -> str | None:
    """ContentVariables for a quick-reply template (body {{1}}, then each button's title and id), or None if the
    reply does not fit one."""
    choices, text = reply.choices, with_links(reply.text, reply.links)
    body = render(text, WHATSAPP)  # as sent, counted as Twilio counts (an emoji twice)
    if not 1 <= len(choices) <= 3 or utf16_units(body) > QUICK_REPLY_BODY_CHARS or not text.strip():
        return None
    if any(len(c.label) > QUICK_REPLY_TITLE_CHARS or len(c.value) > QUICK_REPLY_ID_CHARS for c in choices):
        return None
    variables = {"1": body}
    for index, choice in enumerate(choices):
        variables[str(2 + 2 * index)] = choice.label
        variables[str(3 + 2 * index)] = choice.value
    return json.dumps(variables, ensure_ascii=False)


def template_variables(reply: Text) -> list[list[str]]:
    """ContentVariables carrying a Text outside the window, as templates whose {{1}} holds a piece of it: for each
    message `text_bodies` makes of it, the templates that carry that message. Each piece is on one line (WhatsApp
    refuses template variables with line breaks, tabs or more than four spaces in a row) and within 900 UTF-16 units,
    split as a long text is (between paragraphs, lines, sentences, then words), so nothing of the reply is left out;
    its numbered choices go whole in the last piece where they fit one."""
    return [
        [json.dumps({"1": _one_line(piece)}, ensure_ascii=False) for piece in split_utf16(body, TEMPLATE_CHARS)]
        for body in text_bodies(reply)
    ]


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
