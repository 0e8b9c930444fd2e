"""Which Telegram updates become messages, and how buttons and long texts are fitted to Telegram's limits."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from telegram import Bot, Update

from bot.messages import Choice, InboundMessage
from channels.telegram.buttons import callback_data, keyboard, pressed
from channels.telegram.channel import ALLOWED_UPDATES, MAX_TEXT_CHARS, fit
from channels.telegram.updates import BotIdentity, backfill_legacy_fields, interpret, needs_identity, plain_text
from channels.webhook import Ignored
from standins.telegram import BOT_ID, BOT_USERNAME, TOKEN, bot_member_update, person, text_update

ME = BotIdentity(BOT_ID, BOT_USERNAME)
BOT = Bot(TOKEN, base_url="http://127.0.0.1:9/bot")  # never called: only binds the parsed objects
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "telegram" / "core-telegram-org-webhooks"

# Per file: the text the message brings (and the media it carries), or a phrase of the reason it is ignored.
EXPECTED = {
    "01_message_text_minimal.json": ("message", "/start", None),
    "02_message_text.json": ("message", "/start", None),
    "03_forwarded_message.json": ("message", "/start", None),
    "04_forwarded_channel_message.json": ("message", "/start", None),
    "05_message_with_reply.json": ("message", "/start", None),
    "06_edited_message.json": ("ignored", "edited message", None),
    "07_message_with_entities.json": ("message", "Bold and italics", None),
    "08_message_with_audio.json": ("message", "", "audio"),
    "09_voice_message.json": ("message", "", "voice"),
    "10_message_with_document.json": ("message", "", "document"),
    "11_inline_query.json": ("ignored", "inline mode", None),
    "12_chosen_inline_result.json": ("ignored", "inline mode", None),
    "13_callback_query.json": ("ignored", "inline-mode message", None),
}


def parse(data: dict) -> Update:
    return Update.de_json(backfill_legacy_fields(data), BOT)


def outcome(data: dict) -> InboundMessage | Ignored:
    update = parse(data)
    return interpret(update, me=ME if needs_identity(update) else None)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_every_fixture_file_is_listed():
    fixture(next(iter(EXPECTED)))
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_updates(name):
    kind, expected, media = EXPECTED[name]
    result = outcome(fixture(name))
    if kind == "ignored":
        assert isinstance(result, Ignored)
        assert expected in result.reason
        return
    assert isinstance(result, InboundMessage)
    assert (result.platform_id, result.chat_id, result.sender_id) == ("10000", "1111111", "1111111")
    assert result.text == expected
    if media is None:
        assert "media" not in result.meta
    else:
        assert result.meta["media"]["kind"] == media
        assert result.meta["media"]["file_id"] == "AwADBAADbXXXXXXXXXXXGBdhD2l6_XX"
    json.dumps(result.to_payload())  # stored as JSON


def _changed(data: dict, change) -> dict:
    change(data)
    return data


COMMAND = [{"type": "bot_command", "offset": 0, "length": 5}]
# (update, whether it is plain): a plain one is read from its JSON, and must come to what python-telegram-bot's
# Update comes to; every other one must go the whole way.
PLAIN_OR_NOT = {
    "a command": (text_update("/help", entities=COMMAND, user=person(username="ann", language_code="de")), True),
    "a word": (text_update("next"), True),
    "no first name": (text_update("hi", user=person(first_name="")), True),
    "formatting": (text_update("bold", entities=[{"type": "bold", "offset": 0, "length": 4}]), True),
    "a long update id": (text_update("hi", update_id=2**40), True),
    "a group": (text_update("/help", chat_id=-100123, entities=COMMAND), False),
    "a bot": (text_update("hi", user=person(is_bot=True)), False),
    "forwarded": (text_update("hi", forward_origin={"type": "hidden_user", "date": 1, "sender_user_name": "X"}), False),
    "forwarded, before forward_origin": (text_update("hi", forward_date=1), False),
    "a caption": (_changed(text_update("x"), lambda d: d["message"].update(caption="c", text=None)), False),
    "a photo": (text_update("x", photo=[{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]), False),
    "a text mention": (text_update("Ann", entities=[{"type": "text_mention", "offset": 0, "length": 3,
                                                     "user": person()}]), False),
    "a reply": (text_update("hi", reply_to_message={"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}}),
                False),
    "a number for text": (text_update(7), False),  # type: ignore[arg-type]
    "no is_bot": (_changed(text_update("hi"), lambda d: d["message"]["from"].pop("is_bot")), False),
    "no first_name": (_changed(text_update("hi"), lambda d: d["message"]["from"].pop("first_name")), False),
    "no date": (_changed(text_update("hi"), lambda d: d["message"].pop("date")), False),
    "a date past 9999": (_changed(text_update("hi"), lambda d: d["message"].update(date=10**12)), False),
    "a string chat id": (_changed(text_update("hi"), lambda d: d["message"]["chat"].update(id="1")), False),
    "a channel": (_changed(text_update("hi"), lambda d: d["message"]["chat"].update(type="channel")), False),
    "edited": (_changed(text_update("hi"), lambda d: d.update(edited_message=d.pop("message"))), False),
    "a second kind": (_changed(text_update("hi"), lambda d: d.update(poll={"id": "1"})), False),
    "an entity with a string offset": (text_update("hi", entities=[{"type": "bold", "offset": "0", "length": 2}]),
                                       False),
    **{f"fixture {name}": (fixture(name), None) for name in sorted(EXPECTED)},
}


@pytest.mark.parametrize("name", PLAIN_OR_NOT)
def test_a_plain_update_is_read_from_its_json_as_python_telegram_bot_reads_it(name):
    data, plain = PLAIN_OR_NOT[name]
    read = plain_text(copy.deepcopy(data))
    if plain is False:
        assert read is None
        return
    assert plain is None or read is not None
    if read is not None:
        assert read == outcome(copy.deepcopy(data))


def test_backfill_keeps_what_is_there():
    data = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": -5, "type": "supergroup"},
                                        "from": {"id": 7, "is_bot": True, "first_name": "B"}, "text": "x"}}
    backfill_legacy_fields(data)
    assert data["message"]["chat"]["type"] == "supergroup"
    assert data["message"]["from"]["is_bot"] is True


def test_forwarded_and_named():
    result = outcome(fixture("03_forwarded_message.json"))
    assert result.meta["forwarded"] is True
    assert result.sender_name == "Test Firstname"


def test_photo_brings_its_largest_size_and_caption():
    data = text_update("ignored")
    del data["message"]["text"]
    data["message"]["photo"] = [
        {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90},
        {"file_id": "large", "file_unique_id": "l", "width": 1280, "height": 1280},
    ]
    data["message"]["caption"] = "my homework"
    result = outcome(data)
    assert result.text == "my homework"
    assert result.meta["media"]["kind"] == "photo" and result.meta["media"]["file_id"] == "large"
    assert result.meta["caption"] == "my homework"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", "/help"),
        (f"/help@{BOT_USERNAME}", f"/help@{BOT_USERNAME}"),
        (f"/quiz@{BOT_USERNAME.upper()} now", f"/quiz@{BOT_USERNAME.upper()} now"),
        (f"@{BOT_USERNAME} what is a cell?", "what is a cell?"),
        (f"so, @{BOT_USERNAME}, what is a cell?", "so, , what is a cell?"),
        ("/help@some_other_bot", None),
        ("good morning everyone", None),
        (f"mail me at ann@{BOT_USERNAME}.org", None),
        (f"@{BOT_USERNAME}fan club", None),
    ],
)
def test_groups_answer_commands_and_mentions_only(text, expected):
    data = text_update(text, chat_id=-1001234567890, user=person(42, "Bo"))
    assert needs_identity(parse(text_update(text, chat_id=-1001234567890)))
    result = outcome(data)
    if expected is None:
        assert isinstance(result, Ignored) and "not meant for the bot" in result.reason
        return
    assert isinstance(result, InboundMessage)
    assert (result.chat_id, result.sender_id, result.text) == ("-1001234567890", "42", expected)


def test_group_replies_to_the_bot_and_text_mentions_reach_it():
    reply = text_update("mitochondria", chat_id=-77, reply_to_message={
        "message_id": 5, "date": 0, "chat": {"id": -77, "type": "group", "title": "g"},
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "Lessonbot"}, "text": "What powers the cell?"})
    assert isinstance(outcome(reply), InboundMessage)
    mention = text_update("Lessonbot, help", chat_id=-77, entities=[
        {"type": "text_mention", "offset": 0, "length": 9, "user": {"id": BOT_ID, "is_bot": True, "first_name": "L"}}])
    assert isinstance(outcome(mention), InboundMessage)
    to_someone_else = text_update("thanks", chat_id=-77, reply_to_message={
        "message_id": 6, "date": 0, "chat": {"id": -77, "type": "group", "title": "g"},
        "from": person(9, "Cy"), "text": "here you go"})
    assert isinstance(outcome(to_someone_else), Ignored)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"from": {"id": 99, "is_bot": True, "first_name": "Other bot"}}, "from a bot"),
        ({"text": None, "new_chat_members": [person(5, "Di")]}, "no text, caption or media"),
    ],
)
def test_messages_the_bot_does_not_read(change, reason):
    data = text_update("hello")
    data["message"].update(change)
    data["message"] = {k: v for k, v in data["message"].items() if v is not None}
    result = outcome(data)
    assert isinstance(result, Ignored) and reason in result.reason


def test_a_channels_post_forwarded_into_its_discussion_group_is_not_a_persons_message():
    """A channel's post is copied into its linked discussion group as a message "from" Telegram's service account
    (777000, not marked a bot) on behalf of the channel (`sender_chat`, `is_automatic_forward`): one that mentions
    the bot is still the channel's post, not a learner's question."""
    channel = {"id": -1009876543210, "type": "channel", "title": "Acme news"}
    post = text_update(
        f"New course out! Ask @{BOT_USERNAME} about it.", chat_id=-1001234567890,
        user={"id": 777000, "is_bot": False, "first_name": "Telegram"},
        sender_chat=channel, is_automatic_forward=True,
        forward_origin={"type": "channel", "chat": channel, "message_id": 12, "date": 1765000000},
    )
    result = outcome(post)
    assert isinstance(result, Ignored) and "channel" in result.reason


def test_unknown_and_newer_update_kinds_are_ignored_by_name():
    result = outcome({"update_id": 3, "some_future_update": {"id": 1}})
    assert isinstance(result, Ignored) and "some_future_update" in result.reason
    poll_answer = outcome({"update_id": 4, "poll_answer": {
        "poll_id": "p", "option_ids": [0], "option_persistent_ids": ["a"], "user": person()}})
    assert isinstance(poll_answer, Ignored) and "poll_answer" in poll_answer.reason


def test_another_members_change_in_a_group_stores_nothing_of_them():
    joined = bot_member_update(-100, "member", by=person(77, "Zoe"), kind="chat_member")
    joined["chat_member"]["new_chat_member"]["user"] = person(77, "Zoe")
    result = outcome(joined)
    assert isinstance(result, Ignored) and "never wrote" in result.reason
    assert "chat_member" not in ALLOWED_UPDATES and "my_chat_member" in ALLOWED_UPDATES


# buttons --------------------------------------------------------------------------------------------------------------


def test_callback_data_fits_64_bytes_or_refers_to_the_button():
    assert callback_data("/help", 0) == "/help"
    assert callback_data("é" * 32, 0) == "é" * 32  # 64 bytes
    assert callback_data("é" * 33, 2) == "#button:2"
    assert callback_data("", 1) == "#button:1"
    assert callback_data("#button:0", 4) == "#button:4"  # a value that looks like a reference is never taken as one


def test_pressed_button_gives_back_the_value_or_its_label():
    long_value = "the answer is the second option, because the passage says so " * 2
    markup = keyboard([Choice("Show commands", "/help"), Choice("Option B", long_value)])
    rows = markup.inline_keyboard
    assert [row[0].callback_data for row in rows] == ["/help", "#button:1"]
    assert pressed("/help", markup) == ("/help", "Show commands")
    assert pressed("#button:1", markup) == (None, "Option B")
    assert pressed("#button:1", None) == (None, None)


def test_button_press_becomes_a_choice():
    markup = keyboard([Choice("Show commands", "/help"), Choice("Long", "x" * 100)]).to_dict()
    query = {
        "id": "cq1", "from": person(), "chat_instance": "1", "data": "/help",
        "message": {"message_id": 9, "date": 0, "chat": {"id": 1111111, "type": "private"},
                    "text": "Hi", "reply_markup": markup},
    }
    result = outcome({"update_id": 77, "callback_query": query})
    assert (result.platform_id, result.chat_id) == ("77", "1111111")
    assert (result.choice, result.text) == ("/help", "Show commands")
    assert result.meta["callback_query_id"] == "cq1"
    long_press = outcome({"update_id": 78, "callback_query": query | {"data": "#button:1"}})
    assert (long_press.choice, long_press.text) == (None, "Long")
    without_keyboard = {"message_id": 9, "date": 0, "chat": {"id": 1111111, "type": "private"}}
    gone = dict(query, data="#button:1", message=without_keyboard)  # a message too old for Telegram to show the bot
    old_press = outcome({"update_id": 79, "callback_query": gone})
    assert (old_press.choice, old_press.text) == ("#button:1", "")  # a choice no question takes: a spent button


# long texts -----------------------------------------------------------------------------------------------------------


def test_fit_respects_the_limit_in_characters_and_utf16_units():
    prose = ("A sentence about cells and what they do. " * 150).strip()
    parts = fit(prose, MAX_TEXT_CHARS)
    assert len(parts) == 2 and all(len(p) <= MAX_TEXT_CHARS for p in parts)
    assert " ".join(parts) == prose
    emoji = " ".join(["🧬🔬"] * 2000)  # 2 UTF-16 units per emoji
    parts = fit(emoji, MAX_TEXT_CHARS)
    assert all(len(p.encode("utf-16-le")) // 2 <= MAX_TEXT_CHARS for p in parts)
    assert " ".join(parts) == emoji


@pytest.mark.parametrize("admin", [{"id": 7, "is_bot": False, "first_name": "Bo"},
                                   {"id": 1087968824, "is_bot": True, "first_name": "Group", "username":
                                    "GroupAnonymousBot"}])
def test_a_group_become_a_supergroup_is_reported_in_the_new_chat_naming_the_old_one(admin):
    """The service message that opens the supergroup (sent by whoever converted it, an anonymous admin too): a
    platform's report in the new chat, the old chat's id in `meta[MOVED_FROM]`; the group's own last word
    (`migrate_to_chat_id`) is left out."""
    opened = {"update_id": 5, "message": {"message_id": 1, "date": 0, "from": admin,
                                          "chat": {"id": -1001234567890, "type": "supergroup", "title": "Study"},
                                          "migrate_from_chat_id": -4012345}}
    result = outcome(opened)
    assert isinstance(result, InboundMessage)
    assert (result.chat_id, result.text, result.meta["moved_from"], result.tells_chat_kind) == (
        "-1001234567890", "", "-4012345", False)
    closed = {"update_id": 6, "message": {"message_id": 9, "date": 0, "from": admin,
                                          "chat": {"id": -4012345, "type": "group", "title": "Study"},
                                          "migrate_to_chat_id": -1001234567890}}
    assert isinstance(outcome(closed), Ignored)
