"""Slack's text formats: replies as Block Kit within Slack's limits, mrkdwn back to plain text, and the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bot.messages import Choice, Document, Text
from channels.markdown import escape_mrkdwn
from channels.slack.blocks import (
    BLOCKS_PER_MESSAGE,
    BUTTON_TEXT_LIMIT,
    SECTION_TEXT_LIMIT,
    ReplyNotRenderable,
    plain_text,
    render_link,
    render_text,
)
from channels.slack.inbound import MEMBERSHIP_EVENTS, SLASH_COMMANDS, TEAM_COMMAND
from channels.slack.routes import SCOPES

MANIFEST = Path(__file__).resolve().parents[2] / "channels/slack/manifest.yml"


def sections(message) -> list[str]:
    return [block["text"]["text"] for block in message.blocks if block["type"] == "section"]


def buttons(message) -> list[dict]:
    return [element for block in message.blocks if block["type"] == "actions" for element in block["elements"]]


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def test_mrkdwn_control_characters_are_escaped_and_formatting_kept():
    assert escape_mrkdwn("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert escape_mrkdwn("<!channel> ping") == "&lt;!channel&gt; ping"  # no mass mention through a reply
    assert escape_mrkdwn("&amp;") == "&amp;amp;"  # text that looks escaped is shown as typed
    assert escape_mrkdwn("*bold* _italic_") == "*bold* _italic_"


def test_short_reply_with_choices_is_one_message_of_a_section_and_buttons():
    [message] = render_text(Text("Ready for <your> quiz?", (Choice("Yes", "quiz:yes"), Choice("Later", "quiz:later"))))
    assert [block["type"] for block in message.blocks] == ["section", "actions"]
    assert sections(message) == ["Ready for &lt;your&gt; quiz?"]
    assert message.blocks[0]["text"]["type"] == "mrkdwn"
    assert message.text == "Ready for &lt;your&gt; quiz?"  # the notification fallback is always there
    assert [(b["text"]["text"], b["value"], b["action_id"]) for b in buttons(message)] == [
        ("Yes", "quiz:yes", "choice-0"),
        ("Later", "quiz:later", "choice-1"),
    ]
    assert all(b["type"] == "button" and b["text"]["type"] == "plain_text" for b in buttons(message))


def test_long_text_goes_over_sections_of_at_most_3000_characters_on_sentence_boundaries():
    sentence = "Spaced repetition shows a card again just before you would forget it. "
    text = sentence * 200  # about 14,000 characters
    [message] = render_text(Text(text))
    parts = sections(message)
    assert len(parts) == 5
    assert all(len(part) <= SECTION_TEXT_LIMIT for part in parts)
    assert all(part.endswith("forget it.") for part in parts)
    assert " ".join(parts) == text.strip()


def test_escaping_that_grows_text_past_the_limit_splits_it_further():
    text = "& " * 2000 + "<" * 2000  # 6,000 raw characters, about 18,000 once escaped
    [message] = render_text(Text(text))
    parts = sections(message)
    assert all(len(part) <= SECTION_TEXT_LIMIT for part in parts)
    assert "".join(unescape(part) for part in parts).replace(" ", "") == text.replace(" ", "")
    assert not any(part.endswith(("&", "&a", "&am", "&amp", "&l", "&lt", "&g", "&gt")) for part in parts)


def test_very_long_reply_goes_over_messages_of_at_most_50_blocks_with_the_buttons_last():
    paragraph = "word " * 590  # under 3,000 characters: one section per paragraph
    text = "\n\n".join([paragraph.strip()] * 120)
    messages = render_text(Text(text, (Choice("Next", "/next"),)))
    assert [len(m.blocks) for m in messages] == [50, 50, 21]
    assert all(len(m.blocks) <= BLOCKS_PER_MESSAGE for m in messages)
    assert [b["value"] for b in buttons(messages[-1])] == ["/next"]
    assert not buttons(messages[0]) and not buttons(messages[1])
    assert all(m.text and len(m.text) <= SECTION_TEXT_LIMIT for m in messages)


def test_many_choices_go_over_actions_blocks_of_at_most_25_buttons_with_unique_action_ids():
    choices = tuple(Choice(f"Option {i}", f"value-{i}") for i in range(30))
    [message] = render_text(Text("Pick one", choices))
    actions = [block for block in message.blocks if block["type"] == "actions"]
    assert [len(block["elements"]) for block in actions] == [25, 5]
    assert len({block["block_id"] for block in actions}) == 2
    ids = [b["action_id"] for b in buttons(message)]
    assert len(set(ids)) == 30
    assert [b["value"] for b in buttons(message)] == [f"value-{i}" for i in range(30)]


def test_choices_too_long_for_a_button_are_written_out_and_pressed_by_letter_and_values_over_2000_refused():
    stem = "Use a long passphrase for every account, stored in a password manager you trust, "
    choices = (Choice(stem + "and change it when a service is breached <now>", "quiz:1:0:aa"),
               Choice(stem + "and never change it", "quiz:1:1:bb"), Choice("Neither", "quiz:1:2:cc"))
    assert all(len(choice.label) > BUTTON_TEXT_LIMIT for choice in choices[:2])  # alike in their first 75
    [message] = render_text(Text("Which?", choices))
    assert sections(message) == [f"Which?\n\nA. {stem}and change it when a service is breached &lt;now&gt;\n"
                                 f"B. {stem}and never change it\nC. Neither"]
    assert [(b["text"]["text"], b["value"]) for b in buttons(message)] == [
        ("A", "quiz:1:0:aa"), ("B", "quiz:1:1:bb"), ("C", "quiz:1:2:cc")]
    with pytest.raises(ReplyNotRenderable, match="2,000"):
        render_text(Text("Which?", (Choice("Too long", "v" * 2001),)))


def test_choices_without_text_still_have_a_fallback_and_an_empty_reply_is_refused():
    [message] = render_text(Text("", (Choice("A & B", "a"), Choice("C", "c"))))
    assert [block["type"] for block in message.blocks] == ["actions"]
    assert message.text == "A &amp; B, C"
    with pytest.raises(ReplyNotRenderable):
        render_text(Text("   "))


def test_a_document_with_only_a_url_becomes_an_escaped_link():
    message = render_link(Document("notes <1>.pdf", caption="Your R&D notes", url="https://example.com/a|b>c.pdf"))
    assert message.text == "Your R&amp;D notes\n<https://example.com/a%7Cb&gt;c.pdf|notes &lt;1&gt;.pdf>"
    assert sections(message) == [message.text]


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("<@W111> Hi there!", "Hi there!"),
        ("what is <@W111>?", "what is ?"),
        ("ask <@U222|ann> and <#C123|general>", "ask @ann and #general"),
        ("see <https://example.com/a?b=1&amp;c=2|the notes> or <https://example.com>",
         "see the notes or https://example.com"),
        ("<!here> a &lt; b &amp;&amp; c &gt; d", "@here a < b && c > d"),
        ("mail <mailto:ann@example.com|ann@example.com>", "mail ann@example.com"),
        ("&amp;lt; stays", "&lt; stays"),
    ],
)
def test_mrkdwn_from_slack_becomes_plain_text(wire, expected):
    assert plain_text(wire, bot_user_id="W111") == expected


def test_a_command_naming_a_member_keeps_the_id_slack_escaped_the_mention_with():
    assert plain_text("team admin <@U222|ann> &lt;b&gt;", member_ids=True) == "team admin @U222 <b>"
    assert plain_text("team admin <@U222>", member_ids=True) == "team admin @U222"


def test_the_manifest_asks_for_the_scopes_and_commands_the_code_uses():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(SCOPES)
    commands = manifest["features"]["slash_commands"]
    assert sorted(c["command"] for c in commands) == sorted([*SLASH_COMMANDS, TEAM_COMMAND])
    settings = manifest["settings"]
    assert {"app_mention", "message.im", *MEMBERSHIP_EVENTS} <= set(settings["event_subscriptions"]["bot_events"])
    urls = {c["url"] for c in commands} | {
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
    }
    assert urls == {"https://bot.example.com/slack/events"}
    assert manifest["oauth_config"]["redirect_urls"] == ["https://bot.example.com/slack/oauth_redirect"]
    assert manifest["features"]["app_home"]["messages_tab_enabled"] is True
    # /lessonbot team admin @name: Slack sends the member's id only for a command that escapes mentions
    assert {c["command"]: c["should_escape"] for c in commands}[TEAM_COMMAND] is True


@pytest.mark.parametrize(("core", "slack"), [
    ("Send /help to see what I can do.", "Send /lessonbot help to see what I can do."),
    ("Send /stop at any time, or /next for a lesson.", "Send /lessonbot stop at any time, or /lesson for a lesson."),
    ("(/review) and “/progress”", "(/quiz) and “/progress”"),
    ("/lessonbot team leave to opt out", "/lessonbot team leave to opt out"),
    ("/buy passwords-that-hold", "/buy passwords-that-hold"),
    ("24/7, https://example.com/help and a/b stay", "24/7, https://example.com/help and a/b stay"),
    # a lesson's paths and code, and words the core has no command for, stay as written
    *[(text, text) for text in ("`/etc/shadow`, not in /etc/passwd; logs go to /var/log", "/usr and /tmp")],
    ("type `/help` or /help", "type `/help` or /lessonbot help"),
])
def test_a_command_a_reply_names_is_written_as_it_is_typed_in_slack(core, slack):
    """Slack refuses a "/word" the app did not register before it reaches the bot: a reply names the registered
    command that means it, or /lessonbot and the word."""
    commands = frozenset({"/help", "/stop", "/next", "/review", "/progress", "/buy", "/team"})
    [message] = render_text(Text(core), commands=commands)
    assert message.blocks[0]["text"]["text"] == slack and message.text == slack


def test_a_documents_caption_names_the_cores_commands_as_typed_in_slack():
    document = Document("lessonbot-data.json", caption="Everything I keep about you. To delete it, send /stop.",
                        url="https://example.com/export.json")
    [section] = render_link(document, commands=frozenset({"/stop"})).blocks
    assert section["text"]["text"].startswith("Everything I keep about you. To delete it, send /lessonbot stop.")
