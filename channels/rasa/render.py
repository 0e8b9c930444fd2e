"""Our replies as Rasa's bot messages: `{"text": …, "buttons": [{"title": …, "payload": …}]}`, the shape a Rasa
response (and `dispatcher.utter_message`) takes, which every Rasa channel connector renders in its own way.

A choice becomes a button whose payload is an intent with its entity written out (`/lessonbot_choice{"lessonbot_choice":
"quiz:12:1:5d41ab"}`): Rasa reads such a payload without its NLU model, so pressing the button reaches
`action_lessonbot_answer` with the value exactly as we offered it. Text is light Markdown rendered as plain text
for Rasa (channels/markdown.py's `RASA`), which is not shown as it is everywhere: Rasa's Slack connector posts `text`
as mrkdwn (`<url|text>` is a link, `<!channel>` pings the channel), and web widgets render it as Markdown. So what
came from outside (a name, what a person typed) goes with its markup characters as look-alikes (‹ › for < >, ［ ］,
∗ ˍ ∼ ˋ, ＞ ‐ for a quote or a list mark at a line's start), and no connector makes a link, a mention or formatting of
it; our own bold and links come as plain text (a link as "text (url)").
"""

from __future__ import annotations

import json
from typing import Any

from bot.messages import CheckoutAnswer, Document, Invoice, Reply, Text
from channels.markdown import RASA, render, with_links

CHOICE_INTENT = "lessonbot_choice"  # the intent of a pressed button; its entity (and slot) has the same name


def button_payload(value: str) -> str:
    """What Rasa receives when the button offering `value` is pressed."""
    return "/" + CHOICE_INTENT + json.dumps({CHOICE_INTENT: value}, ensure_ascii=False)


def bot_message(reply: Reply, *, link: str | None = None) -> dict[str, Any] | None:
    """One reply as a Rasa bot message; None for what only another platform shows (an in-app invoice, the answer to a
    checkout check). `link`: where a document kept on this machine is downloaded (channels/rasa/files.py)."""
    if isinstance(reply, Text):
        message: dict[str, Any] = {"text": render(with_links(reply.text, reply.links), RASA)}
        if reply.choices:
            message["buttons"] = [
                {"title": choice.label, "payload": button_payload(choice.value)} for choice in reply.choices
            ]
        return message
    if isinstance(reply, Document):
        text = render(reply.caption, RASA) if reply.caption else reply.filename
        address = reply.url or (link if reply.path else None)
        return {"text": text, "attachment": address} if address else {"text": text}
    if isinstance(reply, Invoice | CheckoutAnswer):
        return None
    raise TypeError(f"no Rasa message for {type(reply).__name__}")
