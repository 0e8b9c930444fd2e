"""What Slack sends us (Events API, interactivity, slash commands), in the core's terms.

Each function takes a verified request body and returns an `InboundMessage`, or `Ignored` with the reason (kept
for the log, and for slash commands a line to show the person). Decisions kept here:

- `chat_id` is "<installation>:<channel>": the workspace id (T…), or the org id (E…) for an org-wide Enterprise Grid
  install, then the channel (a D… direct message, or the channel where the bot was mentioned). The prefix is what
  sending needs to find the workspace's bot token when the app is installed in many workspaces; it is kept with
  one workspace too, so a move to distribution keeps every conversation.
- Replies go to the channel itself, not into threads: a mention inside a thread is answered in its channel, and
  the thread's ts is kept in `meta[THREAD_TS]`.
- A member's private place in a channel is "<installation>:<channel>@<user>": replies there are ephemeral messages
  (chat.postEphemeral), seen by that member alone. `/lessonbot` typed in a channel, a button pressed on an
  ephemeral message or on a team's lesson post ("team:…"), and the channel's member_joined_channel /
  member_left_channel events are that member's; `meta[GROUP_CHAT]` names the channel's own chat_id and
  `meta[WORKSPACE]` the workspace, so a team's dialogs know where the member is.
- A person's own address is "<installation>:<user>": chat.postMessage to a user id lands in their DM with the bot.
  /buy and /purchases typed in a channel, and the Home tab, are answered there; `meta[DIRECT_ADDRESS]` on what they
  send in that DM makes the buttons offered there count. A Home tab button is that DM's own message where the tab
  names the DM (app_home_opened's channel, kept in the published view's private_metadata), so a review or a quiz
  it starts goes on where the person types.
- `sender_id` is "<team>/<user>" (the person's own workspace), so admins are written `slack:T01/U02`.
- `platform_id` deduplicates: the Events API's event_id (a retry with X-Slack-Retry-Num carries the same one);
  "action:<channel>:<message ts>:<action ts>" for a button press (one press of one button on one message),
  falling back to its trigger_id; "command:<trigger_id>" for a slash command.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from bot.messages import (
    ACTION_ID,
    ANSWER_COMMAND,
    ANSWER_FORM,
    ANSWER_FORM_OFFERED,
    ANSWERS,
    COMMAND,
    DIRECT_ADDRESS,
    EVENT,
    GROUP_CHAT,
    MEMBERSHIP,
    ORG_WORKSPACE,
    PLATFORM_REPORT,
    PRIVATE,
    QUESTION,
    REPLY_ADDRESS,
    SURFACE,
    THREAD_TS,
    WORKSPACE,
    InboundMessage,
    InboundMeta,
)
from channels.slack.blocks import plain_text
from channels.slack.commands import NAMING_A_MEMBER, SLASH_COMMANDS, TEAM_COMMAND
from channels.webhook import Ignored

CHANNEL = "slack"

# Typed in a channel, these answer in the member's private place there (only they see it): an access code is one
# person's business.
PERSONAL_COMMANDS = frozenset({"/redeem"})
# Typed in a channel, these answer in the member's direct messages with the bot: a checkout link and receipts are
# one person's business too, and should last (an ephemeral message in the channel is gone when Slack reloads).
DIRECT_COMMANDS = frozenset({"/buy", "/purchases"})
# What the channel says itself, in English (the wiring's `words` give each in a person's language, by its key):
# where they typed one of DIRECT_COMMANDS in a channel; a slash command this app does not know ({command}, with the
# commands there are: {known}); a request from a workspace the app is not installed in (any more).
DIRECT_ANSWER_NOTE = "Your answer is on its way to your direct messages with Lessonbot."
UNKNOWN_COMMAND = "Lessonbot does not know {command}. Try {known}."
NOT_INSTALLED = "Lessonbot is not installed in this workspace (any more). Ask an admin to install it again."
NOTES = {"direct_answer": DIRECT_ANSWER_NOTE, "unknown_command": UNKNOWN_COMMAND, "not_installed": NOT_INSTALLED}

# A pressed button whose value starts so belongs to a team's post in a channel: the member answers privately.
TEAM_BUTTON_PREFIX = "team:"
# The channel events that say who is in a channel.
MEMBERSHIP_EVENTS: dict[str, Literal["joined", "left"]] = {"member_joined_channel": "joined",
                                                            "member_left_channel": "left"}

# Message subtypes that are still a person speaking; every other subtype (message_changed, message_deleted,
# channel_join, bot_message, …) is ignored.
SPOKEN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})

# Slack ids (T…, U…, C…, D…, E…) and timestamps ("1596530385.194939"); anything else is not from Slack. The
# lengths keep every platform_id within its 200-character column.
_SLACK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")
_TRIGGER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")  # "398738663015.47445629121.803a0bc8…"


Outcome = InboundMessage | Ignored


def _id(value: object, pattern: re.Pattern[str] = _SLACK_ID) -> str | None:
    return value if isinstance(value, str) and pattern.match(value) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def installation_of(*, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> str:
    """The chat_id prefix: the org for an org-wide install, else the workspace."""
    return (enterprise_id if is_enterprise_install else team_id) or ""


def chat_id_for(installation: str, channel: str) -> str:
    return f"{installation}:{channel}"


def split_chat_id(chat_id: str) -> tuple[str, str]:
    """(installation, channel) out of "T01:C123"; a bare channel id has no installation. A member's private place
    keeps its member: "T01:C123@U9" gives ("T01", "C123@U9") (see `ephemeral_target`)."""
    installation, sep, channel = chat_id.rpartition(":")
    return (installation, channel) if sep else ("", chat_id)


def member_chat_id(installation: str, channel: str, user: str) -> str:
    """A member's private place in a channel: what is sent there is an ephemeral message only they see."""
    return f"{installation}:{channel}@{user}"


def ephemeral_target(channel: str) -> tuple[str, str | None]:
    """(channel, user) of "C123@U9"; (channel, None) for a channel or a DM."""
    base, sep, user = channel.partition("@")
    return (base, user) if sep else (channel, None)


def _team_meta(installation: str, channel: str, user: str, body: dict[str, Any] | None = None) -> InboundMeta:
    """Where a member's private place is: the channel's own chat, the workspace, the member's own address (their
    DM with the bot); only they see its replies, which go through the request's response_url where it has one."""
    meta: InboundMeta = {GROUP_CHAT: chat_id_for(installation, channel), WORKSPACE: installation,
                         DIRECT_ADDRESS: chat_id_for(installation, user), PRIVATE: True,
                         ANSWER_COMMAND: f"{TEAM_COMMAND} answer", ANSWER_FORM_OFFERED: True}
    url = (body or {}).get("response_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 500:
        meta[REPLY_ADDRESS] = url
    return meta


def _org_workspace(body: dict[str, Any], installation: str) -> InboundMeta:
    """For an app installed for a whole Enterprise Grid org (the installation is the org, E…), the org and the
    workspace of it the request came from, as Slack names them together in the request ("E01/T02"): a role scoped
    to that workspace covers the org's teams. Nothing for a workspace's own install."""
    team = _dict(body.get("team"))
    workspace = _id(body.get("team_id")) or _id(team.get("id"))
    org = (_id(body.get("enterprise_id")) or _id(team.get("enterprise_id"))
           or _id(_dict(body.get("enterprise")).get("id")))
    if workspace is None or org is None or org != installation or workspace == installation:
        return {}
    return {ORG_WORKSPACE: f"{org}/{workspace}"}


def _privacy(channel: str, installation: str, user: str) -> InboundMeta:
    """Slack's direct-message channel ids start with D: such a chat is the bot and this person alone. What the bot
    sent to the person's own address ("T01:U02": chat.postMessage to a user id lands in this DM) was offered here."""
    if not channel.startswith("D"):
        return {}
    return {PRIVATE: True, DIRECT_ADDRESS: chat_id_for(installation, user)}


def message_from_event(body: dict[str, Any], *, installation: str, bot_user_id: str | None) -> Outcome:
    """A direct message (message.im) or a mention in a channel (app_mention)."""
    event = _dict(body.get("event"))
    kind = event.get("type")
    event_id = _id(body.get("event_id"))
    if event_id is None:
        return Ignored(f"{kind} event without an event_id to deduplicate on")
    subtype = event.get("subtype") or None
    if subtype is not None and subtype not in SPOKEN_SUBTYPES:
        return Ignored(f"message subtype {subtype!r}: not a person speaking")
    if event.get("bot_id") or event.get("bot_profile"):
        return Ignored(f"{kind} from a bot")
    user, channel = _id(event.get("user")), _id(event.get("channel"))
    if user is None or channel is None:
        return Ignored(f"{kind} without a user or channel")
    if bot_user_id and user == bot_user_id:
        return Ignored(f"{kind} from this app's own bot user")
    if kind == "message" and event.get("channel_type") != "im":
        return Ignored(f"message in a {event.get('channel_type') or 'channel'}: there the bot answers only mentions")
    if kind == "app_mention" and channel.startswith("D"):
        return Ignored("mention inside a direct message: its message event carries it")
    if not _id(installation):
        return Ignored(f"{kind} without a workspace id")
    text = plain_text(str(event.get("text") or ""), bot_user_id=bot_user_id)
    if not text:
        return Ignored(f"{kind} without text")
    team = _id(event.get("user_team")) or _id(event.get("team")) or installation
    meta: InboundMeta = {EVENT: str(kind), **_privacy(channel, installation, user)}
    if _id(event.get("thread_ts")):
        meta[THREAD_TS] = event["thread_ts"]
        if not channel.startswith("D"):  # asked in a thread of a channel: answered there, beside the question
            meta[REPLY_ADDRESS] = THREAD_ADDRESS_PREFIX + event["thread_ts"]
    return InboundMessage(
        channel=CHANNEL,
        platform_id=event_id,
        chat_id=chat_id_for(installation, channel),
        sender_id=f"{team}/{user}",
        text=text,
        meta=meta,
    )


def message_from_action(body: dict[str, Any], *, installation: str) -> Outcome:
    """A pressed button (or a picked menu option): the choice's value, with its label as the text."""
    actions = body.get("actions")
    action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
    option = _dict(action.get("selected_option"))
    value = action.get("value") or option.get("value")
    if not isinstance(value, str) or not value:
        return Ignored(f"block action {action.get('type') or 'of no type'} without a value")
    user = _dict(body.get("user"))
    container = _dict(body.get("container"))
    user_id = _id(user.get("id"))
    channel = _id(container.get("channel_id")) or _id(_dict(body.get("channel")).get("id"))
    if user_id is None:
        return Ignored("block action without a user")
    if channel is None and _dict(body.get("view")).get("type") == "home" and _id(installation):
        return _home_action(body, action, value, installation=installation, user=user_id)
    if channel is None:
        return Ignored("block action outside a conversation (a modal): nowhere to answer")
    if not _id(installation):
        return Ignored("block action without a workspace id")
    message_ts = _id(container.get("message_ts")) or _id(_dict(body.get("message")).get("ts"))
    action_ts, trigger_id = _id(action.get("action_ts")), _id(body.get("trigger_id"), _TRIGGER_ID)
    if message_ts and action_ts:
        platform_id = f"action:{channel}:{message_ts}:{action_ts}"
    elif trigger_id:
        platform_id = f"action:{trigger_id}"
    else:
        return Ignored("block action without an action_ts or trigger_id to deduplicate on")
    label = _dict(action.get("text")).get("text") or _dict(option.get("text")).get("text")
    team = _id(user.get("team_id")) or _id(_dict(body.get("team")).get("id")) or installation
    name = user.get("name") or user.get("username")
    meta: InboundMeta = {EVENT: "block_actions", ACTION_ID: str(action.get("action_id") or "")[:64],
                         **_org_workspace(body, installation)}
    if not channel.startswith("D") and (container.get("is_ephemeral") is True or value.startswith(TEAM_BUTTON_PREFIX)):
        chat_id = member_chat_id(installation, channel, user_id)  # the member answers privately
        meta.update(_team_meta(installation, channel, user_id, body))
    else:
        chat_id = chat_id_for(installation, channel)
        meta.update(_privacy(channel, installation, user_id))
    return InboundMessage(
        channel=CHANNEL,
        platform_id=platform_id,
        chat_id=chat_id,
        sender_id=f"{team}/{user_id}",
        text=label if isinstance(label, str) and label else value,
        choice=value,
        sender_name=name if isinstance(name, str) and name else None,
        meta=meta,
    )


def message_from_command(body: dict[str, Any], *, installation: str) -> Outcome:
    """/lesson, /quiz, /progress, /courses, /buy, /purchases, /redeem as the core's commands; /ask's question as free
    text."""
    command = body.get("command")
    if command not in SLASH_COMMANDS and command != TEAM_COMMAND:
        return Ignored(f"unknown slash command {command!r}", answer=filled(UNKNOWN_COMMAND, unknown_command(body)))
    trigger_id = _id(body.get("trigger_id"), _TRIGGER_ID)
    user, channel = _id(body.get("user_id")), _id(body.get("channel_id"))
    if trigger_id is None or user is None or channel is None or not _id(installation):
        return Ignored(f"{command} without a trigger_id, user, channel or workspace")
    typed = str(body.get("text") or "")
    words = plain_text(typed)
    if command == TEAM_COMMAND:
        if " ".join(words.lower().split()[:2]) in NAMING_A_MEMBER:
            words = plain_text(typed, member_ids=True)
        return _team_command(body, words, installation=installation, user=user, channel=channel, trigger_id=trigger_id)
    # /ask's words are a question whatever they say ("/ask next" is no /next); none at all is asked for, in the
    # learner's language, where only they see it
    text = words if command == "/ask" else f"{SLASH_COMMANDS[command]} {words}".strip()
    team = _id(body.get("team_id")) or installation
    name = body.get("user_name")
    meta: InboundMeta = {EVENT: "command", COMMAND: command, **_privacy(channel, installation, user),
                         **_org_workspace(body, installation)}
    if command == "/ask":
        meta[QUESTION] = True
    chat_id = chat_id_for(installation, channel)
    if answered_in_direct_messages(body):
        chat_id = chat_id_for(installation, user)  # chat.postMessage to a user id lands in their DM with the bot
        meta.update({PRIVATE: True, DIRECT_ADDRESS: chat_id})
    elif (command in PERSONAL_COMMANDS or command == "/ask" and not words) and not channel.startswith("D"):
        chat_id = member_chat_id(installation, channel, user)
        meta.update(_team_meta(installation, channel, user, body))
    return InboundMessage(
        channel=CHANNEL,
        platform_id=f"command:{trigger_id}",
        chat_id=chat_id,
        sender_id=f"{team}/{user}",
        text=text,
        sender_name=name if isinstance(name, str) and name else None,
        meta=meta,
    )


def unknown_command(body: dict[str, Any]) -> dict[str, str]:
    """The values of UNKNOWN_COMMAND for a slash command this app does not know: the command, the ones it knows."""
    command = body.get("command")
    return {"command": command if isinstance(command, str) and command else "/…",
            "known": ", ".join([*SLASH_COMMANDS, TEAM_COMMAND])}


def filled(words: str, values: dict[str, str]) -> str:
    """`words` with each "{name}" in it replaced by its value."""
    for name, value in values.items():
        words = words.replace("{" + name + "}", value)
    return words


def person_of(body: dict[str, Any], *, installation: str) -> str | None:
    """The sender id ("<team>/<user>") of the person who typed a slash command or used a button or a modal, as
    `message_from_command` and `message_from_action` name them; None when the request names nobody."""
    user = _dict(body.get("user"))
    user_id = _id(body.get("user_id")) or _id(user.get("id"))
    team = (_id(body.get("team_id")) or _id(user.get("team_id")) or _id(_dict(body.get("team")).get("id"))
            or _id(installation))
    return f"{team}/{user_id}" if user_id and team else None


def answered_in_direct_messages(body: dict[str, Any]) -> bool:
    """Whether a slash command is one of DIRECT_COMMANDS typed outside a DM: recorded as the person's own, in their
    DM with the bot (their own address, "T01:U02", whose offers count when pressed in that DM)."""
    channel = _id(body.get("channel_id"))
    return body.get("command") in DIRECT_COMMANDS and channel is not None and not channel.startswith("D")


def _team_command(
    body: dict[str, Any], words: str, *, installation: str, user: str, channel: str, trigger_id: str
) -> InboundMessage:
    """/lessonbot WORDS as the command /WORDS ("/lessonbot" alone is /team; "/lessonbot answer WORDS" is WORDS typed
    to the question in progress): in a channel, from the member's private place there, so only they see the
    answer."""
    team = _id(body.get("team_id")) or installation
    name = body.get("user_name")
    private = channel.startswith("D")
    first, _, rest = words.partition(" ")
    # "/lessonbot answer WORDS": typed words for the question in progress (a quiz question without buttons).
    text = rest.strip() if first.lower() == "answer" and rest.strip() else "/" + (words.lstrip("/") or "team")
    return InboundMessage(
        channel=CHANNEL,
        platform_id=f"command:{trigger_id}",
        chat_id=chat_id_for(installation, channel) if private else member_chat_id(installation, channel, user),
        sender_id=f"{team}/{user}",
        text=text,
        sender_name=name if isinstance(name, str) and name else None,
        meta={EVENT: "command", COMMAND: TEAM_COMMAND, **_org_workspace(body, installation),
              **(_privacy(channel, installation, user) if private else _team_meta(installation, channel, user, body))},
    )


def membership_change(body: dict[str, Any], *, installation: str, bot_user_id: str | None) -> Outcome:
    """member_joined_channel / member_left_channel: someone came into or left a channel, for its team (if any)."""
    event = _dict(body.get("event"))
    kind = MEMBERSHIP_EVENTS.get(str(event.get("type")))
    event_id, user, channel = _id(body.get("event_id")), _id(event.get("user")), _id(event.get("channel"))
    if kind is None or event_id is None or user is None or channel is None or not _id(installation):
        return Ignored(f"{event.get('type')} without an event id, user, channel or workspace")
    if user == bot_user_id:
        return Ignored(f"{event.get('type')} of this app's own bot user")
    if channel.startswith("D"):
        return Ignored(f"{event.get('type')} in a direct message")
    team = _id(event.get("team")) or installation
    return InboundMessage(
        channel=CHANNEL,
        platform_id=event_id,
        chat_id=member_chat_id(installation, channel, user),
        sender_id=f"{team}/{user}",
        # Slack reports it; the member wrote nothing (it opens no window, and is heard even after they opted out).
        meta={EVENT: str(event["type"]), MEMBERSHIP: kind, PLATFORM_REPORT: True,
              **_team_meta(installation, channel, user)},
    )


# The App Home tab -----------------------------------------------------------------------------------------------------

HOME_ADDRESS_PREFIX = "home:"  # a reply address "home:U02": the reply is published as that person's Home tab
THREAD_ADDRESS_PREFIX = "thread:"  # a reply address "thread:1595926000.000100": posted in that thread of the channel


def home_address(user: str, direct: str | None) -> str:
    """The reply address of a person's Home tab: "home:U02", with their DM with the app where Slack named it
    ("home:U02:D0DM1"), which the published tab keeps (its private_metadata) for its buttons (`_home_action`)."""
    return HOME_ADDRESS_PREFIX + user + (f":{direct}" if direct else "")


def home_target(address: str) -> tuple[str, str | None]:
    """(user, their DM with the app or None) of a Home tab's reply address, after HOME_ADDRESS_PREFIX."""
    user, _sep, direct = address.partition(":")
    return user, _direct_channel(direct)


def _direct_channel(value: object) -> str | None:
    """A DM channel id (D…), or None."""
    channel = _id(value)
    return channel if channel is not None and channel.startswith("D") else None


def home_opened(body: dict[str, Any], *, installation: str) -> Outcome:
    """app_home_opened on the Home tab: the person's home, worked out by the dialogs (/home) and published as the
    tab (views.publish) through the reply address "home:<user>[:<their DM with the app>]"."""
    event = _dict(body.get("event"))
    event_id, user = _id(body.get("event_id")), _id(event.get("user"))
    if event.get("tab") not in (None, "home"):
        return Ignored(f"app_home_opened on the {event.get('tab')} tab")
    if event_id is None or user is None or not _id(installation):
        return Ignored("app_home_opened without an event id, user or workspace")
    team = _id(_dict(event.get("view")).get("team_id")) or installation
    return InboundMessage(
        channel=CHANNEL,
        platform_id=event_id,
        chat_id=chat_id_for(installation, user),
        sender_id=f"{team}/{user}",
        text="/home",
        # Slack reports a tab opened; the person wrote nothing.
        meta={EVENT: "app_home_opened", PLATFORM_REPORT: True, PRIVATE: True,
              DIRECT_ADDRESS: chat_id_for(installation, user),
              REPLY_ADDRESS: home_address(user, _direct_channel(event.get("channel")))},
    )


def _home_action(body: dict[str, Any], action: dict[str, Any], value: str, *, installation: str,
                 user: str) -> Outcome:
    """A button on the Home tab answers in the person's DM with the bot: as that DM's own message where the tab
    names it (its private_metadata, from app_home_opened), so what it starts (a review, a quiz) goes on there where
    they type; else at their own address ("T01:U02", which lands in that DM)."""
    view = _dict(body.get("view"))
    action_ts, view_id = _id(action.get("action_ts")), _id(view.get("id"))
    if action_ts is None:
        return Ignored("block action on the home tab without an action_ts to deduplicate on")
    label = _dict(action.get("text")).get("text")
    team = _id(_dict(body.get("user")).get("team_id")) or installation
    direct = _direct_channel(view.get("private_metadata"))
    return InboundMessage(
        channel=CHANNEL,
        platform_id=f"action:home:{view_id or user}:{action_ts}",
        chat_id=chat_id_for(installation, direct or user),
        sender_id=f"{team}/{user}",
        text=label if isinstance(label, str) and label else value,
        choice=value,
        meta={EVENT: "block_actions", SURFACE: "home", PRIVATE: True,
              DIRECT_ADDRESS: chat_id_for(installation, user)},
    )


# Typed answers through a modal ---------------------------------------------------------------------------------------

ANSWER_FORM_CALLBACK = "lessonbot-answer"  # the modal's callback_id: its view_submission is a typed answer
ANSWER_BLOCK, ANSWER_INPUT = "answer", "words"
MODAL_TITLE_LIMIT = 24  # Slack's limit for a modal's title and its submit button
ANSWER_LIMIT = 3000
ANSWERED_LIMIT = 200  # the length of the question a form names (a button's value is at most 2,000 characters)


def answer_form(body: dict[str, Any], *, installation: str) -> dict[str, Any] | None:
    """The modal to open for a pressed "Type an answer" button (a value starting with ANSWER_FORM) in a member's
    private place in a channel, or None for any other press. Its private_metadata names that place, the question it
    was opened for (the button's value after ANSWER_FORM) and the press's response_url, so the submitted words
    answer that question there, privately, as `/lessonbot answer WORDS` would, and no other the member has moved on
    to since (`meta[ANSWERS]`)."""
    actions = body.get("actions")
    action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
    value = action.get("value")
    if not isinstance(value, str) or not value.startswith(ANSWER_FORM):
        return None
    user = _id(_dict(body.get("user")).get("id"))
    channel = _id(_dict(body.get("container")).get("channel_id")) or _id(_dict(body.get("channel")).get("id"))
    if user is None or channel is None or channel.startswith("D") or not _id(installation):
        return None
    label = str(_dict(action.get("text")).get("text") or "Your answer")
    title = label if len(label) <= MODAL_TITLE_LIMIT else label[: MODAL_TITLE_LIMIT - 1] + "…"
    where = {"chat": member_chat_id(installation, channel, user),
             "question": value.removeprefix(ANSWER_FORM)[:ANSWERED_LIMIT]}
    url = body.get("response_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and len(url) <= 500:
        where["reply"] = url
    return {
        "type": "modal",
        "callback_id": ANSWER_FORM_CALLBACK,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "OK"},
        "private_metadata": json.dumps(where),
        "blocks": [{
            "type": "input", "block_id": ANSWER_BLOCK, "label": {"type": "plain_text", "text": title},
            "element": {"type": "plain_text_input", "action_id": ANSWER_INPUT, "max_length": ANSWER_LIMIT},
        }],
    }


def message_from_view(body: dict[str, Any], *, installation: str) -> Outcome:
    """The answer-form modal submitted: its words, from the member's private place named in the modal's metadata
    (checked to be the submitter's own), answered through the response_url of the press that opened it."""
    view = _dict(body.get("view"))
    user = _dict(body.get("user"))
    user_id, view_id = _id(user.get("id")), _id(view.get("id"))
    if user_id is None or view_id is None or not _id(installation):
        return Ignored("view_submission without a user, a view id or a workspace")
    try:
        where = _dict(json.loads(str(view.get("private_metadata") or "{}")))
    except ValueError:
        return Ignored("view_submission whose private_metadata is not ours")
    chat = where.get("chat")
    place_installation, place = split_chat_id(chat) if isinstance(chat, str) else ("", "")
    channel, member = ephemeral_target(place)
    if place_installation != installation or member != user_id or _id(channel) is None:
        return Ignored("view_submission for a place that is not the submitter's own")
    words = _dict(_dict(_dict(view.get("state")).get("values")).get(ANSWER_BLOCK)).get(ANSWER_INPUT)
    text = str(_dict(words).get("value") or "").strip()[:ANSWER_LIMIT]  # a plain_text_input's value: as typed
    if not text:
        return Ignored("view_submission without words")
    meta = _team_meta(installation, channel, user_id, {"response_url": where.get("reply")})
    question = where.get("question")
    if isinstance(question, str) and 0 < len(question) <= ANSWERED_LIMIT:
        meta[ANSWERS] = question  # the one question these words answer
    team = _id(user.get("team_id")) or _id(_dict(body.get("team")).get("id")) or installation
    name = user.get("name") or user.get("username")
    return InboundMessage(
        channel=CHANNEL,
        platform_id=f"view:{view_id}",  # a modal is submitted once
        chat_id=str(chat),
        sender_id=f"{team}/{user_id}",
        text=text,
        sender_name=name if isinstance(name, str) and name else None,
        meta={EVENT: "view_submission", **meta},
    )
