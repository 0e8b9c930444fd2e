"""A team learning in a Slack channel, through the real app: slack-bolt and slack_sdk against the Slack stand-in, driven
by Slack's published payloads (tests/fixtures/slack), on SQLite and PostgreSQL.

The story: a team admin sets up a channel course (a non-admin's attempt is refused and audited); the channel's members
are read (paged, guests and bots left out); the lesson is posted at the team's hour in its zone, on both sides of a
daylight-saving change, its parts in the post's thread; three members take its quiz privately (ephemeral messages);
the leaderboard shows the right numbers; a member joins mid-course and leaves; uninstalling stops every send.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta, timezone
from time import perf_counter as time_now
from typing import Any
from urllib.parse import parse_qsl, urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import func, select

from authoring.format import load_course
from authoring.importer import import_course
from bot.core import Lessonbot
from dialogs.roles import ADMIN as ADMIN_ROLE
from dialogs.roles import Grant, Scope, grant_role
from dialogs.teams import announce
from scheduler.context import JobContext
from scheduler.planner import plan_lessons
from scheduler.teams import post_team_lessons, sync_team_members
from standins.slack import Fault, SlackStandIn, dm_event, form_body, load_fixture, signed
from storage.courses import Course, Enrollment, LessonProgress, Question, QuestionCard, publish
from storage.learners import ACTIVE, PAUSED, STOPPED, Learner, zone_for
from storage.models import AdminAuditEntry, ChannelIdentity, Conversation, OutboxMessage, User
from storage.models import InboundMessage as InboundRow
from storage.outbox import OutboxStatus
from storage.scheduling import NudgeLog
from storage.teams import MEMBER_ACTIVE, MEMBER_EXCLUDED, MEMBER_LEFT, Team, TeamMember, memberships_of
from tests.dialogs.learning_support import SAMPLE
from tests.scheduler.support import HandClock, add_learner, sample_course, took_lessons
from tests.support import running

UTC = timezone.utc
CHANNEL = "C111"
ADMIN, BEA, CAL, DAN, GUEST, ROBOT, DEV = "UADMIN", "UBEA", "UCAL", "UDAN", "UGUEST", "UROBOT", "UDEV"
NAMES = {ADMIN: "ann", BEA: "bea", CAL: "cal", DAN: "dan", GUEST: "gus", ROBOT: "robot", DEV: "dev"}
SET_UP = "team set spot-phishing at 09:00 on weekdays in America/New_York"
_ids = itertools.count(1)


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as server:
        server.add_member(CHANNEL, ADMIN, name=NAMES[ADMIN], admin=True)
        server.add_member(CHANNEL, BEA, name=NAMES[BEA])
        server.add_member(CHANNEL, CAL, name=NAMES[CAL])
        server.add_member(CHANNEL, DAN, name=NAMES[DAN])
        server.add_member(CHANNEL, GUEST, name=NAMES[GUEST], guest=True)
        server.add_member(CHANNEL, ROBOT, name=NAMES[ROBOT], bot=True)
        server.add_member("CELSEWHERE", DEV, name=NAMES[DEV])  # in the workspace, not (yet) in the team's channel
        yield server


# What Slack sends, from its published payloads ------------------------------------------------------------------------


async def post(client: httpx.AsyncClient, raw: bytes) -> httpx.Response:
    content_type = "application/json" if raw.lstrip().startswith(b"{") else "application/x-www-form-urlencoded"
    response = await client.post("/slack/events", content=raw, headers=signed(raw, content_type=content_type))
    assert response.status_code == 200, response.text
    return response


async def slash(client: httpx.AsyncClient, fixtures_dir, user: str, text: str, *,
                standin: SlackStandIn | None = None, team: str = "T111", org_wide: bool = False) -> httpx.Response:
    """/lessonbot TEXT typed by `user` in the team's channel (the bolt-python slash command body, re-addressed; its
    response_url at the stand-in, or Slack's own, unreachable here, when none is given; `org_wide`: the app installed
    for the whole Enterprise Grid org E111, the workspace T111 one of its)."""
    fields = dict(parse_qsl(load_fixture(fixtures_dir, "bolt-python/slash_command.form.txt")))
    fields.update(command="/lessonbot", text=text, user_id=user, user_name=NAMES.get(user, user.lower()),
                  channel_id=CHANNEL, trigger_id=f"111.{next(_ids)}.xxx", team_id=team)
    if standin is not None:
        fields["response_url"] = standin.response_url(CHANNEL, user)
    else:
        fields.pop("response_url")
    if org_wide:
        fields["is_enterprise_install"] = "true"
    else:
        fields.pop("enterprise_id")  # a workspace install
    return await post(client, urlencode(fields).encode())


async def press(client: httpx.AsyncClient, fixtures_dir, user: str, value: str, *, ephemeral: bool,
                message_ts: str = "111.222", standin: SlackStandIn | None = None, channel: str = CHANNEL) -> None:
    """A button pressed in the channel, or a DM (the bolt-python block_actions payload, re-addressed)."""
    payload: dict[str, Any] = load_fixture(fixtures_dir, "bolt-python/interactive.block_actions.json")
    payload["channel"]["id"] = payload["container"]["channel_id"] = channel
    if standin is not None:
        payload["response_url"] = standin.response_url(channel, user)
    else:
        payload.pop("response_url")
    payload["user"] = {"id": user, "username": NAMES[user], "name": NAMES[user], "team_id": "T111"}
    payload["team"].pop("enterprise_id")
    payload["container"].update(is_ephemeral=ephemeral, message_ts=message_ts)
    payload["actions"][0].update(value=value, action_ts=f"1596530385.{next(_ids):06d}")
    payload["trigger_id"] = f"111.{next(_ids)}.press"
    await post(client, form_body(payload))


async def submit(client: httpx.AsyncClient, fixtures_dir, user: str, view: dict[str, Any], words: str) -> None:
    """A modal the app opened, submitted with `words` typed into its one input (the bolt-python view_submission
    payload, re-addressed; the view as Slack keeps it, with what was typed in its state)."""
    payload: dict[str, Any] = load_fixture(fixtures_dir, "bolt-python/interactive.view_submission.json")
    payload["user"] = {"id": user, "username": NAMES[user], "name": NAMES[user], "team_id": "T111"}
    payload["team"].pop("enterprise_id")
    [block] = view["blocks"]
    state = {block["block_id"]: {block["element"]["action_id"]: {"type": "plain_text_input", "value": words}}}
    payload["view"] = {**payload["view"], **view, "state": {"values": state}}
    await post(client, form_body(payload))


async def membership(client: httpx.AsyncClient, fixtures_dir, kind: str, user: str) -> None:
    """member_joined_channel / member_left_channel (the java-slack-sdk payload shape, filled in)."""
    name = "MemberJoinedChannelPayload.json" if kind == "joined" else "MemberLeftChannelPayload.json"
    payload: dict[str, Any] = load_fixture(fixtures_dir, f"java-slack-sdk-schema-skeletons/{name}")
    payload.update(team_id="T111", api_app_id="A111", event_id=f"Ev{next(_ids):08d}", enterprise_id=None)
    payload["authorizations"][0].update(team_id="T111", enterprise_id=None, user_id="W111", is_bot=True)
    payload["event"].update(user=user, channel=CHANNEL, channel_type="C", team="T111")
    payload["event"].pop("enterprise", None)
    await post(client, json.dumps(payload).encode())


# Reading back what Slack was asked to show ----------------------------------------------------------------------------


def buttons(call) -> list[tuple[str, str]]:
    """(label, value) of a message's buttons."""
    blocks = call.params.get("blocks") or []
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    return [(element["text"]["text"], element["value"])
            for block in blocks if block["type"] == "actions" for element in block["elements"]]


def private_texts(standin: SlackStandIn, user: str) -> list[str]:
    return [call.params["text"] for call in standin.ephemerals(CHANNEL, user)]


def context(lessonbot: Lessonbot, clock: HandClock) -> JobContext:
    return JobContext(db=lessonbot.db, now=clock.now, notify=lessonbot.dispatcher.notify,
                      member_lists={"slack": lessonbot.channels["slack"]})


async def audit(lessonbot: Lessonbot) -> list[tuple[str, str, str]]:
    async with lessonbot.db.sessions() as session:
        rows = await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))
        return [(row.identity, row.command, row.outcome) for row in rows]


async def members(lessonbot: Lessonbot) -> dict[str, str]:
    async with lessonbot.db.sessions() as session:
        rows = await session.scalars(select(TeamMember))
        return {row.member.partition("/")[2]: row.status for row in rows}


async def take_quiz(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot, user: str, *,
                    right: bool, typing: str = "form") -> None:
    """Press the lesson post's button, then answer every question privately, all right or all wrong; a question
    that wants words through its "Type an answer" modal (`typing="form"`) or `/lessonbot answer` ("command")."""
    post_call = standin.top_level(CHANNEL)[-1]
    [(_label, take)] = buttons(post_call)
    await press(client, fixtures_dir, user, take, ephemeral=False, message_ts=post_call.answer["ts"],
                standin=standin)
    await lessonbot.settle()
    for _ in range(10):
        question_call = standin.ephemerals(CHANNEL, user)[-1]
        choices = buttons(question_call)
        words = "smishing" if right else "vishing"
        if not any(value.startswith(("quiz:", "form:")) for _label, value in choices):
            assert "(Answer with /lessonbot answer" not in question_call.params["text"]
            return  # the quiz is over
        if choices[0][1].startswith("form:") and typing == "command":
            assert "(Answer with /lessonbot answer followed by your answer.)" in question_call.params["text"]
            await slash(client, fixtures_dir, user, f"answer {words}", standin=standin)
        elif choices[0][1].startswith("form:"):
            assert choices[0][0] in ("✍️ Type an answer", "✍️ Escribir respuesta")  # (in a Spanish course)
            opened = len(standin.opened_views())
            await press(client, fixtures_dir, user, choices[0][1], ephemeral=True, message_ts=f"222.{next(_ids)}",
                        standin=standin)  # the modal opens while Slack waits for the acknowledgement
            assert len(standin.opened_views()) == opened + 1
            await submit(client, fixtures_dir, user, standin.opened_views()[-1], words)
        else:
            question_id = int(choices[0][1].split(":")[1])
            async with lessonbot.db.sessions() as session:
                question = await session.get(Question, question_id)
            correct = (str(question.correct_choice) if question.kind == "choice"
                       else "true" if question.is_true else "false")
            chosen = next(value for _label, value in choices if (value.split(":")[2] == correct) == right)
            await press(client, fixtures_dir, user, chosen, ephemeral=True, message_ts=f"222.{next(_ids)}",
                        standin=standin)
        await lessonbot.settle()
    raise AssertionError(f"the quiz did not end: {private_texts(standin, user)}")


# The story ----------------------------------------------------------------------------------------------------------


async def test_a_team_takes_a_course_together_in_a_channel(slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))  # a Friday; New York is on EST (UTC-5)
        jobs = context(lessonbot, clock)

        # A member who is no admin cannot set the course; the attempt is audited.
        await slash(client, fixtures_dir, BEA, SET_UP, standin=standin)
        await lessonbot.settle()
        assert "Only a team admin" in private_texts(standin, BEA)[-1]
        assert standin.posted(CHANNEL) == []
        # A workspace admin (users.info says so) can.
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1].startswith("Done. This channel takes")
        assert "What a phishing message wants" not in standin.texts(CHANNEL)[-1]
        assert "Spot the phish, five minutes a day" in standin.texts(CHANNEL)[-1]  # the announcement, for everyone
        assert await audit(lessonbot) == [("slack:T111/UBEA", "team set", "denied"),
                                          ("slack:T111/UADMIN", "team set", "ok")]

        # The channel's members are read, two at a time through every page: guests and bots are left out.
        lessonbot.channels["slack"].members_page = 2
        lessonbot.channels["slack"].profiles_per_minute = 60_000
        assert await sync_team_members(jobs) == 1
        assert await members(lessonbot) == {ADMIN: MEMBER_ACTIVE, BEA: MEMBER_ACTIVE, CAL: MEMBER_ACTIVE,
                                            DAN: MEMBER_ACTIVE, GUEST: MEMBER_EXCLUDED, ROBOT: MEMBER_EXCLUDED}
        assert len([c for c in standin.calls if c.method == "conversations.members"]) == 3

        # Friday 09:00 in New York is 14:00 UTC: nothing before, the lesson once after.
        await post_team_lessons(jobs)  # the first run only starts the cursor
        clock.at(datetime(2027, 3, 12, 13, 59, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 0
        clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        assert await post_team_lessons(jobs) == 0
        await lessonbot.settle()
        # The lesson's post in the channel, with its button; its three parts in the post's thread, in order.
        lesson_post = standin.top_level(CHANNEL)[-1]
        assert lesson_post.params["text"] == "📘 Lesson 1 of 5: What a phishing message wants · about 3 min"
        assert [label for label, _value in buttons(lesson_post)] == ["Quiz me (only you see it)"]
        parts = [call.params["text"] for call in standin.thread(CHANNEL, lesson_post.answer["ts"])]
        assert len(parts) == 3 and standin.posted(CHANNEL)[-3:] == standin.thread(CHANNEL, lesson_post.answer["ts"])
        assert parts[0].startswith("A phishing message pretends") and parts[2].startswith("So the first habit")

        # Three members take the quiz privately: nobody else sees their answers.
        public_before = len(standin.posted(CHANNEL))
        await take_quiz(client, fixtures_dir, standin, lessonbot, ADMIN, right=True)
        await take_quiz(client, fixtures_dir, standin, lessonbot, BEA, right=False, typing="command")
        await take_quiz(client, fixtures_dir, standin, lessonbot, CAL, right=True)
        assert len(standin.posted(CHANNEL)) == public_before
        # … answered through each press's response_url: no Web API tier counts them.
        assert {c.method for c in standin.ephemerals(CHANNEL, BEA)} == {"response_url"}
        assert "Quiz: 3 of 3 right." in private_texts(standin, ADMIN)[-1]
        done = standin.ephemerals(CHANNEL, ADMIN)[-1]
        assert done.params["text"].endswith("The team's next lesson will be posted in the channel.")
        assert buttons(done) == []  # the team moves on together: no "more now" in a member's private place
        assert "Quiz: 0 of 3 right." in private_texts(standin, BEA)[-1]

        # The leaderboard, privately for whoever asks: points, lessons, accuracy, streak.
        await slash(client, fixtures_dir, BEA, "leaderboard", standin=standin)
        await lessonbot.settle()
        board = private_texts(standin, BEA)[-1].splitlines()
        assert board[0] == "🏆 Leaderboard: Spot the phish, five minutes a day"
        assert board[1:] == ["1. ann: 25 points · 1 lesson · 100 % right · 🔥 1",
                             "2. Cal: 25 points · 1 lesson · 100 % right · 🔥 1",
                             "3. bea: 10 points · 1 lesson · 0 % right · 🔥 1",
                             "4. Dan: 0 points · 0 lessons · – right · 🔥 0"]

        # Monday after the clocks went forward: 09:00 in New York is now 13:00 UTC.
        clock.at(datetime(2027, 3, 15, 12, 59, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 0
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))
        assert (await _posted(jobs, lessonbot, standin)).startswith("📘 Lesson 2 of 5")

        # The admin's digest of the week before, in their direct chat: completion, accuracy, the hardest, who is behind.
        [digest] = standin.posted(ADMIN)  # chat.postMessage to a user id: their DM with the bot
        async with lessonbot.db.sessions() as session:  # theirs, before they write there (their erasure takes it)
            direct = await session.scalar(select(Conversation).where(Conversation.chat_id == f"T111:{ADMIN}"))
            admin = await session.scalar(select(ChannelIdentity.user_id)
                                         .where(ChannelIdentity.external_id == f"T111/{ADMIN}"))
        assert direct.user_id == admin
        lines = digest.params["text"].splitlines()
        assert lines[0] == "📊 This week in “Spot the phish, five minutes a day”: 4 members."
        assert lines[1] == "📘 What a phishing message wants: 3 of 4 done · 67 % right"
        assert lines[2] == "Hardest questions:" and len(lines[3:6]) == 3 and all("67 %" in line for line in lines[3:6])
        assert lines[6] == "Behind: Dan (1 member)."
        [(label, nudge)] = buttons(digest)
        assert label == "Nudge the 1 behind"
        # Someone else cannot press it (it was never offered to them); the admin can, once per member.
        await press(client, fixtures_dir, BEA, nudge, ephemeral=False, standin=standin, channel="DBEA")
        await press(client, fixtures_dir, ADMIN, nudge, ephemeral=False, standin=standin, channel="DADMIN")
        await press(client, fixtures_dir, ADMIN, nudge, ephemeral=False, standin=standin, channel="DADMIN")
        await lessonbot.settle()
        assert standin.texts("DBEA") == ["That button isn't available."]
        assert standin.texts("DADMIN") == ["Nudged 1 member, privately.", "Nudged 0 members, privately."]
        [reminder] = standin.texts(DAN)
        assert "channel" in reminder
        async with lessonbot.db.sessions() as session:
            assert [(row.kind, row.outcome) for row in await session.scalars(select(NudgeLog))] == [("team", "queued")]

        # Someone joins mid-course: enrolled and welcomed, privately; a guest joining is left out; leaving pauses.
        standin.add_member(CHANNEL, DEV, name="dev")
        await membership(client, fixtures_dir, "joined", DEV)
        await membership(client, fixtures_dir, "joined", GUEST)
        await lessonbot.settle()
        assert private_texts(standin, DEV)[-1].startswith("Welcome! This channel takes")
        await take_quiz(client, fixtures_dir, standin, lessonbot, DEV, right=True)
        await membership(client, fixtures_dir, "left", DEV)
        await lessonbot.settle()
        assert (await members(lessonbot))[DEV] == MEMBER_LEFT
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED
        await slash(client, fixtures_dir, GUEST, "team join", standin=standin)  # a guest cannot opt themselves in
        await lessonbot.settle()
        assert private_texts(standin, GUEST)[-1].startswith("The team course is for the workspace's members")
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED


async def test_a_member_opts_out_and_hides_from_the_leaderboard(slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        await slash(client, fixtures_dir, BEA, "team hide", standin=standin)
        await slash(client, fixtures_dir, CAL, "team leave", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1] == "You are not in this channel's team course."
        assert private_texts(standin, CAL)[-1].startswith("You opted out")
        await slash(client, fixtures_dir, ADMIN, "team hide", standin=standin)
        await slash(client, fixtures_dir, ADMIN, "leaderboard", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1].splitlines()[1].startswith("Nobody has points yet")
        # Turning the leaderboard off is an admin's; a member is refused, and audited.
        await slash(client, fixtures_dir, CAL, "team leaderboard off", standin=standin)
        await lessonbot.settle()
        await slash(client, fixtures_dir, ADMIN, "team leaderboard off", standin=standin)
        await lessonbot.settle()  # each member's private place is its own conversation: no order between them
        await slash(client, fixtures_dir, BEA, "leaderboard", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1] == "This team's leaderboard is turned off."
        assert [entry[1:] for entry in await audit(lessonbot)][-2:] == [("team leaderboard", "denied"),
                                                                        ("team leaderboard", "ok")]
        # An admin turns the lessons off: nothing is posted at the team's hour; on again, the lesson comes.
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1].startswith("Team lessons are off in this channel.")
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        await post_team_lessons(context(lessonbot, clock))
        clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(context(lessonbot, clock)) == 0
        await slash(client, fixtures_dir, ADMIN, "team on", standin=standin)
        await lessonbot.settle()
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))
        assert await post_team_lessons(context(lessonbot, clock)) == 1
        await lessonbot.settle()
        assert standin.top_level(CHANNEL)[-1].params["text"].startswith("📘 Lesson 1 of 5")


async def test_a_429_on_a_private_message_is_honoured(slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        standin.fail("chat.postEphemeral", Fault.rate_limited(retry_after=1))
        await slash(client, fixtures_dir, ADMIN, SET_UP)
        await standin.wait_for(lambda: standin.ephemerals(CHANNEL, ADMIN))
        attempts = [c for c in standin.calls if c.method == "chat.postEphemeral"]
        assert [c.outcome for c in attempts] == ["429 ratelimited", "ok"]
        assert attempts[1].at - attempts[0].at >= 1.0


async def test_a_modal_submitted_after_its_question_moved_on_is_refused_not_graded_against_the_next(
        slack_settings, standin, fixtures_dir):
    """Bea opens "Type an answer" for the quiz's first question, answers it another way (/lessonbot answer), and
    submits the modal when the second question is asked: the modal names the question it was opened for, so its
    words are refused, politely, not graded as the second question's answer; the second's own modal still answers
    it."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        first_modal = await _bea_opens_the_first_typed_questions_form(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, BEA, "answer smishing", standin=standin)  # the first, answered otherwise
        await lessonbot.settle()
        assert "Question 2 of 2" in private_texts(standin, BEA)[-1]

        await submit(client, fixtures_dir, BEA, first_modal, "secure-check.net")  # late: the first's modal
        await lessonbot.settle()
        refusal, again = private_texts(standin, BEA)[-2:]
        assert refusal.startswith("That answer was for a question I am no longer asking"), refusal
        assert "Question 2 of 2" in again
        async with lessonbot.db.sessions() as session:
            bea = await session.scalar(select(ChannelIdentity.user_id)
                                       .where(ChannelIdentity.external_id == f"T111/{BEA}"))
            assert await session.scalar(select(func.count()).select_from(QuestionCard)
                                        .where(QuestionCard.user_id == bea)) == 1

        [(_label, form)] = buttons(standin.ephemerals(CHANNEL, BEA)[-1])
        await press(client, fixtures_dir, BEA, form, ephemeral=True, message_ts=f"222.{next(_ids)}", standin=standin)
        await submit(client, fixtures_dir, BEA, standin.opened_views()[-1], "secure-check.net")
        await lessonbot.settle()
        assert any(text.startswith("✅ Right!") for text in private_texts(standin, BEA)[-2:])
        assert "Quiz: 2 of 2 right." in private_texts(standin, BEA)[-1]


async def test_a_modal_submitted_while_another_flow_is_open_answers_the_question_it_was_offered_for(
        slack_settings, standin, fixtures_dir):
    """Bea opens "Type an answer" for the quiz's first question, then types /lessonbot settings (which, new as she
    is, begins her onboarding) before she submits the modal: the question is still the one offered to her, so her
    words answer it (graded, counted once), not refused as no longer asked, and the quiz goes on to its end, as a
    pressed quiz button does."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        modal = await _bea_opens_the_first_typed_questions_form(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, BEA, "settings", standin=standin)  # another flow, on top of the quiz
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1].endswith("Is that OK with you?")  # (new: /settings onboards her)

        await submit(client, fixtures_dir, BEA, modal, "smishing")
        await lessonbot.settle()
        texts = private_texts(standin, BEA)
        assert not any(text.startswith("That answer was for a question") for text in texts), texts
        assert any(text.startswith("✅ Right!") for text in texts[-3:]), texts
        assert "Question 2 of 2" in "\n".join(texts[-3:]), texts
        async with lessonbot.db.sessions() as session:
            bea = await session.scalar(select(ChannelIdentity.user_id)
                                       .where(ChannelIdentity.external_id == f"T111/{BEA}"))
            assert await session.scalar(select(func.count()).select_from(QuestionCard)
                                        .where(QuestionCard.user_id == bea)) == 1
        [(_label, form)] = buttons(standin.ephemerals(CHANNEL, BEA)[-1])  # the second, as ever
        await press(client, fixtures_dir, BEA, form, ephemeral=True, message_ts=f"222.{next(_ids)}", standin=standin)
        await submit(client, fixtures_dir, BEA, standin.opened_views()[-1], "secure-check.net")
        await lessonbot.settle()
        assert "Quiz: 2 of 2 right." in private_texts(standin, BEA)[-1]


async def test_the_digests_hardest_questions_show_the_authors_markdown_as_slack_draws_it(slack_settings, standin,
                                                                                        fixtures_dir):
    """The admin's digest names each hard question by its prompt's first line of text, whole, as Slack's mrkdwn
    draws the author's Markdown: bold stays bold (not cut inside its marks, which would show them raw), a heading's
    mark and a code block's fence do not show."""
    sample = load_course(SAMPLE)
    first = sample.modules[0].lessons[0]
    prompts = ("Which message below asks for your bank PIN in a way that is **clearly a scam, not your bank**?",
               "# Acting at once\nTrue or false: when a message says your account closes today, acting at once is "
               "the safe choice.",
               "```\nPay 1.99 at https://parcel-fee.example/now\n```\nWhat is phishing by text message often called?")
    marked = tuple(dataclasses.replace(question, prompt=prompt) for question, prompt in zip(first.questions, prompts,
                                                                                                strict=True))
    lessons = (dataclasses.replace(first, questions=marked), *sample.modules[0].lessons[1:])
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        lessonbot.channels["slack"].profiles_per_minute = 60_000
        async with lessonbot.db.transaction() as session:
            await import_course(session, dataclasses.replace(sample, modules=(
                dataclasses.replace(sample.modules[0], lessons=lessons),)))
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        await sync_team_members(context(lessonbot, clock))
        jobs = await _first_lesson_posted(lessonbot, clock)
        await take_quiz(client, fixtures_dir, standin, lessonbot, BEA, right=False)
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))  # Monday: the digest of the week before
        await _posted(jobs, lessonbot, standin)
        [digest] = standin.posted(ADMIN)
        lines = digest.params["text"].splitlines()
        hardest = lines[lines.index("Hardest questions:") + 1:][:3]
        assert sorted(hardest) == [
            "• 0 %: Acting at once",
            "• 0 %: What is phishing by text message often called?",
            "• 0 %: Which message below asks for your bank PIN in a way that is *clearly a scam, not your bank*?",
        ], hardest


async def test_a_slow_views_open_does_not_hold_the_acknowledgement(slack_settings, standin, fixtures_dir):
    """Slack waits 3 s for a press's acknowledgement (and its trigger_id dies with them): a "Type an answer" modal
    Slack is slow to open is given up, the press acknowledged before Slack answers views.open (the question's text
    says how to answer with /lessonbot answer instead)."""
    async with running(slack_settings, clock=False) as (client, _lessonbot):
        standin.fail("views.open", Fault.slow(4.0))
        await press(client, fixtures_dir, BEA, "form:1", ephemeral=True, standin=standin)
        [attempt] = [c for c in standin.calls if c.method == "views.open"]
        assert attempt.answer == {}  # acknowledged while the stand-in still holds the call
        await standin.wait_for(lambda: attempt.answer)


async def test_a_slow_users_info_does_not_hold_a_team_commands_or_a_joiners_acknowledgement(slack_settings, standin,
                                                                                          fixtures_dir):
    """`/lessonbot team …` and member_joined_channel read users.info before they are acknowledged: one Slack is
    slow to answer is given up in time (Slack waits 3 s, then shows the admin operation_timeout or delivers the
    event again), and each is recorded without the profile, as when users.info is refused."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        standin.fail("users.info", Fault.slow(4.0), Fault.slow(4.0))
        for send in (lambda: slash(client, fixtures_dir, ADMIN, "team leaderboard off", standin=standin),
                     lambda: membership(client, fixtures_dir, "joined", DEV)):
            started = time_now()
            await send()
            assert time_now() - started < 3.0
        async with lessonbot.db.sessions() as session:
            recorded = list(await session.scalars(select(InboundRow).order_by(InboundRow.id)))
        assert [row.payload["meta"].get("event") for row in recorded] == ["command", "member_joined_channel"]
        assert not any("workspace_admin" in row.payload["meta"] for row in recorded)


async def test_an_admin_added_in_an_org_wide_install_may_administer_its_teams(slack_settings, standin, fixtures_dir):
    """Enterprise Grid, the app installed for the whole org (E111): a member is named by their own workspace (T111),
    the org's teams by the org. Someone a team admin added is told they may administer the teams, and may."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin, org_wide=True)
        await slash(client, fixtures_dir, ADMIN, f"team admin {BEA}", standin=standin, org_wide=True)
        await lessonbot.settle()
        assert private_texts(standin, BEA) == []
        assert private_texts(standin, ADMIN)[-1] == f"{BEA} may now administer this workspace's team courses."
        await slash(client, fixtures_dir, BEA, "team leaderboard off", standin=standin, org_wide=True)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1] == "The leaderboard is off."
        async with lessonbot.db.sessions() as session:
            team = await session.scalar(select(Team))
        assert (team.chat_id, team.workspace, team.leaderboard_on) == ("E111:C111", "E111", False)
        await slash(client, fixtures_dir, CAL, "team leaderboard on", standin=standin, org_wide=True)
        await lessonbot.settle()
        assert "Only a team admin" in private_texts(standin, CAL)[-1]
        # Their Home tab shows the team they run.
        opened: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/AppHomeOpenedPayload.json")
        opened.update(team_id="T111", api_app_id="A111", type="event_callback", event_id="EvHOMEBEA",
                      enterprise_id="E111")
        opened["authorizations"][0].update(team_id=None, enterprise_id="E111", is_enterprise_install=True)
        opened["event"].update(user=BEA, channel="DBEA", tab="home")
        opened["event"]["view"].update(team_id="T111", type="home", id="VHOMEBEA")
        await post(client, json.dumps(opened).encode())
        await lessonbot.settle()
        [published] = [c for c in standin.calls if c.method == "views.publish"]
        view = published.params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        text = "\n".join(block["text"]["text"] for block in view["blocks"] if block["type"] == "section")
        assert "Team course you run*: Spot the phish, five minutes a day" in text


async def test_an_admin_role_on_a_workspace_of_an_org_wide_install_administers_the_orgs_teams(slack_settings, standin,
                                                                                            fixtures_dir):
    """Enterprise Grid, the app installed for the whole org (E111), whose teams are the org's: an admin role scoped to
    the org's workspace T111 (`team:T111`), which its holder writes from, lets them administer the teams there; one
    scoped to another workspace (T222) does not."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        async with lessonbot.db.transaction() as session:
            await grant_role(session, f"slack:T111/{CAL}", Grant(ADMIN_ROLE, Scope("team", "T111")), by="test")
            await grant_role(session, f"slack:T111/{DAN}", Grant(ADMIN_ROLE, Scope("team", "T222")), by="test")
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin, org_wide=True)
        await lessonbot.settle()
        await slash(client, fixtures_dir, CAL, "team leaderboard off", standin=standin, org_wide=True)
        await lessonbot.settle()
        await slash(client, fixtures_dir, DAN, "team leaderboard on", standin=standin, org_wide=True)
        await lessonbot.settle()
        assert private_texts(standin, CAL)[-1] == "The leaderboard is off."
        assert "Only a team admin" in private_texts(standin, DAN)[-1]
        async with lessonbot.db.sessions() as session:
            team = await session.scalar(select(Team))
        assert (team.workspace, team.leaderboard_on) == ("E111", False)
        assert (await audit(lessonbot))[-2:] == [(f"slack:T111/{CAL}", "team leaderboard", "ok"),
                                                 (f"slack:T111/{DAN}", "team leaderboard", "denied")]


async def test_uninstalling_stops_every_send_to_the_workspace(slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        await add_learner(lessonbot.db, channel="slack", chat="T111:D0LEARNER")
        await add_learner(lessonbot.db, channel="telegram", chat="telegram-chat")
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        standin.fail("chat.postMessage", Fault.rate_limited(retry_after=30))  # the next post waits its turn …
        async with lessonbot.db.transaction() as session:
            team = await session.scalar(select(Team))
            await announce(session, team, "one more thing")
        lessonbot.dispatcher.notify()
        await standin.wait_for(lambda: any(c.outcome.startswith("429") for c in standin.calls))
        for _ in range(200):  # the dispatcher puts it back in line, for 30 s later
            async with lessonbot.db.sessions() as session:
                last = await session.scalar(select(OutboxMessage.status).order_by(OutboxMessage.id.desc()).limit(1))
            if last == OutboxStatus.PENDING:
                break
            await asyncio.sleep(0.02)
        uninstalled: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/"
                                                   "AppUninstalledPayload.json")
        uninstalled.update(team_id="T111", api_app_id="A111", type="event_callback", event_id="EvGONE",
                           enterprise_id=None)
        uninstalled["authorizations"][0].update(team_id="T111", enterprise_id=None)
        await post(client, json.dumps(uninstalled).encode())  # … and is cancelled
        async with lessonbot.db.sessions() as session:
            statuses = list(await session.scalars(select(OutboxMessage.status).order_by(OutboxMessage.id)))
            assert statuses[-1] == OutboxStatus.CANCELLED
            assert (await session.scalar(select(Team))).status == "gone"
        assert await post_team_lessons(context(lessonbot, HandClock(datetime(2027, 3, 12, 14, 1, tzinfo=UTC)))) == 0
        # Learners whose lessons went to that workspace are stopped, as /stop stops them; one learning elsewhere too
        # is not.
        async with lessonbot.db.sessions() as session:
            statuses = dict((await session.execute(
                select(Conversation.chat_id, Learner.status)
                .join(Learner, Learner.home_conversation_id == Conversation.id)
            )).all())
        assert statuses == {"T111:D0LEARNER": STOPPED, "telegram-chat": ACTIVE}


async def test_the_app_home_shows_a_learners_course_and_a_team_admins_numbers(slack_settings, standin,
                                                                              fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        opened: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/AppHomeOpenedPayload.json")
        opened.update(team_id="T111", api_app_id="A111", type="event_callback", event_id="EvHOME1", enterprise_id=None)
        opened["authorizations"][0].update(team_id="T111", enterprise_id=None)
        opened["event"].update(user=ADMIN, channel="DADMIN", tab="home")
        opened["event"]["view"].update(team_id="T111", type="home", id="VHOME")
        await post(client, json.dumps(opened).encode())
        await lessonbot.settle()
        [published] = [c for c in standin.calls if c.method == "views.publish"]
        assert published.params["user_id"] == ADMIN
        view = published.params["view"]
        view = json.loads(view) if isinstance(view, str) else view
        text = "\n".join(block["text"]["text"] for block in view["blocks"] if block["type"] == "section")
        assert "Your learning" in text and "No course yet" in text
        assert "Team course you run*: Spot the phish, five minutes a day, 1 member" in text  # members not read yet
        assert "This channel takes “Spot the phish, five minutes a day” together" in text
        labels = [element["text"]["text"] for block in view["blocks"] if block["type"] == "actions"
                  for element in block["elements"]]
        assert labels == ["My progress"]
        # A button on the Home tab answers in the person's direct chat with the bot, which app_home_opened named:
        # the tab keeps it, and Slack sends the tab back with the press.
        assert view["private_metadata"] == "DADMIN"
        await press_on_the_home_tab(client, fixtures_dir, ADMIN, {**view, "id": "VHOME", "team_id": "T111"},
                                    "My progress")
        await lessonbot.settle()
        assert standin.texts("DADMIN") and not standin.texts(ADMIN)
        # A tab published before it kept the DM: its buttons answer at the person's own address, which lands there.
        await press_on_the_home_tab(client, fixtures_dir, ADMIN, {"id": "VHOME", "type": "home", "team_id": "T111",
                                                                  "blocks": view["blocks"]}, "My progress")
        await lessonbot.settle()
        assert standin.texts(ADMIN)  # chat.postMessage to the user id


async def a_slack_learner_with_reviews_due(lessonbot: Lessonbot, user: str, dm: str) -> list[int]:
    """`user`, who learns in their DM `dm` with the bot, done with the sample course's first lesson three days ago,
    its questions due for review now; their ids."""
    from dialogs.review import record_answer

    course_id = await sample_course(lessonbot.db)
    user_id = await add_learner(lessonbot.db, channel="slack", chat=f"T111:{dm}", course_id=course_id)
    questions = await took_lessons(lessonbot.db, user_id, course_id, 1, at=datetime.now(UTC) - timedelta(days=3))
    async with lessonbot.db.transaction() as session:
        identity = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.user_id == user_id))
        identity.external_id = f"T111/{user}"  # Slack's sender: workspace/user
        for question_id in questions[0]:
            question = await session.get(Question, question_id)
            card = await record_answer(session, user_id, question, correct=True, answer="x", seconds=20,
                                       now=datetime.now(UTC) - timedelta(days=3))
            card.due = datetime.now(UTC) - timedelta(hours=1)
    return questions[0]


async def open_the_home_tab(client: httpx.AsyncClient, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot,
                            user: str, dm: str) -> dict[str, Any]:
    """`user` opens the app's Home tab (app_home_opened names their DM with the app); the view published."""
    opened: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/AppHomeOpenedPayload.json")
    opened.update(team_id="T111", api_app_id="A111", type="event_callback", event_id=f"EvHOME{next(_ids)}",
                  enterprise_id=None)
    opened["authorizations"][0].update(team_id="T111", enterprise_id=None)
    opened["event"].update(user=user, channel=dm, tab="home")
    opened["event"]["view"].update(team_id="T111", type="home", id=f"VHOME{user}")
    await post(client, json.dumps(opened).encode())
    await lessonbot.settle()
    published = [c for c in standin.calls if c.method == "views.publish" and c.params["user_id"] == user][-1]
    view = published.params["view"]
    return {**(json.loads(view) if isinstance(view, str) else view), "id": f"VHOME{user}", "team_id": "T111"}


async def press_on_the_home_tab(client: httpx.AsyncClient, fixtures_dir, user: str, view: dict[str, Any],
                                label: str) -> None:
    """A button of the published Home tab pressed: Slack sends the view back as it was published."""
    [value] = [element["value"] for block in view["blocks"] if block["type"] == "actions"
               for element in block["elements"] if element["text"]["text"] == label]
    payload: dict[str, Any] = load_fixture(fixtures_dir, "bolt-python/interactive.block_actions.json")
    payload["user"] = {"id": user, "username": NAMES[user], "name": NAMES[user], "team_id": "T111"}
    payload["team"].pop("enterprise_id")
    payload.pop("channel"), payload.pop("response_url")
    payload["container"] = {"type": "view", "view_id": view["id"]}
    payload["view"] = view
    payload["actions"][0].update(value=value, text={"type": "plain_text", "text": label},
                                 action_ts=f"1596530385.{next(_ids):06d}")
    await post(client, form_body(payload))


async def test_a_review_begun_on_the_app_home_is_answered_with_the_buttons_in_the_direct_messages(
        slack_settings, standin, fixtures_dir):
    """Bea, who learns in her DM with the bot, presses "Review now" on the Home tab: the questions come to her DM,
    and the answer she presses there is graded and the review goes on, not "That review is over"."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await a_slack_learner_with_reviews_due(lessonbot, BEA, "D0BEA")
        view = await open_the_home_tab(client, fixtures_dir, standin, lessonbot, BEA, "D0BEA")
        assert "🔁 3 to review" in "\n".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
        await press_on_the_home_tab(client, fixtures_dir, BEA, view, "Review now")
        await lessonbot.settle()
        asked = (standin.posted(BEA) + standin.posted("D0BEA"))[-1]  # to her user id or her DM: both land there
        assert asked.params["text"].startswith("Review 1 of 3")
        [value] = [value for label, value in buttons(asked) if label == "Urgency"]
        await press(client, fixtures_dir, BEA, value, ephemeral=False, channel="D0BEA")  # in the DM itself
        await lessonbot.settle()
        feedback, following = standin.texts("D0BEA")[-2:]
        assert feedback.startswith("✅ Right!") and following.startswith("Review 2 of 3")
        [false] = [value for label, value in buttons(standin.posted("D0BEA")[-1]) if label == "False"]
        await press(client, fixtures_dir, BEA, false, ephemeral=False, channel="D0BEA")
        await lessonbot.settle()
        assert standin.texts("D0BEA")[-1].startswith("Review 3 of 3\nWhat is phishing by text message")
        await post(client, json.dumps(dm_event("smishing", event_id="EvBEA1", user=BEA, channel="D0BEA")).encode())
        await lessonbot.settle()
        assert standin.texts("D0BEA")[-1].startswith("Review done: 3 of 3 right.")
        await press(client, fixtures_dir, BEA, value, ephemeral=False, channel="D0BEA")  # reviewed: not again
        await lessonbot.settle()
        assert standin.texts("D0BEA")[-1].startswith("That review is over.")


async def test_a_question_the_app_home_brings_is_answered_by_typing_in_the_direct_messages(
        slack_settings, standin, fixtures_dir):
    """What a Home tab button starts goes on in the person's DM with the bot, where they read it and type: the
    review's first question answered by typing its letter, and the typed answer to a question without buttons."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await a_slack_learner_with_reviews_due(lessonbot, BEA, "D0BEA")
        view = await open_the_home_tab(client, fixtures_dir, standin, lessonbot, BEA, "D0BEA")
        await press_on_the_home_tab(client, fixtures_dir, BEA, view, "Review now")
        await lessonbot.settle()
        for n, typed in enumerate(("b", "false", "smishing")):
            await post(client, json.dumps(dm_event(typed, event_id=f"EvTYPED{n}", user=BEA, channel="D0BEA")).encode())
            await lessonbot.settle()
        feedback = [text for text in standin.texts("D0BEA") if text.startswith(("✅", "❌"))]
        assert len(feedback) == 3 and all(text.startswith("✅ Right!") for text in feedback)
        assert standin.texts("D0BEA")[-1].startswith("Review done: 3 of 3 right.")


async def test_the_app_home_of_a_direct_mode_team_promises_no_post_and_says_when_its_lessons_are_off(
        slack_settings, standin, fixtures_dir):
    """In the direct mode nothing is posted in the channel: the admin's Home tab names no lesson to be posted there;
    turned off, it says the lessons are off."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        await direct_team(client, fixtures_dir, standin, lessonbot, HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC)))
        home = await _home_text(client, fixtures_dir, standin, lessonbot, ADMIN)
        assert "Team course you run*: Spot the phish, five minutes a day" in home
        assert "each member gets a lesson weekdays at 09:00 in their own time zone" in home
        assert "Next lesson posted" not in home and "Every lesson has been posted" not in home, home
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        assert "Lessons are turned off for now." in await _home_text(client, fixtures_dir, standin, lessonbot, ADMIN)


async def _home_text(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot, user: str) -> str:
    """`user` opens the app's Home tab: the text of the view published for them."""
    opened: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/AppHomeOpenedPayload.json")
    opened.update(team_id="T111", api_app_id="A111", type="event_callback", event_id=f"Ev{next(_ids):08d}",
                  enterprise_id=None)
    opened["authorizations"][0].update(team_id="T111", enterprise_id=None)
    opened["event"].update(user=user, channel="D" + user[1:], tab="home")
    opened["event"]["view"].update(team_id="T111", type="home", id=f"VHOME{next(_ids)}")
    await post(client, json.dumps(opened).encode())
    await lessonbot.settle()
    published = [c for c in standin.calls if c.method == "views.publish" and c.params["user_id"] == user][-1]
    view = published.params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    return "\n".join(block["text"]["text"] for block in view["blocks"] if block["type"] == "section")


async def test_a_lead_makes_a_member_a_team_admin_by_mentioning_them(slack_settings, standin, fixtures_dir):
    """`/lessonbot team admin @bea`: Slack escapes the mention of a slash command registered with should_escape (the
    manifest's /lessonbot), sending `<@UBEA|bea>`; the member it names may administer the teams. A mention anywhere
    else in a team command stays a name, and escaped text stays text."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await slash(client, fixtures_dir, ADMIN, f"team admin <@{BEA}|{NAMES[BEA]}>", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1] == f"{BEA} may now administer this workspace's team courses."
        await slash(client, fixtures_dir, BEA, "team leaderboard off", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1] == "The leaderboard is off."
        await slash(client, fixtures_dir, ADMIN, f"team hello <@{CAL}|{NAMES[CAL]}> &lt;b&gt;", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1] == "There is no team command 'hello'. Try /lessonbot team help."
        async with lessonbot.db.sessions() as session:
            assert list(await session.scalars(select(Team.leaderboard_on))) == [False]


async def test_two_workspaces_never_see_each_others_team(slack_settings, standin, fixtures_dir):
    """The same channel id in two workspaces is two teams; a leaderboard, an admin grant and an uninstall stay in
    their own workspace."""
    standin.add_member("C111", "UOTHER", team="T222", name="olga", admin=True)
    standin.add_member("C111", "UOTHERB", team="T222", name="oscar")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await slash(client, fixtures_dir, "UOTHER", SET_UP, standin=standin, team="T222")
        await lessonbot.settle()
        await slash(client, fixtures_dir, BEA, "team join", standin=standin)
        await slash(client, fixtures_dir, "UOTHERB", "team join", standin=standin, team="T222")
        await slash(client, fixtures_dir, ADMIN, "team admin UOTHERB", standin=standin)  # a grant in T111 only
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            teams = {team.chat_id: team.workspace for team in await session.scalars(select(Team))}
        assert teams == {"T111:C111": "T111", "T222:C111": "T222"}
        await slash(client, fixtures_dir, "UOTHERB", "team leaderboard off", standin=standin, team="T222")
        await slash(client, fixtures_dir, BEA, "leaderboard", standin=standin)
        await lessonbot.settle()
        assert "Only a team admin" in private_texts(standin, "UOTHERB")[-1]
        board = private_texts(standin, BEA)[-1]
        assert "ann" in board and "bea" in board and "olga" not in board and "oscar" not in board
        # Uninstalling from one workspace stops that workspace's team only.
        uninstalled: dict[str, Any] = load_fixture(fixtures_dir, "java-slack-sdk-schema-skeletons/"
                                                   "AppUninstalledPayload.json")
        uninstalled.update(team_id="T111", api_app_id="A111", type="event_callback", event_id="EvGONE1",
                           enterprise_id=None)
        uninstalled["authorizations"][0].update(team_id="T111", enterprise_id=None)
        await post(client, json.dumps(uninstalled).encode())
        async with lessonbot.db.sessions() as session:
            statuses = {team.chat_id: team.status for team in await session.scalars(select(Team))}
        assert statuses == {"T111:C111": "gone", "T222:C111": "active"}


async def test_a_channel_whose_members_cannot_be_read_is_asked_again_hours_later(slack_settings, standin,
                                                                                 fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        del standin.channel_members[CHANNEL]  # as if the bot had been removed from the channel: channel_not_found
        jobs = context(lessonbot, HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC)))
        assert await sync_team_members(jobs) == 0
        assert await sync_team_members(jobs) == 0
        assert [c.outcome for c in standin.calls if c.method == "conversations.members"] == ["channel_not_found"]


async def test_the_direct_mode_brings_each_member_the_lesson_in_a_dm_at_their_own_hour(slack_settings, standin,
                                                                                      fixtures_dir):
    """`mode direct`: nothing is posted but the announcement; each member is invited in a DM, and whoever presses
    Start gets the course's lessons there at the team's hour in their own (Slack profile) zone, as any learner."""
    standin.add_member(CHANNEL, BEA, name=NAMES[BEA], tz="Asia/Tokyo")
    standin.add_member(CHANNEL, CAL, name=NAMES[CAL], tz="America/New_York")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
        await sample_course(lessonbot.db)
        # One post in the channel has one hour: "each member's own zone" is the direct mode's.
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 09:00 in members mode channel",
                    standin=standin)
        await lessonbot.settle()
        assert "choose mode direct" in private_texts(standin, ADMIN)[-1]
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 09:00 on weekdays mode direct",
                    standin=standin)
        await lessonbot.settle()
        assert "each member gets a lesson weekdays at 09:00 in their own time zone" in private_texts(standin, ADMIN)[-1]
        assert "invitation in your direct messages" in standin.texts(CHANNEL)[-1]
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))  # a Sunday
        jobs = context(lessonbot, clock)
        lessonbot.channels["slack"].profiles_per_minute = 60_000
        await sync_team_members(jobs)
        await lessonbot.settle()
        # Every member is invited in their DM (chat.postMessage to the user id), once; the admin at set-up.
        for user in (ADMIN, BEA, CAL, DAN):
            [invitation] = standin.posted(user)
            assert [label for label, _value in buttons(invitation)] == ["Start my lessons", "No, thanks"]
        assert standin.posted(GUEST) == [] and standin.posted(ROBOT) == []
        assert "(Asia/Tokyo)" in standin.texts(BEA)[0] and "Your privacy" in standin.texts(BEA)[0]
        # Start belongs in the DM, where the lessons will come; pressed there, Bea is a learner of the course.
        [(_label, start), (_label2, skip)] = buttons(standin.posted(BEA)[0])
        await press(client, fixtures_dir, BEA, start, ephemeral=False, channel="DBEA")
        await press(client, fixtures_dir, CAL, buttons(standin.posted(CAL)[0])[1][1], ephemeral=False, channel="DCAL")
        await lessonbot.settle()
        assert standin.texts("DBEA")[-1].startswith("All set, Bea!\nLessons at 09:00 on weekdays (Asia/Tokyo).")
        assert standin.texts("DCAL")[-1].startswith("No problem: no team lessons for you.")
        assert (await members(lessonbot))[CAL] == "opted_out"
        # The planner pushes Monday's lesson at 09:00 in Tokyo (Sunday 24:00 UTC), to her DM; nothing in the channel.
        posts_before = len(standin.posted(CHANNEL))
        await plan_lessons(jobs)  # the first run only starts the cursor
        clock.at(datetime(2027, 3, 14, 23, 59, tzinfo=UTC))
        assert (await plan_lessons(jobs))["queued"] == 0
        clock.at(datetime(2027, 3, 15, 0, 1, tzinfo=UTC))
        assert (await plan_lessons(jobs))["queued"] == 1
        await lessonbot.settle()
        assert "What a phishing message wants" in standin.texts("DBEA")[-1]
        assert len(standin.posted(CHANNEL)) == posts_before
        await take_lesson_in_dm(client, fixtures_dir, standin, lessonbot, BEA)
        # The next Monday, at the team's hour in its zone (the admin's, Lisbon): the admin's digest of the week,
        # with the lessons its members finished in their DMs, and who did fewer than the week's lesson days. (The
        # lesson was finished in real time, as the worker keeps it: the team's clock is set from when it was.)
        async with lessonbot.db.sessions() as session:
            finished = await session.scalar(select(func.max(LessonProgress.completed_at)))
        done_on = finished.replace(tzinfo=finished.tzinfo or UTC).astimezone(ZoneInfo("Europe/Lisbon")).date()
        monday = done_on + timedelta(days=7 - done_on.weekday())
        team_clock = HandClock(datetime.combine(monday, time(8, 59), tzinfo=ZoneInfo("Europe/Lisbon")))
        await post_team_lessons(context(lessonbot, team_clock))  # the team job's cursor
        team_clock.move(minutes=2)
        assert await post_team_lessons(context(lessonbot, team_clock)) == 0  # no lesson posted in the direct mode
        await lessonbot.settle()
        digest = standin.texts(ADMIN)[-1].splitlines()
        assert digest[0] == "📊 This week in “Spot the phish, five minutes a day”: 3 members."
        assert digest[1] == "📘 What a phishing message wants: 1 of 3 done · 100 % right"
        assert digest[-1].startswith("Behind: ") and "Bea" in digest[-1] and "Dan" in digest[-1]
        assert len(standin.posted(CHANNEL)) == posts_before


async def test_a_lead_setting_up_the_direct_mode_is_told_the_zone_of_members_whose_profile_names_none(
        slack_settings, standin, fixtures_dir):
    """In the direct mode each member's lessons come at the team's hour in their own zone; one whose Slack profile
    names none gets the team's (UTC for `in members`), and the lead reads which, setting the team up."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 09:00 on weekdays in members",
                    standin=standin)
        await lessonbot.settle()
        assert ("each member gets a lesson weekdays at 09:00 in their own time zone (UTC for a member whose profile "
                "names none), in a direct message.") in private_texts(standin, ADMIN)[-1]
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 09:00 in Asia/Tokyo mode direct",
                    standin=standin)
        await lessonbot.settle()
        assert "in their own time zone (Asia/Tokyo for a member whose profile names none)" in private_texts(
            standin, ADMIN)[-1]


async def take_lesson_in_dm(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot, user: str) -> None:
    """A pushed lesson taken in the member's DM as any learner takes it: Next, then every question answered right."""
    dm = "D" + user[1:]
    for _step in range(20):
        last = standin.posted(dm)[-1]
        if "Lesson done" in last.params["text"]:
            return
        choices = buttons(last)
        quiz = [value for _label, value in choices if value.startswith("quiz:")]
        if quiz:
            async with lessonbot.db.sessions() as session:
                question = await session.get(Question, int(quiz[0].split(":")[1]))
            correct = (str(question.correct_choice) if question.kind == "choice"
                       else "true" if question.is_true else "false")
            await press(client, fixtures_dir, user, next(v for v in quiz if v.split(":")[2] == correct),
                        ephemeral=False, channel=dm)
        elif "(Type your answer.)" in last.params["text"]:
            body = json.dumps(dm_event("smishing", event_id=f"EvDM{next(_ids)}", user=user, channel=dm))
            await post(client, body.encode())
        else:
            await press(client, fixtures_dir, user, "lesson:next", ephemeral=False, channel=dm)
        await lessonbot.settle()
    raise AssertionError(f"the lesson did not end: {standin.texts(dm)}")


# The direct mode's members follow the team ---------------------------------------------------------------------------


async def direct_team(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot, clock: HandClock,
                      *starting: str) -> None:
    """A direct-mode team at 09:00 on weekdays, its members read and invited; `starting` press Start in their DMs."""
    lessonbot.channels["slack"].post_pace = 0.0  # a lesson's parts at once (test_slack_send checks the pace)
    lessonbot.channels["slack"].profiles_per_minute = 60_000
    await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 09:00 on weekdays mode direct",
                standin=standin)
    await lessonbot.settle()
    await sync_team_members(context(lessonbot, clock))
    await lessonbot.settle()
    for user in starting:
        await press(client, fixtures_dir, user, start_button(standin, user), ephemeral=False, channel="D" + user[1:])
    await lessonbot.settle()


def start_button(standin: SlackStandIn, user: str) -> str:
    """The value of Start on the latest invitation in `user`'s DM."""
    return next(value for _label, value in buttons(standin.posted(user)[-1]) if value.startswith("team:start:"))


async def learner_row(lessonbot: Lessonbot, user: str, **changes: object) -> Learner:
    """A member's learner row (`changes` written to it first: made when there is none), as it is now."""
    async with lessonbot.db.transaction() as session:
        member = await session.scalar(select(TeamMember).where(TeamMember.member == f"T111/{user}"))
        learner = await session.get(Learner, member.user_id)
        if learner is None:
            learner = Learner(user_id=member.user_id, consent_at=datetime.now(UTC))
            session.add(learner)
        for name, value in changes.items():
            setattr(learner, name, value)
        await session.flush()
        return learner


async def another_course(lessonbot: Lessonbot) -> int:
    sample = load_course(SAMPLE)
    async with lessonbot.db.transaction() as session:
        await import_course(session, dataclasses.replace(sample, id="phish-two", title="Phishing, the sequel"))
        return await session.scalar(select(Course.id).where(Course.slug == "phish-two"))


async def short_course(lessonbot: Lessonbot) -> int:
    """The sample's first two lessons, one part each: a course a team finishes in two days, in few posts."""
    sample = load_course(SAMPLE)
    lessons = tuple(dataclasses.replace(lesson, parts=lesson.parts[:1]) for lesson in sample.modules[0].lessons[:2])
    short = dataclasses.replace(sample, id="short-phish", title="Phishing in short",
                                modules=(dataclasses.replace(sample.modules[0], lessons=lessons),))
    async with lessonbot.db.transaction() as session:
        await import_course(session, short)
        return await session.scalar(select(Course.id).where(Course.slug == "short-phish"))


async def test_the_teams_changes_reach_the_members_who_pressed_start(slack_settings, standin, fixtures_dir):
    """Those who pressed Start follow the team: its new hour and days become theirs; `team off`, another course and
    `mode channel` pause their DM lessons (`team on` and the new course invite them again). A member taking the
    course on their own, and one who stopped, are left as they are."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        course_id = await sample_course(lessonbot.db)
        await another_course(lessonbot)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, BEA, CAL)
        assert (await learner_row(lessonbot, BEA)).lesson_time == time(9, 0)
        own = {"status": ACTIVE, "course_id": course_id, "lesson_time": time(7, 0), "lesson_days": "1234567"}
        await learner_row(lessonbot, DAN, **own)  # Dan takes the course by himself, not through the team
        await learner_row(lessonbot, CAL, status=STOPPED)  # Cal stopped every message (/stop)
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 10:00 on mon, wed, fri mode direct",
                    standin=standin)
        await slash(client, fixtures_dir, CAL, "team leave", standin=standin)
        await lessonbot.settle()
        bea = await learner_row(lessonbot, BEA)
        assert (bea.status, bea.lesson_time, bea.lesson_days) == (ACTIVE, time(10, 0), "135")
        dan = await learner_row(lessonbot, DAN)
        assert (dan.status, dan.lesson_time, dan.lesson_days) == (ACTIVE, time(7, 0), "1234567")
        assert (await learner_row(lessonbot, CAL)).status == STOPPED  # opting out changes no one's /stop
        # Off: the team's lessons stop, the DM ones of those who started through it too; on: invited again.
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1].startswith("Team lessons are off in this channel.")
        assert [(await learner_row(lessonbot, user)).status for user in (BEA, CAL, DAN)] == [PAUSED, STOPPED, ACTIVE]
        invitations = len(standin.posted(BEA))
        await slash(client, fixtures_dir, ADMIN, "team on", standin=standin)
        await lessonbot.settle()
        assert len(standin.posted(BEA)) == invitations + 1
        await press(client, fixtures_dir, BEA, start_button(standin, BEA), ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        assert (await learner_row(lessonbot, BEA)).status == ACTIVE
        # Another course: the old one's DM lessons pause, and the new one's invitation comes.
        await slash(client, fixtures_dir, ADMIN, "team set phish-two mode direct", standin=standin)
        await lessonbot.settle()
        assert (await learner_row(lessonbot, BEA)).status == PAUSED
        assert "Phishing, the sequel" in standin.texts(BEA)[-1]
        await press(client, fixtures_dir, BEA, start_button(standin, BEA), ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        bea = await learner_row(lessonbot, BEA)
        assert (bea.status, bea.course_id != course_id) == (ACTIVE, True)
        # The channel mode posts the lesson in the channel: the DM lessons pause, not both at once.
        await slash(client, fixtures_dir, ADMIN, "team set phish-two mode channel", standin=standin)
        await lessonbot.settle()
        assert [(await learner_row(lessonbot, user)).status for user in (BEA, DAN)] == [PAUSED, ACTIVE]


async def test_an_invitation_to_the_teams_earlier_course_answered_late_changes_nothing(slack_settings, standin,
                                                                                         fixtures_dir):
    """Dan is invited to the team's course, and the team takes another before he answers: Start or "No, thanks"
    pressed on the earlier invitation neither makes him a learner of the course the team takes now nor opts him
    out of it; he is told which invitation to answer, and its Start does what it says."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        await another_course(lessonbot)
        await direct_team(client, fixtures_dir, standin, lessonbot, HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC)))
        [(_start, old_start), (_skip, old_skip)] = buttons(standin.posted(DAN)[-1])
        await slash(client, fixtures_dir, ADMIN, "team set phish-two mode direct", standin=standin)
        await lessonbot.settle()
        assert "Phishing, the sequel" in standin.texts(DAN)[-1]
        for old in (old_start, old_skip):
            await press(client, fixtures_dir, DAN, old, ephemeral=False, channel="DDAN")
            await lessonbot.settle()
            assert standin.texts("DDAN")[-1].startswith("That invitation was for a course your team no longer takes")
            assert "“Phishing, the sequel”" in standin.texts("DDAN")[-1]
        async with lessonbot.db.sessions() as session:
            dan = await session.scalar(select(TeamMember).where(TeamMember.member == f"T111/{DAN}"))
            assert (dan.status, dan.started_at) == (MEMBER_ACTIVE, None)
            assert (await session.get(Learner, dan.user_id)).course_id is None  # no course of the team's taken
        await press(client, fixtures_dir, DAN, start_button(standin, DAN), ephemeral=False, channel="DDAN")
        await lessonbot.settle()
        learner = await learner_row(lessonbot, DAN)
        async with lessonbot.db.sessions() as session:
            assert (await session.get(Course, learner.course_id)).slug == "phish-two" and learner.status == ACTIVE


async def test_a_member_who_leaves_the_channel_is_paused_and_invited_again_on_return(slack_settings, standin,
                                                                                     fixtures_dir):
    """Leaving the channel (seen by reading its members, or by Slack's event) pauses the DM lessons; a Start from
    before is not honoured then; coming back brings a new invitation, and says so only when it was sent."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, BEA)
        old_start = start_button(standin, BEA)
        standin.remove_member(CHANNEL, BEA)
        clock.move(hours=7)
        await sync_team_members(context(lessonbot, clock))
        assert (await members(lessonbot))[BEA] == MEMBER_LEFT
        assert (await learner_row(lessonbot, BEA)).status == PAUSED
        await press(client, fixtures_dir, BEA, old_start, ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        assert standin.texts("DBEA")[-1].startswith("You are not in the team's channel any more")
        assert (await members(lessonbot))[BEA] == MEMBER_LEFT
        assert (await learner_row(lessonbot, BEA)).status == PAUSED
        invitations = len(standin.posted(BEA))
        standin.add_member(CHANNEL, BEA, name=NAMES[BEA])
        clock.move(hours=7)
        await sync_team_members(context(lessonbot, clock))
        await lessonbot.settle()
        assert (await members(lessonbot))[BEA] == MEMBER_ACTIVE
        assert len(standin.posted(BEA)) == invitations + 1
        # Slack's own events: left, then joined again: invited once more, and told where.
        await membership(client, fixtures_dir, "left", BEA)
        await lessonbot.settle()
        assert (await members(lessonbot))[BEA] == MEMBER_LEFT
        await membership(client, fixtures_dir, "joined", BEA)
        await lessonbot.settle()
        assert len(standin.posted(BEA)) == invitations + 2
        assert "Your invitation is in your direct messages" in private_texts(standin, BEA)[-1]


async def test_a_member_who_leaves_while_the_lessons_are_off_is_not_invited_when_they_are_on_again(
        slack_settings, standin, fixtures_dir):
    """Slack says who left the channel once: while the team's lessons are off, that is still who is in it. Turned on
    again, the team invites those still there, and counts them alone; someone who joined meanwhile is read at once."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, BEA)
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        standin.remove_member(CHANNEL, BEA)
        await membership(client, fixtures_dir, "left", BEA)
        standin.add_member(CHANNEL, DEV, name=NAMES[DEV])
        await membership(client, fixtures_dir, "joined", DEV)
        await lessonbot.settle()
        invitations = len(standin.posted(BEA))
        await slash(client, fixtures_dir, ADMIN, "team on", standin=standin)
        await lessonbot.settle()
        assert len(standin.posted(BEA)) == invitations  # no invitation for someone no longer in the channel
        assert (await members(lessonbot))[BEA] == MEMBER_LEFT
        assert (await learner_row(lessonbot, BEA)).status == PAUSED
        clock.move(hours=1)  # the members are read again at once, not six hours after the last read
        assert await sync_team_members(context(lessonbot, clock)) == 1
        await lessonbot.settle()
        assert (await members(lessonbot))[DEV] == MEMBER_ACTIVE
        assert start_button(standin, DEV).startswith("team:start:")


async def test_a_lesson_its_author_retired_is_passed_over_by_the_team_not_posted_nor_reported(slack_settings,
                                                                                                standin, fixtures_dir):
    """The author takes the team's next lesson out of the course (a re-import retires it): the team goes on with the
    lesson after it, as a learner at it does, and the admin's digest names only what was posted."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        jobs = await _first_lesson_posted(lessonbot, clock)
        sample = load_course(SAMPLE)
        first, *_rest = sample.modules
        shortened = dataclasses.replace(first, lessons=tuple(lesson for lesson in first.lessons
                                                             if lesson.id != "check-the-sender"))
        async with lessonbot.db.transaction() as session:
            await import_course(session, dataclasses.replace(sample, modules=(shortened, *sample.modules[1:])))
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))  # Monday, 09:00 in New York
        assert (await _posted(jobs, lessonbot, standin)).startswith("📘 Lesson 2 of 4: Read a link before you tap it")
        clock.at(datetime(2027, 3, 22, 13, 1, tzinfo=UTC))  # the Monday after: the week's digest
        await post_team_lessons(jobs)
        await lessonbot.settle()
        digest = standin.posted(ADMIN)[-1].params["text"]
        assert "Check who is really writing" not in digest, digest


async def test_a_paid_course_is_never_posted_to_a_channel_past_its_free_preview(slack_settings, standin, fixtures_dir):
    from sqlalchemy import update

    from tests.dialogs.learning_support import PAID

    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        await sample_course(lessonbot.db)
        async with lessonbot.db.transaction() as session:
            await import_course(session, load_course(PAID))
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        jobs = context(lessonbot, clock)

        # Posted in the channel, a paid course's lessons would reach every member: refused, with the way that works.
        await slash(client, fixtures_dir, ADMIN, "team set passwords-that-hold at 09:00 in America/New_York",
                    standin=standin)
        await lessonbot.settle()
        assert "is a paid course" in private_texts(standin, ADMIN)[-1] and "mode direct" in private_texts(
            standin, ADMIN)[-1]
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Team)) == 0

        # A free course taken in the channel, then priced (its author re-imported it with a price): the lessons
        # already posted stay, a member without access cannot take one past the preview, and no more are posted.
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        await post_team_lessons(jobs)
        for day in (12, 15):
            clock.at(datetime(2027, 3, day, 14, 1, tzinfo=UTC))
            assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        second = standin.top_level(CHANNEL)[-1]
        assert second.params["text"].startswith("📘 Lesson 2 of 5")
        async with lessonbot.db.transaction() as session:
            await session.execute(update(Course).where(Course.slug == "spot-phishing")
                                  .values(access="paid", free_preview_lessons=1))
        [(_label, take)] = buttons(second)
        await press(client, fixtures_dir, BEA, take, ephemeral=False, message_ts=second.answer["ts"], standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1].startswith("Lesson 2 is part of the full course")
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(LessonProgress)) == 0
        clock.at(datetime(2027, 3, 16, 13, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 0
        await lessonbot.settle()
        assert not any(call.params["text"].startswith("📘 Lesson 3") for call in standin.top_level(CHANNEL))
        clock.at(datetime(2027, 3, 22, 13, 1, tzinfo=UTC))  # the Monday after: the digest names what was posted
        await post_team_lessons(jobs)
        await lessonbot.settle()
        digest = standin.posted(ADMIN)[-1].params["text"]
        assert "Check who is really writing" in digest and "Read a link before you tap it" not in digest, digest


async def test_a_member_new_to_the_bot_takes_a_spanish_courses_quiz_in_spanish(slack_settings, standin, fixtures_dir):
    """The team's course is in Spanish: a member whose language nobody said takes its quiz in the course's language,
    as a learner who picks a course does."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        await _team_on_a_spanish_course(client, fixtures_dir, standin, lessonbot)
        await _first_lesson_posted(lessonbot, HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC)))
        await _quiz_me(client, fixtures_dir, standin, lessonbot, BEA)
        assert "Pregunta 1 de 3" in private_texts(standin, BEA)[-1], private_texts(standin, BEA)
        # In the direct mode, Start makes the course theirs: in its language too.
        await slash(client, fixtures_dir, ADMIN, "team set phish-es mode direct", standin=standin)
        await lessonbot.settle()
        lessonbot.channels["slack"].profiles_per_minute = 60_000
        await sync_team_members(context(lessonbot, HandClock(datetime(2027, 3, 12, 15, 0, tzinfo=UTC))))
        await lessonbot.settle()
        await press(client, fixtures_dir, CAL, start_button(standin, CAL), ephemeral=False, channel="DCAL")
        await lessonbot.settle()
        assert standin.texts("DCAL")[-1].startswith("¡Todo listo"), standin.texts("DCAL")


async def test_a_spanish_courses_team_posts_speak_spanish_whoever_set_it_up(slack_settings, standin, fixtures_dir):
    """An admin who speaks English sets up a course in Spanish: what the team sees (the announcement, the lesson's
    post and its button, the weekly leaderboard) and the admin's digest of it speak the course's language; the
    admin's own answer speaks theirs."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        lessonbot.channels["slack"].profiles_per_minute = 60_000
        await _team_on_a_spanish_course(client, fixtures_dir, standin, lessonbot)
        assert private_texts(standin, ADMIN)[-1].startswith("Done. This channel takes “Pesca”")
        assert standin.texts(CHANNEL)[-1].startswith("📣 Este canal sigue «Pesca» en equipo"), standin.texts(CHANNEL)
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        await sync_team_members(context(lessonbot, clock))
        jobs = await _first_lesson_posted(lessonbot, clock)
        lesson_post = standin.top_level(CHANNEL)[-1]
        assert lesson_post.params["text"].startswith("📘 Lección 1 de 5"), lesson_post.params["text"]
        assert [label for label, _value in buttons(lesson_post)] == ["Ponme a prueba (solo tú lo ves)"]
        await take_quiz(client, fixtures_dir, standin, lessonbot, BEA, right=True)
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))  # Monday: the digest of the week before, then the lesson
        assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        [digest] = standin.posted(ADMIN)
        assert digest.params["text"].startswith("📊 Esta semana en «Pesca»"), digest.params["text"]
        clock.at(datetime(2027, 3, 19, 13, 1, tzinfo=UTC))  # Friday: the week's last lesson, then the leaderboard
        await post_team_lessons(jobs)
        await lessonbot.settle()
        assert standin.texts(CHANNEL)[-1].startswith("🏆 Clasificación: Pesca"), standin.texts(CHANNEL)[-1]


async def test_a_members_own_course_stays_theirs_when_they_take_the_teams_quiz(slack_settings, standin, fixtures_dir):
    """Bea learns another course at her own hour; "Quiz me" on the team's lesson counts for the team's course and
    leaves hers (and the lessons at her hour) as they were."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        team_course = await sample_course(lessonbot.db)
        own_course = await another_course(lessonbot)
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        jobs = context(lessonbot, clock)
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        await sync_team_members(jobs)
        own = {"status": ACTIVE, "course_id": own_course, "lesson_time": time(7, 0), "lesson_days": "1234567"}
        await learner_row(lessonbot, BEA, **own)
        await post_team_lessons(jobs)
        clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        await take_quiz(client, fixtures_dir, standin, lessonbot, BEA, right=True)
        bea = await learner_row(lessonbot, BEA)
        assert (bea.course_id, bea.lesson_time, bea.lesson_days) == (own_course, time(7, 0), "1234567")
        async with lessonbot.db.sessions() as session:
            done = await session.scalar(select(func.count()).select_from(LessonProgress).where(
                LessonProgress.user_id == bea.user_id, LessonProgress.completed_at.is_not(None)))
            enrolled = set(await session.scalars(select(Enrollment.course_id).where(
                Enrollment.user_id == bea.user_id)))
        assert done == 1 and enrolled == {team_course}  # her own course's place is untouched (set above, none yet)


async def test_team_commands_say_which_part_was_wrong_and_a_finished_course_starts_again_only_when_asked(
        slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        lessonbot.channels["slack"].post_pace = 0.0
        await short_course(lessonbot)

        async def admin_says(text: str) -> str:
            await slash(client, fixtures_dir, ADMIN, text, standin=standin)
            await lessonbot.settle()
            return private_texts(standin, ADMIN)[-1]

        async def published(slug: str, offered: bool) -> None:
            async with lessonbot.db.transaction() as session:
                assert await publish(session, slug, offered) is not None

        await published("short-phish", False)
        assert (await admin_says("team set short-phish")).startswith("There is no course 'short-phish'. Courses: —.")
        await published("short-phish", True)
        assert (await admin_says("team set short-phish at 25:00")).startswith("I couldn't read “25:00” as a time")
        assert (await admin_says("team set short-phish on blursday")).startswith("I couldn't read those days")
        assert (await admin_says("team set short-phish in Narnia")).startswith(
            "I couldn't find a time zone for “Narnia”")
        assert (await admin_says("team set short-phish mode sideways")).startswith("There is no mode “sideways”")
        # a city of two words, as a learner may name theirs
        assert (await admin_says("team set short-phish at 09:00 on every day in New York")).startswith("Done.")
        async with lessonbot.db.sessions() as session:
            assert (await session.scalar(select(Team))).timezone == "America/New_York"
        # unpublished now: the team keeps the course it has (and its lessons go on), though no team could pick it
        await published("short-phish", False)
        assert (await admin_says("team set short-phish on every day")).startswith("Done.")
        help_text = await admin_says("team help")
        assert "For team admins:" in help_text and "/lessonbot team restart" in help_text
        for typed in ("team", ""):  # /lessonbot team, or /lessonbot alone, says the same as team help
            assert await admin_says(typed) == help_text
        await slash(client, fixtures_dir, BEA, "team help", standin=standin)
        await lessonbot.settle()
        assert "For team admins:" not in private_texts(standin, BEA)[-1]

        # Every lesson posted, one a day; changing only the hour then keeps the course finished, and says how to
        # take it again.
        clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
        jobs = context(lessonbot, clock)
        await post_team_lessons(jobs)
        for day in (12, 13):
            clock.at(datetime(2027, 3, day, 14, 1, tzinfo=UTC))
            assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        assert standin.top_level(CHANNEL)[-1].params["text"].startswith("📘 Lesson 2 of 2")
        reply = await admin_says("team set short-phish at 10:00")
        assert reply.startswith("Done.") and "Every lesson of it has been posted already" in reply
        clock.at(datetime(2027, 3, 17, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 0
        assert (await admin_says("team restart")).startswith("Done: the next lesson posted here is the course's first")
        clock.at(datetime(2027, 3, 18, 14, 1, tzinfo=UTC))
        assert (await _posted(jobs, lessonbot, standin)).startswith("📘 Lesson 1 of 2")


async def test_the_direct_modes_nudge_skips_who_paused_stopped_or_rests_and_brings_the_rest_to_their_lesson(
        slack_settings, standin, fixtures_dir):
    """The direct mode's digest: a member who paused their lessons is not behind (counted apart), one who sent /stop
    is left out. Its Nudge reaches the others in their DMs, in the direct mode's words, with a button that works
    there: their next lesson (Start, for one who never pressed it); one in their quiet hours is not nudged now, and
    the admin is told so."""
    eve = "UEVE"
    standin.add_member(CHANNEL, eve, name="eve")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, BEA, CAL, DAN)
        await take_lesson_in_dm(client, fixtures_dir, standin, lessonbot, BEA)  # the first, offered at Start
        await learner_row(lessonbot, CAL, status=STOPPED)  # /stop: nothing more on the bot's own
        # Paused for a month: the digest below comes on the Monday after, up to a week and nine hours from now.
        await learner_row(lessonbot, DAN, status=PAUSED, paused_until=datetime.now(UTC) + timedelta(days=30))
        async with lessonbot.db.sessions() as session:
            eves_zone = zone_for(await session.scalar(
                select(User.timezone).join(TeamMember, TeamMember.user_id == User.id)
                .where(TeamMember.member == f"T111/{eve}")))
        now_there = datetime.now(UTC).astimezone(eves_zone)
        await learner_row(lessonbot, eve, quiet_start=(now_there - timedelta(hours=2)).time().replace(microsecond=0),
                          quiet_end=(now_there + timedelta(hours=2)).time().replace(microsecond=0))
        # The digest, the Monday after Bea's lesson at the team's hour (as in the direct mode's story above).
        async with lessonbot.db.sessions() as session:
            finished = await session.scalar(select(func.max(LessonProgress.completed_at)))
        done_on = finished.replace(tzinfo=finished.tzinfo or UTC).astimezone(ZoneInfo("Europe/Lisbon")).date()
        monday = done_on + timedelta(days=7 - done_on.weekday())
        team_clock = HandClock(datetime.combine(monday, time(8, 59), tzinfo=ZoneInfo("Europe/Lisbon")))
        await post_team_lessons(context(lessonbot, team_clock))
        team_clock.move(minutes=2)
        await post_team_lessons(context(lessonbot, team_clock))
        await lessonbot.settle()
        digest = standin.posted(ADMIN)[-1]
        lines = digest.params["text"].splitlines()
        assert lines[0] == "📊 This week in “Spot the phish, five minutes a day”: 5 members."
        behind = next(line for line in lines if line.startswith("Behind: "))
        assert behind.endswith("(3 members).") and "Bea" in behind and "Eve" in behind
        assert "Cal" not in behind and "Dan" not in behind
        [(label, nudge)] = buttons(digest)
        assert label == "Nudge the 3 behind"

        before = {user: len(standin.posted(user)) for user in (ADMIN, BEA, CAL, DAN, eve)}
        await press(client, fixtures_dir, ADMIN, nudge, ephemeral=False, standin=standin, channel="DADMIN")
        await lessonbot.settle()
        assert standin.texts("DADMIN")[-1] == ("Nudged 2 members, privately.\nNot nudged now: 1 member is in their "
                                               "quiet hours. Press again later to reach them.")
        assert {user: len(standin.posted(user)) - count for user, count in before.items()} == {
            ADMIN: 1, BEA: 1, CAL: 0, DAN: 0, eve: 0}
        # Bea's lessons come in her DM: nothing was posted in the channel to catch up on; her button is her next one.
        reminder = standin.posted(BEA)[-1]
        assert "channel" not in reminder.params["text"] and "lesson" in reminder.params["text"]
        assert buttons(reminder) == [("Continue my lesson", "lesson:next")]
        [(start_label, start)] = buttons(standin.posted(ADMIN)[-1])  # the admin never pressed Start
        assert (start_label, start.startswith("team:start:")) == ("Start my lessons", True)
        async with lessonbot.db.sessions() as session:
            assert [(row.kind, row.outcome) for row in await session.scalars(select(NudgeLog))] == [
                ("team_direct", "queued")] * 2
        await press(client, fixtures_dir, BEA, "lesson:next", ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        assert standin.texts("DBEA")[-1].startswith("📘 Lesson 2 of 5: Check who is really writing")
        # Dan's pause is said in the digest, apart from who is behind.
        assert lines[-1] == "Paused their lessons: 1 member (not counted as behind)."


# who is a member, and who may act for the team ------------------------------------------------------------------------


async def test_someone_the_bot_never_knew_leaving_the_channel_changes_nothing(slack_settings, standin, fixtures_dir):
    """Slack says someone left the team's channel whom the bot never met (never read with its members, never wrote):
    nobody is made known for it, no member is added, nothing is said."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        async with lessonbot.db.sessions() as session:
            people = await session.scalar(select(func.count()).select_from(User))
            identities = await session.scalar(select(func.count()).select_from(ChannelIdentity))
        before, calls = await members(lessonbot), len(standin.calls)
        await membership(client, fixtures_dir, "left", "USTRANGER")
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == people
            assert await session.scalar(select(func.count()).select_from(ChannelIdentity)) == identities
            assert await session.scalar(select(func.count()).select_from(InboundRow)
                                        .where(InboundRow.sender_id == "T111/USTRANGER")) == 1  # heard, once
        assert await members(lessonbot) == before
        assert standin.calls[calls:] == []


async def test_a_team_lead_is_told_which_hour_a_channel_lesson_is_for_members_in_other_time_zones(
        slack_settings, standin, fixtures_dir):
    """A channel's lesson comes at one hour, the team's, for everyone: its lead, setting the team up or asking
    /lessonbot team, reads what that hour is where the members are (the zones of their Slack profiles, read with the
    channel's members; the lead's own, read when they set the team up, among them), and for how many."""
    standin.add_member(CHANNEL, CAL, name=NAMES[CAL], tz="Asia/Tokyo")
    standin.add_member(CHANNEL, ADMIN, name=NAMES[ADMIN], tz="Asia/Kolkata", admin=True)
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, ADMIN, "team", standin=standin)
        await lessonbot.settle()
        day = datetime.now(ZoneInfo("America/New_York")).date()
        lesson = datetime.combine(day, time(9, 0), tzinfo=ZoneInfo("America/New_York"))
        lisbon, kolkata, tokyo = (f"{lesson.astimezone(ZoneInfo(zone)):%H:%M}"
                                  for zone in ("Europe/Lisbon", "Asia/Kolkata", "Asia/Tokyo"))
        where = (f"That hour where the members are: {lisbon} in Europe/Lisbon (2 members), {kolkata} in Asia/Kolkata "
                 f"(1 member), {tokyo} in Asia/Tokyo (1 member).")
        assert where in private_texts(standin, ADMIN)[-1].splitlines()
        await slash(client, fixtures_dir, BEA, "team", standin=standin)  # a member is not told the team's spread
        await lessonbot.settle()
        assert "That hour where the members are" not in private_texts(standin, BEA)[-1]
        await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
        await lessonbot.settle()
        assert where in private_texts(standin, ADMIN)[-1].splitlines()


async def test_a_member_slack_shows_no_profile_of_does_not_stop_the_others_from_being_enrolled(slack_settings, standin,
                                                                                               fixtures_dir):
    """A large channel's members are read one profile at a time: one Slack will not show (users.info answers
    user_not_found: a deactivated account, someone of another organisation hidden from this one) is left out of this
    read, and everyone else is enrolled, not held back until it is read again hours later."""
    standin.add_member(CHANNEL, "UGONE", name="gone")
    del standin.profiles["UGONE"]
    standin.channel_members[CHANNEL].remove("UGONE")
    standin.channel_members[CHANNEL].insert(1, "UGONE")  # read before bea, cal, dan, the guest and the bot
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot, read_members=False)
        assert await sync_team_members(context(lessonbot, clock)) == 1
        assert await members(lessonbot) == {ADMIN: MEMBER_ACTIVE, BEA: MEMBER_ACTIVE, CAL: MEMBER_ACTIVE,
                                            DAN: MEMBER_ACTIVE, GUEST: MEMBER_EXCLUDED, ROBOT: MEMBER_EXCLUDED}
        standin.add_member(CHANNEL, "UGONE", name="gone")  # shown again: read with the members next time
        clock.move(hours=7)
        assert await sync_team_members(context(lessonbot, clock)) == 1
        assert (await members(lessonbot))["UGONE"] == MEMBER_ACTIVE


async def _team_set_up(client, fixtures_dir, standin, lessonbot, *, read_members: bool = True) -> HandClock:
    """The sample course set up as ADMIN's team (and the channel's members read): the clock the jobs go by."""
    lessonbot.channels["slack"].post_pace = 0.0
    lessonbot.channels["slack"].profiles_per_minute = 60_000
    await sample_course(lessonbot.db)
    await slash(client, fixtures_dir, ADMIN, SET_UP, standin=standin)
    await lessonbot.settle()
    clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
    if read_members:
        await sync_team_members(context(lessonbot, clock))
    return clock


async def _posted(jobs: JobContext, lessonbot: Lessonbot, standin: SlackStandIn) -> str:
    """The one lesson the team-lessons job posts now, as the channel shows it."""
    assert await post_team_lessons(jobs) == 1
    await lessonbot.settle()
    return standin.top_level(CHANNEL)[-1].params["text"]


async def _first_lesson_posted(lessonbot: Lessonbot, clock: HandClock) -> JobContext:
    """The team's first lesson posted in the channel at its hour (12 March 2027, 09:00 in New York): the jobs."""
    jobs = context(lessonbot, clock)
    await post_team_lessons(jobs)
    clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
    assert await post_team_lessons(jobs) == 1
    await lessonbot.settle()
    return jobs


async def _team_on_a_spanish_course(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot) -> None:
    """The sample course in Spanish ("phish-es", "Pesca"), set up by the English-speaking ADMIN as the channel's
    team course, a lesson at 09:00 on weekdays in New York."""
    sample = load_course(SAMPLE)
    async with lessonbot.db.transaction() as session:
        await import_course(session, dataclasses.replace(sample, id="phish-es", title="Pesca", language="es"))
    await slash(client, fixtures_dir, ADMIN, "team set phish-es at 09:00 on weekdays in America/New_York",
                standin=standin)
    await lessonbot.settle()


async def _team_on_a_typed_question_first(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot) -> None:
    """The sample course with a first lesson of two questions answered in words ("typed-phish"), set up as the
    channel's team course, its first lesson posted (12 March 2027, 09:00 in New York)."""
    sample = load_course(SAMPLE)
    first, third = sample.modules[0].lessons[0], sample.modules[0].lessons[2]
    typed = (first.questions[2], dataclasses.replace(third.questions[0], id="link-owner-typed"))
    lessons = (dataclasses.replace(first, questions=typed), *sample.modules[0].lessons[1:])
    async with lessonbot.db.transaction() as session:
        await import_course(session, dataclasses.replace(
            sample, id="typed-phish", modules=(dataclasses.replace(sample.modules[0], lessons=lessons),)))
    await slash(client, fixtures_dir, ADMIN, "team set typed-phish at 09:00 on weekdays in America/New_York",
                standin=standin)
    await lessonbot.settle()
    clock = HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))
    await sync_team_members(context(lessonbot, clock))
    await _first_lesson_posted(lessonbot, clock)


async def _bea_opens_the_first_typed_questions_form(client, fixtures_dir, standin: SlackStandIn,
                                                     lessonbot: Lessonbot) -> Any:
    """The channel's team on "typed-phish" (`_team_on_a_typed_question_first`), Bea presses "Quiz me" and then "Type
    an answer" under the first question: the modal opened for her."""
    lessonbot.channels["slack"].post_pace = 0.0
    lessonbot.channels["slack"].profiles_per_minute = 60_000
    await _team_on_a_typed_question_first(client, fixtures_dir, standin, lessonbot)
    await _quiz_me(client, fixtures_dir, standin, lessonbot, BEA)
    [(_label, form)] = buttons(standin.ephemerals(CHANNEL, BEA)[-1])
    await press(client, fixtures_dir, BEA, form, ephemeral=True, message_ts=f"222.{next(_ids)}", standin=standin)
    return standin.opened_views()[-1]


async def _quiz_me(client, fixtures_dir, standin: SlackStandIn, lessonbot: Lessonbot, user: str) -> None:
    """`user` presses "Quiz me" on the channel's latest lesson post."""
    post = standin.top_level(CHANNEL)[-1]
    [(_label, take)] = buttons(post)
    await press(client, fixtures_dir, user, take, ephemeral=False, message_ts=post.answer["ts"], standin=standin)
    await lessonbot.settle()


async def test_a_guest_stays_out_however_they_ask_to_join(slack_settings, standin, fixtures_dir):
    """Excluded by the member read, a guest's `team leave` then `team join` does not let them in; nor does a `team
    join` typed before the members were read (users.info says they are a guest)."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot, read_members=False)
        await slash(client, fixtures_dir, GUEST, "team join", standin=standin)
        await lessonbot.settle()
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED
        await sync_team_members(context(lessonbot, HandClock(datetime(2027, 3, 12, 13, 0, tzinfo=UTC))))
        for words in ("team leave", "team join"):
            await slash(client, fixtures_dir, GUEST, words, standin=standin)
            await lessonbot.settle()
            assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED
        assert private_texts(standin, GUEST)[-1].startswith("The team course is for the workspace's members")


async def test_a_newcomer_whose_standing_slack_did_not_say_is_enrolled_by_the_member_read(
        slack_settings, standin, fixtures_dir):
    """A guest joins the channel while users.info answers 429: not enrolled on the join's word; the channel's members
    are read again at once, and the read (which reads the newcomer's profile) leaves them out."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        standin.remove_member(CHANNEL, GUEST)
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        standin.add_member(CHANNEL, GUEST, name=NAMES[GUEST], guest=True)
        standin.fail("users.info", Fault.rate_limited(retry_after=30))
        await membership(client, fixtures_dir, "joined", GUEST)
        await lessonbot.settle()
        assert GUEST not in await members(lessonbot)
        clock.move(minutes=1)
        assert await sync_team_members(context(lessonbot, clock)) == 1  # due again at once
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED


async def test_a_guest_let_in_before_their_profile_was_read_is_left_out_by_the_member_read(
        slack_settings, standin, fixtures_dir):
    """A guest joins while users.info answers 429 and presses the posted lesson's Quiz me before the members are read
    again (a press carries no word of who they are, and a paid course's preview must not wait for it): they get
    that quiz, and the read that follows at once reads their profile and leaves them out."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        standin.remove_member(CHANNEL, GUEST)
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        jobs = await _first_lesson_posted(lessonbot, clock)
        standin.add_member(CHANNEL, GUEST, name=NAMES[GUEST], guest=True)
        standin.fail("users.info", Fault.rate_limited(retry_after=30))
        await membership(client, fixtures_dir, "joined", GUEST)
        await lessonbot.settle()
        await _quiz_me(client, fixtures_dir, standin, lessonbot, GUEST)
        assert (await members(lessonbot))[GUEST] == MEMBER_ACTIVE
        clock.move(minutes=1)
        assert await sync_team_members(jobs) == 1
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED
        await _quiz_me(client, fixtures_dir, standin, lessonbot, GUEST)
        assert private_texts(standin, GUEST)[-1].startswith("The team course is for the workspace's members")
        # Read once: the next read asks Slack of no one it knows already.
        asked = len([call for call in standin.calls if call.method == "users.info"])
        clock.move(hours=7)
        assert await sync_team_members(jobs) == 1
        assert len([call for call in standin.calls if call.method == "users.info"]) == asked


async def test_a_member_who_comes_back_a_guest_is_left_out_by_the_member_read(slack_settings, standin, fixtures_dir):
    """Bea leaves the channel and comes back a guest of the workspace, her return seen only by reading the channel's
    members (Slack's event missed, or the lessons off then): her profile is read again, and she stays out."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        standin.remove_member(CHANNEL, BEA)
        await membership(client, fixtures_dir, "left", BEA)
        await lessonbot.settle()
        assert (await members(lessonbot))[BEA] == MEMBER_LEFT
        standin.add_member(CHANNEL, BEA, name=NAMES[BEA], guest=True)
        clock.move(hours=7)
        assert await sync_team_members(context(lessonbot, clock)) == 1
        assert (await members(lessonbot))[BEA] == MEMBER_EXCLUDED


async def test_an_admins_own_opt_out_stands_when_they_change_the_team(slack_settings, standin, fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, ADMIN, "team leave", standin=standin)
        await slash(client, fixtures_dir, ADMIN, "team set spot-phishing at 10:00", standin=standin)
        await lessonbot.settle()
        assert (await members(lessonbot))[ADMIN] == "opted_out"


async def test_someone_who_left_the_channel_is_not_made_a_member_again_by_quiz_me(slack_settings, standin,
                                                                                 fixtures_dir):
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await _first_lesson_posted(lessonbot, clock)
        standin.remove_member(CHANNEL, DAN)
        await membership(client, fixtures_dir, "left", DAN)
        await lessonbot.settle()
        await _quiz_me(client, fixtures_dir, standin, lessonbot, DAN)
        assert (await members(lessonbot))[DAN] == MEMBER_LEFT
        assert private_texts(standin, DAN)[-1].startswith("You are not taking this channel's team course.")


async def test_the_admin_the_digest_goes_to_may_press_its_nudge(slack_settings, standin, fixtures_dir, monkeypatch):
    """A workspace admin who changes the team becomes the weekly digest's reader; its Nudge button, pressed in their
    direct messages (where Slack sends no admin flag with a press), works for them."""
    standin.add_member(CHANNEL, "UBOSS", name="boss", admin=True)
    monkeypatch.setitem(NAMES, "UBOSS", "boss")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot, read_members=False)
        await slash(client, fixtures_dir, "UBOSS", "team set spot-phishing at 10:00", standin=standin)
        await lessonbot.settle()
        jobs = context(lessonbot, clock)
        await sync_team_members(jobs)
        await post_team_lessons(jobs)
        clock.at(datetime(2027, 3, 12, 15, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        clock.at(datetime(2027, 3, 15, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        [(_label, nudge)] = buttons(standin.posted("UBOSS")[-1])
        await press(client, fixtures_dir, "UBOSS", nudge, ephemeral=False, standin=standin, channel="DBOSS")
        await lessonbot.settle()
        assert standin.texts("DBOSS")[-1].startswith("Nudged ")



async def test_a_digests_nudge_pressed_again_after_the_nightly_prune_took_its_reminders_nudges_no_one_again(
        slack_settings, standin, fixtures_dir, monkeypatch):
    """A nudge is one a member per digest: its reminders' keys in the outbox said so, until the nightly prune deleted
    the reminders sent (MESSAGE_RETENTION_DAYS). Pressed again after that, its reminders were queued again and the
    press failed on their record in `nudge_log`, which is kept longer; that record says it where the button is still
    offered (dialogs/teams.py). Here the digest that offered it went with the same prune, and its Nudge with it: the
    press is refused, and no one is nudged twice."""
    from scheduler.clock import prune
    from storage.models import utcnow
    from storage.outbox import OFFER_REFRESH
    from storage.retention import MESSAGE_DAYS

    standin.add_member(CHANNEL, "UBOSS", name="boss", admin=True)
    monkeypatch.setitem(NAMES, "UBOSS", "boss")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot, read_members=False)
        await slash(client, fixtures_dir, "UBOSS", "team set spot-phishing at 10:00", standin=standin)
        await lessonbot.settle()
        jobs = context(lessonbot, clock)
        await sync_team_members(jobs)
        await post_team_lessons(jobs)
        clock.at(datetime(2027, 3, 12, 15, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        clock.at(datetime(2027, 3, 15, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1
        await lessonbot.settle()
        [(_label, nudge)] = buttons(standin.posted("UBOSS")[-1])
        await press(client, fixtures_dir, "UBOSS", nudge, ephemeral=False, standin=standin, channel="DBOSS")
        await lessonbot.settle()
        [nudged] = [text for text in standin.texts("DBOSS") if text.startswith("Nudged ")]
        reminded = {user: len(standin.texts(user)) for user in NAMES}

        later = utcnow() + timedelta(days=MESSAGE_DAYS, hours=1) + OFFER_REFRESH  # (an offer's last is known to a day)
        assert (await prune(JobContext(db=lessonbot.db, now=lambda: later)))["outbox_messages"] > 0
        await press(client, fixtures_dir, "UBOSS", nudge, ephemeral=False, standin=standin, channel="DBOSS")
        await lessonbot.settle()
        assert nudged != "Nudged 0 members, privately."
        assert standin.texts("DBOSS")[-1] == "That button isn't available."
        assert {user: len(standin.texts(user)) for user in NAMES} == reminded

ARCHIVED = "turned off: Slack says its channel is archived"
LOCKED_OUT = "Slack no longer lets Lessonbot into the channel's workspace"


@pytest.mark.parametrize(("refusal", "told"), [
    ("is_archived", ARCHIVED),  # the channel archived
    ("team_access_not_granted", LOCKED_OUT),  # the org-wide app's access to the workspace taken back
    ("token_revoked", LOCKED_OUT),  # its token no longer holds
    ("account_inactive", LOCKED_OUT),
])
async def test_a_post_no_later_one_would_fare_better_turns_the_lessons_off_without_using_up_the_course(
        refusal, told, slack_settings, standin, fixtures_dir):
    """Slack refuses the day's post for a reason no later post would escape (the channel archived, the app's access
    to the team's workspace taken back or its token no longer holding): by the next lesson day the team's lessons
    are off rather than each lesson spent on a post no one sees, its admin is told why in their direct messages,
    and the lesson no one saw is the one posted when `team on` starts them again."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        jobs = context(lessonbot, clock)
        await post_team_lessons(jobs)
        clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1  # Lesson 1, seen
        await lessonbot.settle()
        standin.fail("chat.postMessage", *[Fault.refused(refusal)] * 20)
        for day in (15, 16, 17):
            clock.at(datetime(2027, 3, day, 13, 1, tzinfo=UTC))
            await post_team_lessons(jobs)
            await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert (await session.scalar(select(Team))).status == "off"
        # the admin is told in their direct messages (the stand-in refuses every post here: it was tried)
        [telling] = [call for call in standin.calls if call.method == "chat.postMessage"
                     and told in call.params.get("text", "")]
        assert telling.params["channel"] != CHANNEL
        standin.faults["chat.postMessage"] = []  # unarchived, the access given back
        await slash(client, fixtures_dir, ADMIN, "team on", standin=standin)
        await lessonbot.settle()
        clock.at(datetime(2027, 3, 18, 13, 1, tzinfo=UTC))
        assert (await _posted(jobs, lessonbot, standin)).startswith("📘 Lesson 2 of 5")


async def test_a_channel_the_bot_may_not_post_in_turns_the_lessons_off_and_one_refused_post_is_told(
        slack_settings, standin, fixtures_dir):
    """A post Slack refuses for a reason of its own (`msg_too_long`) was seen by no one, but the next would fare
    better: the course goes on, and the digest's reader is told which lesson was not posted. A read-only channel
    (`restricted_action_read_only_channel`) refuses every post: the lessons are turned off, the reader told why."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        jobs = context(lessonbot, clock)
        await post_team_lessons(jobs)
        standin.fail("chat.postMessage", Fault.refused("msg_too_long"))
        clock.at(datetime(2027, 3, 12, 14, 1, tzinfo=UTC))
        assert await post_team_lessons(jobs) == 1  # Lesson 1, refused
        await lessonbot.settle()
        clock.at(datetime(2027, 3, 15, 13, 1, tzinfo=UTC))
        assert (await _posted(jobs, lessonbot, standin)).startswith("📘 Lesson 2 of 5")  # Lesson 2: the course goes on
        [told] = [call.params["text"] for call in standin.calls if call.method == "chat.postMessage"
                  and "was not posted" in call.params.get("text", "")]
        assert told.startswith("The team lesson “") and "of 2027-03-12 was not posted: Slack refused it " \
                                                          "(msg too long). The course goes on" in told
        async with lessonbot.db.sessions() as session:
            assert (await session.scalar(select(Team))).status == "active"
        standin.fail("chat.postMessage", *[Fault.refused("restricted_action_read_only_channel")] * 20)
        for day in (16, 17):
            clock.at(datetime(2027, 3, day, 13, 1, tzinfo=UTC))
            await post_team_lessons(jobs)
            await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert (await session.scalar(select(Team))).status == "off"
        assert [call for call in standin.calls if call.method == "chat.postMessage"
                and "Slack does not let Lessonbot post in its channel" in call.params.get("text", "")]


async def test_start_tells_a_member_their_own_course_waits_and_how_to_go_back(slack_settings, standin, fixtures_dir):
    """One course at a time is a learner's: Bea, learning another course at 07:00, presses Start on the team's
    invitation; her lessons become the team's, and she is told her own course waits, her place kept."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        own_course = await another_course(lessonbot)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock)
        await learner_row(lessonbot, BEA, status=ACTIVE, course_id=own_course, lesson_time=time(7, 0),
                          lesson_days="1234567")
        await press(client, fixtures_dir, BEA, start_button(standin, BEA), ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            title = (await session.get(Course, own_course)).title
        assert standin.texts("DBEA")[-1] == (f"Your own course, “{title}”, waits while you take the team's: your "
                                             "place in it is kept, and it comes back, at your own hour, when the "
                                             "team's lessons stop for you (/lessonbot settings course takes you back "
                                             "to it sooner).")


async def test_a_members_own_course_comes_back_at_their_hour_when_the_teams_lessons_stop(slack_settings, standin,
                                                                                         fixtures_dir):
    """Bea took her own course at 07:00 every day, then pressed Start on the team's invitation: when she opts out of
    the team's course, her own is hers again, at her hour, and she is told so in her direct messages. Cal, who had
    no course of his own, is paused when the team's lessons are turned off."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        team_course = await sample_course(lessonbot.db)
        own_course = await another_course(lessonbot)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, CAL)
        await learner_row(lessonbot, BEA, status=ACTIVE, course_id=own_course, lesson_time=time(7, 0),
                          lesson_days="1234567")
        await press(client, fixtures_dir, BEA, start_button(standin, BEA), ephemeral=False, channel="DBEA")
        await lessonbot.settle()
        bea = await learner_row(lessonbot, BEA)
        assert (bea.course_id, bea.lesson_time, bea.lesson_days) == (team_course, time(9, 0), "12345")
        async with lessonbot.db.sessions() as session:  # what waits is in her export
            assert [row["own_course_waiting"] for row in await memberships_of(session, bea.user_id)] == [
                "Phishing, the sequel"]
        await slash(client, fixtures_dir, BEA, "team leave", standin=standin)
        await lessonbot.settle()
        bea = await learner_row(lessonbot, BEA)
        assert (bea.status, bea.course_id, bea.lesson_time, bea.lesson_days) == (ACTIVE, own_course, time(7, 0),
                                                                                 "1234567")
        told = standin.texts(BEA)[-1].split("\n")
        assert told[0] == "The team's lessons stop here for you. Your own course, “Phishing, the sequel”, is back " \
                          "where you left it."
        assert told[1].startswith("Lessons at 07:00 on every day")
        async with lessonbot.db.sessions() as session:
            row = await session.scalar(select(TeamMember).where(TeamMember.member == f"T111/{BEA}"))
            assert row.own_course_id is None  # given back once
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        assert [(await learner_row(lessonbot, user)).status for user in (BEA, CAL)] == [ACTIVE, PAUSED]
        assert (await learner_row(lessonbot, BEA)).course_id == own_course


async def test_a_member_from_another_organisation_in_a_shared_channel_is_one_member(slack_settings, standin,
                                                                                   fixtures_dir, monkeypatch):
    """Slack Connect: Olga's own workspace is T999, the channel T111's. The member read names her as her presses and
    events do (her own workspace), and reading the members again neither adds her twice nor takes her for gone."""
    standin.add_member(CHANNEL, "UOLGA", team="T999", name="olga")
    monkeypatch.setitem(NAMES, "UOLGA", "olga")
    async with running(slack_settings, clock=False) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        clock.move(hours=7)
        await sync_team_members(context(lessonbot, clock))
        async with lessonbot.db.sessions() as session:
            olga = [(row.member, row.status) for row in await session.scalars(select(TeamMember))
                    if row.member.endswith("/UOLGA")]
        assert olga == [("T999/UOLGA", MEMBER_ACTIVE)]


async def test_an_excluded_guest_rejoining_unvouched_stays_excluded(slack_settings, standin, fixtures_dir):
    """The guest is excluded by the member read, leaves the channel, and comes back while users.info answers 429:
    the join Slack could not vouch for must not make them an active member."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED
        standin.remove_member(CHANNEL, GUEST)
        await membership(client, fixtures_dir, "left", GUEST)
        await lessonbot.settle()
        standin.add_member(CHANNEL, GUEST, name=NAMES[GUEST], guest=True)
        standin.fail("users.info", Fault.rate_limited(retry_after=30))
        await membership(client, fixtures_dir, "joined", GUEST)
        await lessonbot.settle()
        assert (await members(lessonbot))[GUEST] == MEMBER_EXCLUDED


async def test_a_member_who_deletes_their_data_leaves_the_teams_channel_and_its_lesson_to_the_others(
        slack_settings, standin, fixtures_dir):
    """Cal is the only one who ever wrote in the team's channel itself (a mention; the others take the quiz from the
    lesson's button): the channel is still the team's, not Cal's. Cal deletes their data, and Bea's "Quiz me" on the
    lesson posted there still opens the quiz."""
    async with running(slack_settings) as (client, lessonbot):
        clock = await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await _first_lesson_posted(lessonbot, clock)
        lesson_post = standin.top_level(CHANNEL)[-1]
        [(_label, take)] = buttons(lesson_post)
        mention = dm_event("<@UBOT111> what is smishing?", event_id="EvMention1", user=CAL,
                           channel=CHANNEL, type="app_mention")
        del mention["event"]["channel_type"]
        await post(client, json.dumps(mention).encode())
        await lessonbot.settle()
        await slash(client, fixtures_dir, CAL, "stop", standin=standin)
        await lessonbot.settle()
        await press(client, fixtures_dir, CAL, "stop:delete", ephemeral=True, standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, CAL)[-1].startswith("Done: I deleted everything")

        before = len(private_texts(standin, BEA))
        await press(client, fixtures_dir, BEA, take, ephemeral=False, message_ts=lesson_post.answer["ts"],
                    standin=standin)
        await lessonbot.settle()
        [question, *_] = private_texts(standin, BEA)[before:]
        assert question != "That button isn't available."
        assert any(value.startswith("quiz:") for _label, value in buttons(standin.ephemerals(CHANNEL, BEA)[-1]))
        async with lessonbot.db.sessions() as session:
            posts = list(await session.scalars(select(OutboxMessage).join(
                Conversation, Conversation.id == OutboxMessage.conversation_id).where(
                Conversation.chat_id == f"T111:{CHANNEL}", OutboxMessage.inbound_message_id.is_(None))))
        assert posts  # the team's posts in its channel stay as the records of what was sent


async def test_a_member_who_stopped_every_message_gets_no_invitation_until_they_ask(slack_settings, standin,
                                                                                   fixtures_dir):
    """Cal sent /lessonbot stop and chose to stop the lessons ("I won't send you anything on my own"). The team is
    turned off and on again: the others are invited again, Cal is not; Cal asks with /lessonbot team join, and the
    invitation comes."""
    async with running(slack_settings, clock=False) as (client, lessonbot):
        await sample_course(lessonbot.db)
        clock = HandClock(datetime(2027, 3, 14, 12, 0, tzinfo=UTC))
        await direct_team(client, fixtures_dir, standin, lessonbot, clock, BEA, CAL)
        await slash(client, fixtures_dir, CAL, "stop", standin=standin)
        await lessonbot.settle()
        await press(client, fixtures_dir, CAL, "stop:lessons", ephemeral=True, standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, CAL)[-1].startswith("Stopped: I won't send you anything on my own.")
        await slash(client, fixtures_dir, ADMIN, "team off", standin=standin)
        await lessonbot.settle()
        before = {user: len(standin.posted(user)) for user in (BEA, CAL)}
        await slash(client, fixtures_dir, ADMIN, "team on", standin=standin)
        await lessonbot.settle()
        assert {user: len(standin.posted(user)) - count for user, count in before.items()} == {BEA: 1, CAL: 0}
        await slash(client, fixtures_dir, CAL, "team join", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, CAL)[-1].startswith("Welcome back to the team course: your invitation is in")
        assert start_button(standin, CAL).startswith("team:start:")


async def test_a_team_admin_who_deletes_their_data_gets_no_more_digests_of_a_team_another_set_up(
        slack_settings, standin, fixtures_dir):
    """Ann set the team up; Bea, whom Ann made a team admin, set it again (its weekly digest now comes to Bea's DM).
    Bea deletes her data: the team keeps no address of hers, and its digest no longer goes to her."""
    async with running(slack_settings) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, ADMIN, f"team admin {BEA}", standin=standin)
        await lessonbot.settle()  # Bea is a team admin before she sets the team again
        await slash(client, fixtures_dir, BEA, SET_UP, standin=standin)
        await lessonbot.settle()
        async with lessonbot.db.sessions() as session:
            assert (await session.scalar(select(Team))).digest_chat == f"T111:{BEA}"
        await slash(client, fixtures_dir, BEA, "stop", standin=standin)
        await lessonbot.settle()
        await press(client, fixtures_dir, BEA, "stop:delete", ephemeral=True, standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1].startswith("Done: I deleted everything")
        async with lessonbot.db.sessions() as session:
            team = await session.scalar(select(Team))
        assert team.digest_chat is None and BEA not in team.created_by


async def test_a_team_admin_grant_that_named_a_member_keeps_no_trace_of_them_once_they_delete_their_data(
        slack_settings, standin, fixtures_dir):
    """Ann made Bea a team admin by her Slack member id (`/lessonbot team admin UBEA`), the way Slack names people;
    Bea deletes her data: the audit of that command, the command Ann typed and its answer no longer name her."""
    async with running(slack_settings) as (client, lessonbot):
        await _team_set_up(client, fixtures_dir, standin, lessonbot)
        await slash(client, fixtures_dir, ADMIN, f"team admin {BEA}", standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, ADMIN)[-1] == f"{BEA} may now administer this workspace's team courses."
        await slash(client, fixtures_dir, BEA, "stop", standin=standin)
        await lessonbot.settle()
        await press(client, fixtures_dir, BEA, "stop:delete", ephemeral=True, standin=standin)
        await lessonbot.settle()
        assert private_texts(standin, BEA)[-1].startswith("Done: I deleted everything")
        async with lessonbot.db.sessions() as session:
            kept = {
                "audit": [row.arguments for row in await session.scalars(select(AdminAuditEntry))],
                "typed": [row.payload.get("text", "") for row in await session.scalars(select(InboundRow))],
                "answers": [row.payload.get("text", "") for row in await session.scalars(select(OutboxMessage))],
            }
        assert {where: [text for text in texts if BEA in text] for where, texts in kept.items()} == {
            "audit": [], "typed": [], "answers": []}
        assert "(a learner's address, erased)" in kept["audit"]
