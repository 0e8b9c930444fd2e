"""A learner's data: /export as a file, and the same for admins (/admin export|erase) and operators (the CLI)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.cli import main
from bot.cli.admin import operator
from bot.core import Lessonbot
from bot.messages import Document
from bot.messages import InboundMessage as Message
from storage.models import AdminAuditEntry, ChannelIdentity, InboundMessage, OutboxMessage
from storage.personal_data import ERASED_ARGUMENTS
from tests.dialogs.learning_support import Learning, import_sample, learning_bot, onboard  # noqa: F401
from tests.support import RecordingChannel


@pytest.fixture
async def admin_bot(settings):
    channel = RecordingChannel()
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    await import_sample(bot)
    yield bot, channel
    await bot.stop()


def documents(channel: RecordingChannel, chat: str) -> list[Document]:
    return [reply for reply in channel.sent[chat] if isinstance(reply, Document)]


async def ann_learns(bot: Lessonbot, channel: RecordingChannel) -> Learning:
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    await ann.press("Start my first lesson")
    await ann.say("what is a zebra phish?")
    return ann


async def test_export_sends_everything_kept_as_a_json_file(admin_bot):
    bot, channel = admin_bot
    ann = await ann_learns(bot, channel)
    await ann.say("/export")
    [document] = documents(channel, "ann")
    assert (document.filename, document.media_type) == ("lessonbot-data.json", "application/json")
    assert document.caption.startswith("Everything I keep about you")
    data = json.loads(Path(document.path).read_text(encoding="utf-8"))
    assert data["profile"]["name"] == "Ann" and data["profile"]["addresses"] == ["test:ann"]
    assert data["profile"]["time_zone"] == "Europe/Lisbon" and data["profile"]["status"] == "active"
    # every column of the learner's row that is theirs (not the /link code, a credential while it lasts)
    assert {"last_active_on", "language_chosen", "next_lesson_at", "learner_since"} <= set(data["profile"])
    assert [e["course"] for e in data["enrollments"]] == ["spot-phishing"]
    assert data["progress"] and data["progress"][0]["lesson"] == "What a phishing message wants"
    assert "what is a zebra phish?" in [m["text"] for m in data["messages"]]
    assert any(r["text"].startswith("📘 Lesson 1 of 5") for r in data["replies"])
    assert data["payments"] == []  # a free course
    assert set(data) == {"exported_at", "profile", "enrollments", "progress", "answers", "certificates", "payments",
                         "questions", "teams", "messages", "replies", "entitlements", "scheduled_lessons", "nudges",
                         "broadcasts_received", "question_allowance", "admin_roles", "dashboard_sign_ins",
                         "admin_commands", "link_attempts", "choices_offered", "team_admin_of"}
    assert data["choices_offered"] and all(choice["value"] for choice in data["choices_offered"])
    json.dumps(data)  # every row's values made JSON: dates as ISO text


async def test_export_is_refused_in_a_group(admin_bot):
    bot, channel = admin_bot
    await ann_learns(bot, channel)
    await bot.receive(Message(channel="test", platform_id="g1", chat_id="-100", sender_id="ann", text="/export"))
    await bot.settle()
    assert channel.texts("-100") == [
        "I send your data only in a private chat: send /export to me there, not in a group."
    ]
    assert documents(channel, "-100") == [] and documents(channel, "ann") == []


async def test_admin_exports_then_erases_a_learner_and_the_audit_keeps_no_address(admin_bot):
    bot, channel = admin_bot
    await ann_learns(bot, channel)
    boss = Learning(bot, channel, chat="boss")
    [usage] = await boss.say("/admin export ann")
    assert usage.startswith("No learner is known as 'ann'. Name them as channel:id")
    [other] = await boss.say("/admin export test:anna")  # someone else, whose address begins like hers
    assert other.startswith("No learner is known as 'test:anna'.")
    await boss.say("/admin export test:ann")
    [document] = documents(channel, "boss")
    assert document.caption == "The data of test:ann, as a JSON file."
    assert json.loads(Path(document.path).read_text(encoding="utf-8"))["profile"]["name"] == "Ann"

    async with bot.db.sessions() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
    [asked] = await boss.say("/admin erase test:ann")
    assert asked.endswith("To go ahead, send /admin erase test:ann confirm")
    [erased] = await boss.say("/admin erase test:ann confirm")
    assert erased.startswith("Erased: ") and "test:ann" not in erased
    assert not Path(document.path).exists()  # the export went with the rest
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is None
        audit = [(r.identity, r.command, r.arguments, r.outcome)
                 for r in await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))]
    assert not any("test:ann" in arguments.split() for _who, _command, arguments, _outcome in audit), audit
    assert {(who, arguments) for who, command, arguments, _outcome in audit if command == "erase"} == {
        ("test:boss", ERASED_ARGUMENTS), ("test:boss", f"user {ann_id}")
    }
    assert ("test:boss", "export", ERASED_ARGUMENTS, "ok") in audit  # it named her: blanked by the erasure
    assert ("test:boss", "export", "test:anna", "invalid") in audit  # it did not
    async with bot.db.sessions() as session:
        typed = [row.payload.get("text") for row in await session.scalars(select(InboundMessage))]
    assert "/admin export test:anna" in typed and "/admin export test:ann" not in typed


async def test_an_admin_answer_naming_a_learner_that_failed_is_not_sent_by_a_requeue_after_her_erasure(admin_bot):
    """The answer to an admin's command naming a learner that failed to go (the platform down) is not sent yet: her
    erasure cancels it as it does one waiting, so a requeue of the failed replies sends nothing, blank or not."""
    from bot.channel import PermanentSendError

    bot, channel = admin_bot
    await ann_learns(bot, channel)
    boss = Learning(bot, channel, chat="boss")
    channel.failures.append(PermanentSendError("the platform is down"))
    await boss.say("/admin export test:ann")
    assert documents(channel, "boss") == []  # it failed
    await boss.say("/admin erase test:ann confirm")
    before = len(channel.sent["boss"])
    assert await boss.say("/admin requeue all") == ["Requeued 0 failed replies."]
    await bot.dispatcher.flush()
    assert len(channel.sent["boss"]) == before + 1


async def cli(*argv: str) -> int:
    """`lessonbot …` as typed; in a thread, since each command runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))


async def test_cli_exports_and_erases_a_learner(admin_bot, settings, tmp_path, monkeypatch, capsys):
    bot, channel = admin_bot
    await ann_learns(bot, channel)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    assert await cli("learner", "export", "test:nobody") == 1
    assert "No learner is known as test:nobody" in capsys.readouterr().err
    out = tmp_path / "ann.json"
    assert await cli("learner", "export", "test:ann", "--output", str(out)) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["profile"]["name"] == "Ann"
    assert await cli("learner", "erase", "test:ann") == 2  # not without --yes
    assert "--yes" in capsys.readouterr().err
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is not None
    assert await cli("learner", "erase", "test:ann", "--yes") == 0
    assert capsys.readouterr().out.startswith("Erased test:ann:")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is None
        [line] = await session.scalars(select(AdminAuditEntry).where(AdminAuditEntry.command == "erase"))
        assert (line.identity, line.arguments.startswith("user ")) == (operator(), True)  # cli:<login name>


async def test_an_erasure_leaves_the_files_to_its_caller_after_the_commit_so_a_rollback_keeps_them(admin_bot):
    from dialogs import personal

    bot, channel = admin_bot
    await ann_learns(bot, channel)
    boss = Learning(bot, channel, chat="boss")
    await boss.say("/admin export test:ann")
    [document] = documents(channel, "boss")
    async with bot.db.sessions() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
    with pytest.raises(RuntimeError):
        async with bot.db.transaction() as session:
            erasure = await personal.erase(session, ann_id, by="test")
            raise RuntimeError("a later statement of the same transaction fails")
    assert Path(document.path).exists()  # nothing of hers went, her files neither
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is not None
    async with bot.db.transaction() as session:
        erasure = await personal.erase(session, ann_id, by="test")
    personal.remove_files(erasure, bot.settings.data_dir)
    assert not Path(document.path).exists()


async def test_an_erasure_typed_in_a_group_takes_the_persons_steps_out_of_the_groups_state(admin_bot):
    from storage.models import Conversation
    from tests.storage.test_personal_data import say

    async def group_state() -> str:
        async with bot.db.sessions() as session:
            return json.dumps(await session.scalar(select(Conversation.state).where(Conversation.chat_id == "grp")))

    bot, channel = admin_bot
    await onboard(Learning(bot, channel, chat="ann"))
    await say(bot, "/stop", chat="grp", sender="ann", name="Ann")  # a step of hers in the group's state
    assert '"member": "ann"' in await group_state()
    await say(bot, "/admin erase test:ann confirm", chat="grp", sender="boss", name="Boss")
    assert channel.texts("grp")[-1].startswith("Erased: ")
    assert '"ann"' not in await group_state()  # the turn's own copy of the state was scrubbed as the row was


async def test_an_erasure_in_a_group_leaves_another_members_step_open_there(admin_bot):
    """Ann and Bea each have a question of their own waiting in a group: Ann's erasure takes hers out and leaves Bea's,
    which Bea still answers."""
    from storage.models import Conversation
    from tests.storage.test_personal_data import say

    bot, channel = admin_bot
    await onboard(Learning(bot, channel, chat="ann"))
    await say(bot, "/stop", chat="grp", sender="ann", name="Ann")
    await say(bot, "/stop", chat="grp", sender="bea", name="Bea")
    async with bot.db.sessions() as session:
        state = await session.scalar(select(Conversation.state).where(Conversation.chat_id == "grp"))
    assert [entry["member"] for entry in state["flows"]] == ["ann", "bea"]  # Bea's /stop left Ann's question
    await say(bot, "/admin erase test:ann confirm", chat="grp", sender="boss", name="Boss")
    assert channel.texts("grp")[-1].startswith("Erased: ")
    async with bot.db.sessions() as session:
        state = await session.scalar(select(Conversation.state).where(Conversation.chat_id == "grp"))
    assert [entry["member"] for entry in state["flows"]] == ["bea"]
    await say(bot, "cancel", chat="grp", sender="bea", name="Bea")
    assert channel.texts("grp")[-1] == "OK, nothing changed."


async def test_the_nightly_prune_sweeps_personal_files_no_row_names_and_exports_past_their_days(admin_bot):
    import os
    from datetime import timedelta

    from dialogs.personal import EXPORT_DAYS, export_folder
    from scheduler.clock import prune
    from scheduler.context import JobContext
    from storage.courses import Course
    from storage.learners import Certificate
    from storage.models import utcnow

    bot, channel = admin_bot
    ann = await ann_learns(bot, channel)
    await ann.say("/export")
    [fresh_export] = [Path(document.path) for document in documents(channel, "ann")]
    data_dir = Path(bot.settings.data_dir)
    now = utcnow()

    def written(path: Path, ago: timedelta, text: str = "{}") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        moment = (now - ago).timestamp()
        os.utime(path, (moment, moment))
        return path

    async with bot.db.transaction() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
        course_id = await session.scalar(select(Course.id))
        kept_pdf = written(data_dir / "certificates" / "LB-KEPT-0000-0000-0000.pdf", timedelta(days=30))
        session.add(Certificate(code=kept_pdf.stem, user_id=ann_id, course_id=course_id, learner_name="Ann",
                                course_title="Spot phishing", file_path=str(kept_pdf)))
    orphan_pdf = written(data_dir / "certificates" / "LB-GONE-0000-0000-0000.pdf", timedelta(days=2))
    rendering_pdf = written(data_dir / "certificates" / "LB-NEWS-0000-0000-0000.pdf", timedelta(minutes=5))
    old_export = written(export_folder(data_dir, ann_id) / "lessonbot-data-old.json", timedelta(days=EXPORT_DAYS + 1))
    erased = written(export_folder(data_dir, ann_id + 1000) / "lessonbot-data-x.json", timedelta(days=1))
    being_written = written(export_folder(data_dir, ann_id + 1001) / "lessonbot-data-y.json", timedelta(minutes=1))
    stranger = written(data_dir / "exports" / "notes" / "keep.txt", timedelta(days=90))

    pruned = await prune(JobContext(db=bot.db, data_dir=data_dir, now=lambda: now))

    assert (pruned["certificates files"], pruned["exports files"]) == (1, 2)
    assert not orphan_pdf.exists() and not old_export.exists() and not erased.parent.exists()
    # a certificate with its row, a PDF or an export that may belong to a turn not yet committed, the export sent
    # today, and anything the sweep did not write stay
    assert kept_pdf.exists() and rendering_pdf.exists() and being_written.exists()
    assert fresh_export.exists() and stranger.exists()
    assert await prune(JobContext(db=bot.db, data_dir=data_dir, now=lambda: now)) == {
        **{key: 0 for key in pruned}}


async def stored_replies(bot: Lessonbot) -> list[tuple[str, dict]]:
    async with bot.db.sessions() as session:
        return [(row.status, row.payload) for row in await session.scalars(select(OutboxMessage).order_by(
            OutboxMessage.id))]


async def test_an_erasure_finds_the_address_at_a_line_start_or_markdown_escaped_in_the_admins_replies(admin_bot):
    """/admin role list writes one address a line; the translator writes test:ann_lee as test:ann\\_lee: both are
    read as shown, not as the payload's JSON text."""
    bot, channel = admin_bot
    await onboard(Learning(bot, channel, chat="ann_lee"))
    boss = Learning(bot, channel, chat="boss")
    await boss.say("/admin role grant test:ann_lee support")
    [listing] = await boss.say("/admin role list")
    assert "\ntest:ann_lee — support" in listing
    await boss.say("/admin role revoke test:ann_lee support")
    await boss.say("/admin export test:ann_lee")
    texts = [payload.get("text") or payload.get("caption") for _status, payload in await stored_replies(bot)]
    assert "Roles (besides the owners in the ADMINS setting):\ntest:ann\\_lee — support" in texts
    assert "The data of test:ann\\_lee, as a JSON file." in texts
    await boss.say("/admin erase test:ann_lee")
    await boss.say("/admin erase test:ann_lee confirm")
    left = [payload for _status, payload in await stored_replies(bot) if "ann" in json.dumps(payload)]
    assert not left, left


async def test_a_reply_not_sent_yet_that_names_the_erased_person_is_cancelled_not_sent_blank(admin_bot):
    from datetime import timedelta

    from storage.models import Conversation, utcnow
    from storage.outbox import OutboxEntry, OutboxStatus, enqueue
    from storage.personal_data import BLANK_REPLY

    bot, channel = admin_bot
    await onboard(Learning(bot, channel, chat="ann"))
    boss = Learning(bot, channel, chat="boss")
    await boss.say("/admin stats")
    async with bot.db.transaction() as session:
        chat = await session.scalar(select(Conversation.id).where(Conversation.chat_id == "boss"))
        await enqueue(session, [OutboxEntry(conversation_id=chat, channel="test", chat_id="boss",
                                            payload={"kind": "text", "text": "Reminder: test:ann asked for help"})],
                      now=utcnow() + timedelta(hours=1))
    await boss.say("/admin erase test:ann confirm")
    withheld = [(status, payload) for status, payload in await stored_replies(bot) if status == OutboxStatus.CANCELLED]
    assert withheld == [(OutboxStatus.CANCELLED, BLANK_REPLY)]
    assert not any("test:ann" in json.dumps(payload) for _status, payload in await stored_replies(bot))


async def test_an_admin_who_erases_themselves_is_not_named_again_by_the_audit(admin_bot):
    from storage.personal_data import ERASED_ACTOR

    bot, channel = admin_bot
    boss = Learning(bot, channel, chat="boss")
    await onboard(boss)
    await boss.say("/admin stats")
    [erased] = await boss.say("/admin erase test:boss confirm")
    assert erased.startswith("Erased: ")
    async with bot.db.sessions() as session:
        audit = [(r.identity, r.command) for r in await session.scalars(select(AdminAuditEntry).order_by(
            AdminAuditEntry.id))]
    assert audit == [(ERASED_ACTOR, "stats"), (ERASED_ACTOR, "erase"), (ERASED_ACTOR, "erase")]


async def test_a_workspaces_support_may_not_reach_a_persons_other_apps_through_their_slack_address(admin_bot):
    bot, channel = admin_bot
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    async with bot.db.transaction() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
        session.add(ChannelIdentity(channel="slack", external_id="T01/U02", user_id=ann_id))  # as /link leaves it
    boss, cleo = Learning(bot, channel, chat="boss"), Learning(bot, channel, chat="cleo")
    await boss.say("/admin role grant test:cleo support team:T01")
    [export] = await cleo.say("/admin export slack:T01/U02")
    assert export == ("slack:T01/U02 is linked to apps outside the workspace your role covers: an admin whose role "
                      "holds everywhere can export or erase their data.")
    [erase] = await cleo.say("/admin erase slack:T01/U02 confirm")
    assert erase == export
    assert documents(channel, "cleo") == []
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is not None
    await boss.say("/admin erase slack:T01/U02 confirm")  # an owner may
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "ann")) is None


async def test_a_person_who_installed_the_app_for_their_enterprise_org_is_not_kept_as_its_installer(admin_bot):
    """An org-wide install (Enterprise Grid) is stored for the org, with no workspace; the person who installed it
    writes from their own workspace (slack:T5/U9). Erased, they are no longer named as its installer, nor is their
    token kept; another org's install, by someone else, stays as it was."""
    from slack_sdk.oauth.installation_store import Installation

    from channels.slack.installations import SlackInstallations
    from channels.slack.store import SlackInstallationStore
    from storage.slack import SlackInstallation

    bot, channel = admin_bot
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    async with bot.db.transaction() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
        session.add(ChannelIdentity(channel="slack", external_id="T5/U9", user_id=ann_id))  # as /link leaves it
    store = SlackInstallationStore(SlackInstallations(bot.db))
    for enterprise, installer in (("E9", "U9"), ("E7", "U7")):  # as Bolt's OAuth flow saves them
        await store.async_save(Installation(app_id="A1", enterprise_id=enterprise, team_id=None, bot_token="xoxb-org",
                                            bot_id="B9", bot_user_id="UB9", user_id=installer,
                                            user_token=f"xoxp-{installer}", is_enterprise_install=True))
    await ann.say("/stop")
    [done] = await ann.say("Stop and delete my data", choice="stop:delete")
    assert done.startswith("Done: I deleted everything")
    async with bot.db.sessions() as session:
        rows = {row.enterprise_id: (row.user_id, row.user_token, row.bot_token)
                for row in await session.scalars(select(SlackInstallation))}
    assert rows == {"E9": (None, None, "xoxb-org"), "E7": ("U7", "xoxp-U7", "xoxb-org")}


class Members:
    """A platform listing one member of a team's chat, with their direct chat with the bot."""

    def __init__(self, member: str, direct_chat: str) -> None:
        self.member, self.direct_chat = member, direct_chat

    async def chat_members(self, _chat_id: str) -> list[str]:
        return [self.member]

    async def member_profile(self, sender_id: str):
        from bot.channel import ChatMember

        return ChatMember(sender_id=sender_id, name="Carl Weiss", timezone="America/Bogota",
                          direct_chat=self.direct_chat)


async def direct_team(bot: Lessonbot):
    from datetime import time

    from storage.courses import Course
    from storage.teams import Team

    async with bot.db.transaction() as session:
        team = Team(channel="test", chat_id="grp", workspace="W", course_id=await session.scalar(select(Course.id)),
                    lesson_time=time(9), created_by="someone", mode="direct")
        session.add(team)
    return team


async def sync(bot: Lessonbot, team, members: Members) -> None:
    from scheduler.context import JobContext
    from scheduler.teams import sync_one
    from storage.models import utcnow

    await sync_one(JobContext(db=bot.db, data_dir=bot.settings.data_dir, now=utcnow), team, members, utcnow())
    await bot.settle()


async def chat_replies(bot: Lessonbot, chat: str) -> list[tuple[str, dict]]:
    async with bot.db.sessions() as session:
        return [(row.status, row.payload) for row in await session.scalars(
            select(OutboxMessage).where(OutboxMessage.chat_id == chat))]


async def test_a_team_members_direct_chat_is_theirs_before_they_write_there_and_goes_with_them(admin_bot):
    from storage.models import Conversation

    bot, channel = admin_bot
    await sync(bot, await direct_team(bot), Members("carl", "carl-dm"))
    assert channel.texts("carl-dm")[0].startswith("👋 Your team takes")  # the invitation, sent
    async with bot.db.sessions() as session:
        carl = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "carl"))
        owner = await session.scalar(select(Conversation.user_id).where(Conversation.chat_id == "carl-dm"))
    assert owner == carl
    [erased] = await Learning(bot, channel, chat="boss").say("/admin erase test:carl confirm")
    assert erased.startswith("Erased: 0 messages and 1 replies")
    assert await chat_replies(bot, "carl-dm") == []


async def test_a_direct_chat_a_team_knew_before_it_named_its_member_goes_with_them_too(admin_bot):
    from storage.models import Conversation

    bot, channel = admin_bot
    await sync(bot, await direct_team(bot), Members("carl", "carl-dm"))
    async with bot.db.transaction() as session:  # as a conversation made before the chat named its member
        row = await session.scalar(select(Conversation).where(Conversation.chat_id == "carl-dm"))
        row.user_id = None
    assert [status for status, _payload in await chat_replies(bot, "carl-dm")] == ["sent"]
    await Learning(bot, channel, chat="boss").say("/admin erase test:carl confirm")
    assert await chat_replies(bot, "carl-dm") == []


async def test_an_erased_team_member_is_neither_made_again_nor_invited_by_the_member_sync(admin_bot):
    from storage.models import User
    from storage.teams import MEMBER_OPTED_OUT, TeamMember

    bot, channel = admin_bot
    team = await direct_team(bot)
    members = Members("carl", "carl")  # their direct chat is where they write from
    await sync(bot, team, members)
    carl = Learning(bot, channel, chat="carl")
    await carl.say("Start my lessons", choice=f"team:start:{team.id}:0")
    await Learning(bot, channel, chat="boss").say("/admin erase test:carl confirm")
    invitations = len(channel.texts("carl"))
    await sync(bot, team, members)
    async with bot.db.sessions() as session:
        # nobody made again from the platform's profile
        assert [row.external_id for row in await session.scalars(select(ChannelIdentity))] == ["boss"]
        assert len(list(await session.scalars(select(User)))) == 1
        [member] = await session.scalars(select(TeamMember))
    # A bare opt-out: the team and the member id, nothing of the person.
    assert (member.member, member.status, member.user_id, member.direct_chat, member.started_at, member.hidden) == (
        "carl", MEMBER_OPTED_OUT, None, None, None, False)
    assert len(channel.texts("carl")) == invitations  # and not invited again


@pytest.mark.parametrize("asked_by", ["ann", "boss"])  # her own /export, or an admin's /admin export of her data
async def test_an_export_still_waiting_to_be_sent_outlives_its_days(admin_bot, asked_by):
    from datetime import timedelta

    from dialogs.personal import EXPORT_DAYS
    from scheduler.clock import prune
    from scheduler.context import JobContext
    from storage.models import utcnow
    from storage.outbox import OutboxStatus

    bot, channel = admin_bot
    ann = await ann_learns(bot, channel)
    if asked_by == "ann":
        await ann.say("/export")
    else:
        await Learning(bot, channel, chat="boss").say("/admin export test:ann")
    [export] = [Path(document.path) for document in documents(channel, asked_by)]
    now = utcnow() + timedelta(days=EXPORT_DAYS + 1)  # (WhatsApp's window closed before it went: it waits)
    async with bot.db.transaction() as session:
        [row] = [row for row in await session.scalars(select(OutboxMessage)) if row.payload.get("path")]
        row.status = OutboxStatus.WAITING
    ctx = JobContext(db=bot.db, data_dir=Path(bot.settings.data_dir), now=lambda: now)
    assert (await prune(ctx))["exports files"] == 0 and export.exists()
    async with bot.db.transaction() as session:
        await session.execute(update(OutboxMessage).where(OutboxMessage.id == row.id).values(status=OutboxStatus.SENT))
    assert (await prune(ctx))["exports files"] == 1 and not export.exists()


async def test_one_who_starts_again_after_an_erasure_gets_the_lesson_of_that_day(learning_bot):
    """She deletes her data while her morning lesson waits on the platform's rate limit, and starts again that day
    with lessons in the evening. On SQLite her new user row may take the erased one's id: the cancelled lesson's
    outbox row no longer holds the day's key (`lesson:<user>:<date>`), so the new lesson is queued and sent."""
    from collections import Counter
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    from bot.channel import RateLimited
    from scheduler.planner import next_lesson_after, plan_lessons
    from storage.models import utcnow
    from storage.outbox import OutboxStatus
    from storage.scheduling import QUEUED
    from tests.dialogs.learning_support import learner_row
    from tests.scheduler.support import HandClock, context

    lisbon = ZoneInfo("Europe/Lisbon")
    bot, channel = learning_bot
    ann = Learning(bot, channel)
    await onboard(ann, at="08:00")
    first, _ = await learner_row(bot, "test", "ann")
    clock = HandClock(utcnow())
    jobs = context(bot.db, clock)
    await plan_lessons(jobs)  # the planner's minutes before the lesson's (each learner's next lesson is found)
    clock.move(minutes=1)
    await plan_lessons(jobs)
    morning = next_lesson_after(clock.now(), zone=lisbon, at=time(8), days="1234567")
    clock.at(morning + timedelta(seconds=30))
    channel.failures.append(RateLimited(3600))  # the platform says: wait an hour; the lesson stays queued
    assert await plan_lessons(jobs) == Counter({QUEUED: 1})
    await bot.settle()
    day = morning.astimezone(lisbon).date().isoformat()
    async with bot.db.sessions() as session:
        [waiting] = list(await session.scalars(select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"lesson:{first.id}:{day}")))
    assert waiting.status == OutboxStatus.PENDING

    await ann.say("/stop")
    await ann.say("Stop and delete my data", choice="stop:delete")
    assert channel.texts("ann")[-1].startswith("Done: I deleted everything")
    await onboard(ann, at="20:00")
    again, _ = await learner_row(bot, "test", "ann")
    clock.move(minutes=1)
    await plan_lessons(jobs)
    evening = next_lesson_after(clock.now(), zone=lisbon, at=time(20), days="1234567")
    assert evening.astimezone(lisbon).date().isoformat() == day
    clock.at(evening + timedelta(seconds=30))
    assert await plan_lessons(jobs) == Counter({QUEUED: 1})
    await bot.settle()
    async with bot.db.sessions() as session:
        sent = [(row.status, row.chat_id) for row in await session.scalars(select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"lesson:{again.id}:{day}"))]
    assert sent == [(OutboxStatus.SENT, "ann")], (sent, first.id, again.id)


async def test_a_support_may_not_erase_an_owner_the_settings_name_in_chat_either(admin_bot):
    bot, channel = admin_bot
    boss, sue = Learning(bot, channel, chat="boss"), Learning(bot, channel, chat="sue")
    await onboard(boss)
    await boss.say("/admin role grant test:sue support")
    [refused] = await sue.say("/admin erase test:boss confirm")
    assert refused.startswith("test:boss holds admin roles, which only an owner may take away")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "boss"))


async def test_a_support_may_not_export_an_owner_or_an_admin_in_chat_either(admin_bot):
    """As the dashboard refuses it: an admin's export holds what they were shown as one."""
    bot, channel = admin_bot
    boss, sue = Learning(bot, channel, chat="boss"), Learning(bot, channel, chat="sue")
    await onboard(Learning(bot, channel, chat="ann"))
    await boss.say("/admin role grant test:sue support")
    await boss.say("/admin role grant test:carol admin")
    await Learning(bot, channel, chat="carol").say("/admin help")
    for address in ("test:boss", "test:carol"):
        [refused] = await sue.say(f"/admin export {address}")
        assert refused == (f"{address} holds admin roles: only an owner may export their data (their own /export "
                           "sends it to them).")
    assert documents(channel, "sue") == []
    await sue.say("/admin export test:ann")
    [document] = documents(channel, "sue")
    assert document.caption == "The data of test:ann, as a JSON file."


async def test_no_export_hands_over_a_link_code_or_a_sign_in_link_still_unused(admin_bot, settings, tmp_path,
                                                                             monkeypatch):
    """/export, /admin export and `lessonbot learner export` show the reply that carried a /link code or a dashboard
    sign-in link as "(a sign-in link or a link code, not shown)": whoever the file reaches gets neither."""
    from storage.personal_data import WITHHELD

    bot, channel = admin_bot
    ann, boss = Learning(bot, channel, chat="ann"), Learning(bot, channel, chat="boss")
    await onboard(ann)
    [given] = await ann.say("/link")
    [link] = await boss.say("/admin dashboard")
    secrets = {"test:ann": given.split("link code is ", 1)[1].split(".", 1)[0],
               "test:boss": link.rsplit("link=", 1)[1]}
    await ann.say("/export")
    await boss.say("/admin export test:boss")
    await boss.say("/admin export test:ann")
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    for address in secrets:
        assert await cli("learner", "export", address, "--output", str(tmp_path / f"{address}.json")) == 0
    [own], [boss_own, anns] = documents(channel, "ann"), documents(channel, "boss")
    files = {"/export": own.path, "/admin export test:boss": boss_own.path, "/admin export test:ann": anns.path,
             **{f"cli {address}": str(tmp_path / f"{address}.json") for address in secrets}}
    for how, path in files.items():
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        address = data["profile"]["addresses"][0]
        assert secrets[address] not in json.dumps(data), how
        assert WITHHELD in [reply["text"] for reply in data["replies"]], how


@pytest.fixture
async def whatsapp_learner(settings):
    """A bot with the admins' channel and WhatsApp, where a learner wrote from +15551234567 (as Twilio names her)."""
    admins, whatsapp = RecordingChannel(), RecordingChannel(name="whatsapp")
    bot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [admins, whatsapp])
    await import_sample(bot)
    await Learning(bot, whatsapp, chat="+15551234567").say("/start")
    yield bot, admins
    await bot.stop()


async def test_an_admin_finds_a_whatsapp_learner_by_their_number_written_as_roles_and_admins_read_it(
        whatsapp_learner):
    bot, admins = whatsapp_learner
    boss = Learning(bot, admins, chat="boss")
    [asked] = await boss.say("/admin erase whatsapp:15551234567")  # the number without its "+"
    assert asked.startswith("This deletes everything I keep about whatsapp:15551234567"), asked
    [erased] = await boss.say("/admin erase whatsapp:0015551234567 confirm")
    assert erased.startswith("Erased: ")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == "whatsapp")) is None


async def test_an_erasure_blanks_the_admin_commands_that_named_a_whatsapp_learner_another_way(whatsapp_learner):
    """The commands an admin typed naming a WhatsApp learner by their number written otherwise than Twilio names it
    (no "+", dashes), and the answers naming it so, are blanked by her erasure as those naming her address as
    stored are: nothing kept names her number; a command naming someone else's number stays."""
    bot, admins = whatsapp_learner
    boss = Learning(bot, admins, chat="boss")
    await boss.say("/admin export whatsapp:15551234567")
    [other] = await boss.say("/admin export whatsapp:15551234568")  # someone else's number: no learner
    assert other.startswith("No learner is known as 'whatsapp:15551234568'.")
    [asked] = await boss.say("/admin erase whatsapp:+1-555-123-4567")
    assert "To go ahead, send /admin erase whatsapp:+1-555-123-4567 confirm" in asked
    [erased] = await boss.say("/admin erase whatsapp:15551234567 confirm")
    assert erased.startswith("Erased: ")
    async with bot.db.sessions() as session:
        arguments = list(await session.scalars(select(AdminAuditEntry.arguments)))
        typed = [row.payload.get("text") or "" for row in await session.scalars(select(InboundMessage))]
        replies = [json.dumps(row.payload, ensure_ascii=False) for row in await session.scalars(select(OutboxMessage))]
    for text in (*arguments, *typed, *replies):
        assert "5551234567" not in "".join(filter(str.isdigit, text)), text
    assert "whatsapp:15551234568" in arguments and "/admin export whatsapp:15551234568" in typed


async def test_cli_finds_a_whatsapp_learner_by_their_number_written_as_roles_and_admins_read_it(
        whatsapp_learner, settings, tmp_path, monkeypatch, capsys):
    bot, _admins = whatsapp_learner
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-0123456789")
    out = tmp_path / "learner.json"
    assert await cli("learner", "export", "whatsapp:+1 (555) 123-4567", "--output", str(out)) == 0, capsys.readouterr()
    assert json.loads(out.read_text(encoding="utf-8"))["profile"]["addresses"] == ["whatsapp:+15551234567"]
    assert await cli("learner", "erase", "whatsapp:15551234567", "--yes") == 0
    async with bot.db.sessions() as session:
        assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.channel == "whatsapp")) is None


async def test_an_operators_erasure_of_a_person_erased_meanwhile_erases_no_one_else(
        admin_bot, settings, monkeypatch, capsys):
    """`lessonbot learner erase` finds Ann, then closes her open Stripe page; meanwhile she deletes her data herself
    and Zoe starts (SQLite gives Zoe the number Ann had). The command erases no one, and says it found no one."""
    from standins.stripe import SECRET_KEY, WEBHOOK_SECRET, StripeStandIn
    from storage.courses import Course
    from storage.models import User
    from storage.payments import Payment
    from storage.personal_data import erase_person

    bot, channel = admin_bot
    await onboard(Learning(bot, channel, chat="ann"))
    async with bot.db.transaction() as session:
        ann = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
        session.add(Payment(user_id=ann, offered_to=ann, course_id=await session.scalar(select(Course.id)),
                            provider="stripe", reference="cs_open1", amount_minor=300, currency="GBP", status="open",
                            channel="test", chat_id="ann", sender_id="ann"))

    async def erased_and_zoe_came(_page: str) -> None:
        async with bot.db.transaction() as session:
            await erase_person(session, ann, by="learner")
        async with bot.db.transaction() as session:
            zoe = User(display_name="Zoe")
            session.add(zoe)
            await session.flush()
            session.add(ChannelIdentity(user_id=zoe.id, channel="test", external_id="zoe"))

    async with StripeStandIn() as stripe_api:
        stripe_api.while_expiring = erased_and_zoe_came
        for name, value in {"DATABASE_URL": settings.database_url, "DATA_DIR": str(settings.data_dir),
                            "SECRET_KEY": "test-secret-key-0123456789", "STRIPE_SECRET_KEY": SECRET_KEY,
                            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "PUBLIC_BASE_URL": "https://lessonbot.example",
                            "STRIPE_API_BASE_URL": stripe_api.base_url}.items():
            monkeypatch.setenv(name, value)
        said = await asyncio.to_thread(main, ["learner", "erase", "test:ann", "--yes"])
    async with bot.db.sessions() as session:
        zoe = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "zoe"))
        assert zoe is not None and (await session.get(User, zoe)).display_name == "Zoe"
    assert said == 1 and "No learner is known as test:ann" in capsys.readouterr().err
