"""`InboundMeta`, the declared contract of what channels add to a message: one constant per key, and the keys stored
as they always were, so messages recorded before a rename still read."""

from __future__ import annotations

import json

from bot import messages
from bot.messages import FROM_A_BOT, GROUP_CHAT, IN_RESPONSE_WITHIN, REPLY_ADDRESS, InboundMessage, InboundMeta

# The constants' names and the JSON keys stored messages carry: a key written here is in the database.
STORED_KEYS = {
    "PRIVATE": "private",
    "START_LINK": "start_link",
    "SUBSCRIPTION": "subscription",
    "NUMBERED_CHOICES": "numbered_choices",
    "PLATFORM_REPORT": "platform_report",
    "IN_RESPONSE_WITHIN": "in_response_within",
    "URGENT": "urgent",
    "REPLY_ADDRESS": "reply_address",
    "QUESTION": "question",
    "LANGUAGE": "language",
    "MEMBERSHIP": "membership",
    "MOVED_FROM": "moved_from",
    "MAY_SEND": "may_send",
    "GROUP_CHAT": "group_chat",
    "WORKSPACE": "workspace",
    "ORG_WORKSPACE": "org_workspace",
    "DIRECT_ADDRESS": "direct_address",
    "ANSWER_COMMAND": "answer_command",
    "ANSWER_FORM_OFFERED": "answer_form",
    "ANSWERS": "answers",
    "WORKSPACE_ADMIN": "workspace_admin",
    "GUEST": "guest",
    "FROM_A_BOT": "bot",
    "TIMEZONE": "timezone",
    "EVENT": "event",
    "THREAD_TS": "thread_ts",
    "ACTION_ID": "action_id",
    "COMMAND": "command",
    "SURFACE": "surface",
    "MESSAGE_ID": "message_id",
    "REPLYING_TO": "replying_to",
    "CHAT_TYPE": "chat_type",
    "USERNAME": "username",
    "CALLBACK_QUERY_ID": "callback_query_id",
    "CAPTION": "caption",
    "FORWARDED": "forwarded",
    "MEDIA": "media",
    "LOCATION": "location",
    "PRE_CHECKOUT": "pre_checkout",
    "SUCCESSFUL_PAYMENT": "successful_payment",
    "REFUNDED_PAYMENT": "refunded_payment",
    "STRIPE_EVENT_FIELDS": "stripe_event",
}


def test_every_declared_key_has_a_constant_naming_the_key_stored_messages_carry():
    assert {name: getattr(messages, name) for name in STORED_KEYS} == STORED_KEYS
    assert set(STORED_KEYS.values()) == InboundMeta.__optional_keys__
    assert not InboundMeta.__required_keys__  # a channel sets only what it knows


def test_meta_is_stored_under_its_keys_as_they_are():
    meta: InboundMeta = {GROUP_CHAT: "T01:C02", FROM_A_BOT: True, IN_RESPONSE_WITHIN: 4.5,
                         REPLY_ADDRESS: "https://hooks.slack.com/actions/T01/1/x"}
    message = InboundMessage("slack", "ev1", "T01:C02@U03", "T01/U03", text="hi", meta=meta)

    stored = json.loads(json.dumps(message.to_payload()))

    assert stored == {"text": "hi", "meta": {"group_chat": "T01:C02", "bot": True, "in_response_within": 4.5,
                                             "reply_address": "https://hooks.slack.com/actions/T01/1/x"}}
    assert InboundMessage("slack", "ev1", "T01:C02@U03", "T01/U03", text="hi").to_payload() == {"text": "hi"}
    read_back = InboundMessage.from_payload(stored, channel="slack", platform_id="ev1", chat_id="T01:C02@U03",
                                            sender_id="T01/U03")
    assert read_back == message  # what the pipeline reads is what the channel made
