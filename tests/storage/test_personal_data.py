"""Erasure keeps its written contract (storage.personal_data.PLAN) for every table of the migrated schema.

A learner and two others share a group; the learner deletes their data through the real pipeline; then every row of
every table is read back and checked against the plan: what the plan erases holds nothing of them, what it scrubs
holds no text or name of theirs, and the others' rows are untouched.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import JSON, Text, inspect, select, text

from bot.messages import InboundMessage as Message
from storage.courses import Course, Entitlement
from storage.db import make_sync_engine
from storage.knowledge import KnowledgeAllowance
from storage.migrate import upgrade
from storage.models import ChannelIdentity, Conversation, OutboxMessage, utcnow
from storage.outbox import OutboxEntry, OutboxStatus, enqueue
from storage.personal_data import BLANK_REPLY, ERASED, ERASED_ACTOR, KEPT, PLAN
from storage.scheduling import Broadcast, BroadcastRecipient, NudgeLog, ScheduledLesson
from storage.schema import metadata
from tests.dialogs.learning_support import Learning, learning_bot, onboard  # noqa: F401
from tests.storage.reviewed_columns import REVIEWED_COLUMNS

HOW_TO_CLASSIFY = (
    "Table {table!r} is not in storage.personal_data.PLAN. Every table must say what erasing a person does to it: "
    "add it to PLAN as Rule(ERASED, …) if it holds rows of one person (and delete them in erase_person, and gather "
    "them in export_person), Rule(SCRUBBED, …) if its rows must stay but carry a person's text or name (blank those "
    "in erase_person), or Rule(KEPT, <why>) if nothing of a person is in it or the law keeps it (then also "
    "PAYMENT_RECORDS). Then add a line to the table in docs/data.md."
)


def tables_of(url: str) -> set[str]:
    engine = make_sync_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def every_row(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: [dict(row) for row in connection.execute(text(f'SELECT * FROM "{table}"')).mappings()]
                for table in inspect(engine).get_table_names()
            }
    finally:
        engine.dispose()


def as_json(value: Any) -> Any:
    """A JSON column as read with plain SQL: text on SQLite, decoded on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def mentions(row: dict[str, Any], word: str) -> bool:
    return word.lower() in json.dumps(row, default=str, ensure_ascii=False).lower()


def test_every_table_of_the_schema_is_in_the_plan(database_url):
    """The migrated database's tables, and the models' (a model whose migration is still to be written)."""
    tables = tables_of(database_url)
    for table in sorted(metadata.tables):
        assert table in PLAN, HOW_TO_CLASSIFY.format(table=table)
    for table in sorted(tables):
        assert table in PLAN, HOW_TO_CLASSIFY.format(table=table)
    stale = sorted(set(PLAN) - tables)
    assert not stale, f"PLAN names tables the schema does not have: {stale}; take them out of PLAN and docs/data.md"
    assert_columns_reviewed(database_url)


HOW_TO_REVIEW = (
    "Column {column!r} of {table!r} is new since the erasure contract was last reviewed: say what becomes of what it "
    "holds when a person is erased (storage.personal_data.PLAN's rule for the table, erase_person, export_person and "
    "docs/data.md), then add it to tests/storage/reviewed_columns.py"
)


def assert_columns_reviewed(url: str) -> None:
    """Every column of the migrated database and of the models was looked at for a person's data: a migration that
    adds one (a team's contact e-mail, a course's author phone) fails here until the contract says what it holds."""
    engine = make_sync_engine(url)
    try:
        migrated = {table: {column["name"] for column in inspect(engine).get_columns(table)}
                    for table in inspect(engine).get_table_names()}
    finally:
        engine.dispose()
    modelled = {name: {column.name for column in table.columns} for name, table in metadata.tables.items()}
    for schema in (migrated, modelled):
        for table, columns in sorted(schema.items()):
            for column in sorted(columns - set(REVIEWED_COLUMNS.get(table, ()))):
                raise AssertionError(HOW_TO_REVIEW.format(column=column, table=table))


def test_a_column_a_migration_adds_is_held_to_the_contract(tmp_path):
    """The guard above fails on a new column of a table the plan knows (a migration's `ADD COLUMN`)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    engine = make_sync_engine(url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE teams ADD COLUMN contact_email VARCHAR(200)"))
    engine.dispose()
    with pytest.raises(AssertionError, match="'contact_email' of 'teams' is new"):
        assert_columns_reviewed(url)


# What a column that can hold something of a person is called, or ends with: a user number, an address or a chat, a
# name, a platform's or a payment platform's id, a token, an e-mail address or a phone number.
PERSONAL_NAMES = frozenset({
    "user_id", "learner", "asked_by", "offered_to", "identity", "member", "sender_id", "chat_id", "external_id",
    "payload", "text", "question", "normalized", "answer", "last_answer", "note", "reference", "arguments",
    "figures", "state", "platform_id", "platform_message_id", "event_id", "code", "workspace", "channel",
    "idempotency_key", "segment",
})
PERSONAL_ENDINGS = ("_name", "_by", "_chat", "_reference", "_token", "email", "phone", "_user_id", "_url", "_error",
                    "_address", "_number")
COURSE_CONTENT = frozenset({"courses", "course_modules", "lessons", "questions"})  # their authors' words
# ERASED tables whose rows may outlive a person's erasure blank: the message that asked, replies withheld, an admin's
# command naming them and its answer
KEPT_BLANK = frozenset({"inbound_messages", "outbox_messages"})


def may_hold_a_person(table: str, column: Any) -> bool:
    """A column that can hold a person's data or a reference to one: linked to `users`, named as one, or free text
    (but the course authors')."""
    linked = any(key.column.table.name == "users" for key in column.foreign_keys)
    free = isinstance(column.type, Text | JSON) and table not in COURSE_CONTENT
    return linked or free or column.name in PERSONAL_NAMES or column.name.endswith(PERSONAL_ENDINGS)


HOW_TO_COVER = (
    "Column {column!r} of {table!r} can hold a person's data or a reference to one, and its rows outlive an erasure: "
    "say in storage.personal_data.COLUMNS what the erasure does to it (ERASED: emptied, SCRUBBED: what names them "
    "taken out, KEPT: why it stays), make erase_person do it, and docs/data.md say it"
)


def test_every_column_that_can_hold_a_person_is_in_the_contract():
    from storage.personal_data import COLUMNS

    outliving = {table for table, rule in PLAN.items() if rule.treatment is not ERASED} | KEPT_BLANK
    missing = [(name, column.name) for name, table in sorted(metadata.tables.items()) if name in outliving
               for column in table.columns
               if may_hold_a_person(name, column) and column.name not in COLUMNS.get(name, {})]
    assert not missing, "\n".join(HOW_TO_COVER.format(column=column, table=table) for table, column in missing)
    for name, columns in COLUMNS.items():
        assert name in outliving, f"COLUMNS names {name!r}, whose rows of a person all go: take it out"
        stale = set(columns) - {column.name for column in metadata.tables[name].columns}
        assert not stale, f"COLUMNS names columns {name!r} does not have: {sorted(stale)}"


def test_a_column_that_names_a_person_is_caught_by_its_name_its_type_or_its_link():
    from sqlalchemy import Column, String

    assert may_hold_a_person("teams", Column("contact_email", String(200)))
    assert may_hold_a_person("payments", Column("buyer_phone", String(32)))
    assert may_hold_a_person("broadcasts", Column("approved_by", String(240)))
    assert may_hold_a_person("certificates", metadata.tables["certificates"].c.user_id)  # linked to users
    assert may_hold_a_person("teams", Column("welcome", Text))
    assert not may_hold_a_person("lessons", Column("parts", Text))
    assert not may_hold_a_person("teams", Column("lesson_time", String(5)))


async def say(bot, text: str, *, chat: str, sender: str, name: str) -> None:
    await bot.receive(Message(channel="test", platform_id=f"{sender}-{text}", chat_id=chat, sender_id=sender,
                              text=text, sender_name=name))
    await bot.settle()


async def set_up_the_others(bot, ann: int, bob: int) -> None:
    """Rows in the tables no conversation fills in a test: the same for Ann and for Bob, so Bob's show they stay."""
    async with bot.db.transaction() as session:
        course = await session.scalar(select(Course))
        broadcast = Broadcast(text="Hello all", segment={}, status="sent", created_by="test:admin")
        session.add(broadcast)
        await session.flush()
        ann_home = await session.scalar(select(Conversation).where(Conversation.chat_id == "ann-42"))
        bob_home = await session.scalar(select(Conversation).where(Conversation.chat_id == "bob-7"))
        for user_id, home in ((ann, ann_home), (bob, bob_home)):
            session.add_all([
                Entitlement(user_id=user_id, course_id=course.id, source="grant", reference=f"grant-{user_id}"),
                ScheduledLesson(user_id=user_id, local_date=date(2026, 12, 1), due_at=utcnow(), outcome="queued"),
                NudgeLog(user_id=user_id, kind="inactive", template="t1", idempotency_key=f"nudge-{user_id}",
                         outcome="queued"),
                BroadcastRecipient(broadcast_id=broadcast.id, user_id=user_id, conversation_id=home.id),
            ])
            await session.merge(KnowledgeAllowance(learner=str(user_id), minute_start=utcnow(), minute_questions=1,
                                                   day="2026-12-01", day_tokens=10))
        # A reply to Ann not sent yet (due later): it must never go once she is erased.
        await enqueue(session, [OutboxEntry(conversation_id=ann_home.id, channel="test", chat_id="ann-42",
                                            payload={"kind": "text", "text": "Annabel, your zebra lesson"})],
                      now=utcnow() + timedelta(hours=1))


async def user_of(bot, chat: str) -> int:
    async with bot.db.sessions() as session:
        return await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == chat))


async def test_erasure_follows_the_plan_for_every_table(learning_bot, database_url):
    bot, channel = learning_bot
    ann_dm, bob_dm = Learning(bot, channel, chat="ann-42"), Learning(bot, channel, chat="bob-7")
    await say(bot, "/start", chat="ann-42", sender="ann-42", name="Annabel")
    await onboard(ann_dm)
    await ann_dm.press("Start my first lesson")
    await ann_dm.say("my zebra question")
    await ann_dm.say("/link WRONG-CODE1")  # a wrong code: a link_attempts row of hers
    await say(bot, "/start", chat="bob-7", sender="bob-7", name="Roberto")
    await onboard(bob_dm)
    await bob_dm.say("/admin export test:ann-42")  # denied, and audited with her address in it
    await ann_dm.say("/admin stats")  # denied, and audited with her address as who typed it
    # The group: Ann speaks first, so the group's conversation row points at her.
    await say(bot, "kiwi from the group", chat="grp", sender="ann-42", name="Annabel")
    await say(bot, "/stop", chat="grp", sender="ann-42", name="Annabel")  # a step of hers in the group's state
    await say(bot, "banana from the group", chat="grp", sender="bob-7", name="Roberto")
    await say(bot, "cherry from the group", chat="grp", sender="cleo-3", name="Cleopatra")
    ann, bob = await user_of(bot, "ann-42"), await user_of(bot, "bob-7")
    await set_up_the_others(bot, ann, bob)
    before = every_row(database_url)
    for word in ("Annabel", "zebra", "kiwi", "test:ann-42"):
        assert any(mentions(row, word) for rows in before.values() for row in rows), word

    # Her replies wait behind the one due later, so the button is pressed as its value arrives.
    assert await ann_dm.say("/stop") == []
    *_unsent, done = await ann_dm.say("Stop and delete my data", choice="stop:delete")
    assert done.startswith("Done: I deleted everything")
    after = every_row(database_url)

    # Nothing she typed, nor her name, nor her address is left anywhere.
    for table, rows in after.items():
        for word in ("Annabel", "zebra", "kiwi", "test:ann-42"):
            assert not any(mentions(row, word) for row in rows), f"{table} still holds {word!r}: {PLAN[table]}"
    # The tables the plan erases have no row of hers.
    for table, rows in after.items():
        if PLAN[table].treatment is ERASED:
            for column in ("user_id", "learner"):
                assert not [row for row in rows if str(row.get(column)) == str(ann)], f"{table}.{column}"
    assert not [row for row in after["users"] if row["id"] == ann]
    assert not [row for row in after["channel_identities"] if row["external_id"] == "ann-42"]
    # Her address stays only where replies are routed: her chat, and the blank message that asked.
    for table, rows in after.items():
        if table not in ("conversations", "outbox_messages", "inbound_messages"):
            assert not any(mentions(row, "ann-42") for row in rows), table
    assert not [row for row in after["inbound_messages"] if row["sender_id"] == "ann-42"]
    [asked] = [row for row in after["inbound_messages"] if row["sender_id"] == ""]  # the message that asked
    assert as_json(asked["payload"]) == {"text": ""}
    # Her unsent reply is cancelled and blank; what went to her chat since is only the confirmation.
    async with bot.db.sessions() as session:
        to_her = list(await session.scalars(select(OutboxMessage).where(OutboxMessage.chat_id == "ann-42")))
    assert {(r.status, json.dumps(r.payload)) for r in to_her if r.status != OutboxStatus.SENT} == {
        (OutboxStatus.CANCELLED, json.dumps(BLANK_REPLY))  # the reply due later, and the question /stop asked
    }
    assert [r.payload["text"] for r in to_her if r.status == OutboxStatus.SENT] == [done]
    assert channel.texts("ann-42")[-1] == done and not any("zebra lesson" in t for t in channel.texts("ann-42"))
    # The group: the others' messages and names stay; the group's row no longer points at her.
    group_senders = sorted(r["sender_id"] for r in after["inbound_messages"] if r["conversation_id"] in {
        c["id"] for c in after["conversations"] if c["chat_id"] == "grp"})
    assert group_senders == ["bob-7", "cleo-3"]
    [group] = [c for c in after["conversations"] if c["chat_id"] == "grp"]
    assert group["user_id"] is None and "ann-42" not in json.dumps(as_json(group["state"]))
    [group_before] = [c for c in before["conversations"] if c["chat_id"] == "grp"]
    assert "ann-42" in json.dumps(as_json(group_before["state"]))  # the step she was taking there went
    for word in ("Roberto", "banana", "Cleopatra", "cherry"):
        assert any(mentions(row, word) for rows in after.values() for row in rows), word
    # Bob's rows in every table stay as they were.
    for table, rows in before.items():
        for column in ("user_id", "learner"):
            bobs = [row for row in rows if str(row.get(column)) == str(bob)]
            assert bobs == [row for row in after[table] if str(row.get(column)) == str(bob)], table
    [audit] = [row for row in after["admin_audit"] if row["command"] == "export"]
    assert audit["identity"] == "test:bob-7" and "ann-42" not in audit["arguments"]
    [erase_line] = [row for row in after["admin_audit"] if row["command"] == "erase"]
    assert (erase_line["identity"], erase_line["arguments"]) == ("learner", f"user {ann}")
    [hers] = [row for row in after["admin_audit"] if row["command"] == "stats"]
    assert (hers["identity"], hers["outcome"]) == (ERASED_ACTOR, "denied")


async def test_the_export_holds_every_table_the_plan_erases_or_scrubs_of_a_person(learning_bot):
    from storage.personal_data import EXPORTED, export_person

    bot, _channel = learning_bot
    kept = {table for table, rule in PLAN.items() if rule.treatment is not KEPT}
    assert kept == set(EXPORTED), ("storage.personal_data.EXPORTED must name, for every table the plan erases or "
                                   "scrubs, the key of export_person's document that shows it (or None and why)")
    await say(bot, "/start", chat="ann-42", sender="ann-42", name="Annabel")
    ann = await user_of(bot, "ann-42")
    async with bot.db.sessions() as session:
        document = await export_person(session, ann, now=utcnow())
    assert {key for key in EXPORTED.values() if key is not None} <= set(document)


async def test_a_member_who_deletes_takes_their_group_messages_and_name_only(learning_bot, database_url):
    bot, channel = learning_bot
    await say(bot, "kiwi first", chat="grp", sender="ann-42", name="Annabel")
    await say(bot, "banana second", chat="grp", sender="bob-7", name="Roberto")
    bob_dm = Learning(bot, channel, chat="bob-7")
    await bob_dm.say("/stop")
    await bob_dm.press("Stop and delete my data")
    after = every_row(database_url)
    for table, rows in after.items():
        for word in ("Roberto", "banana"):
            assert not any(mentions(row, word) for row in rows), f"{table} still holds {word!r}"
    assert any(mentions(row, "kiwi first") for row in after["inbound_messages"])
    assert any(row["display_name"] == "Annabel" for row in after["users"])
    [group] = [c for c in after["conversations"] if c["chat_id"] == "grp"]
    assert group["user_id"] == await user_of(bot, "ann-42")  # still hers: she spoke first, and stays
    # The replies to Bob in the group went with his messages; the replies to Ann stayed.
    answered = {row["inbound_message_id"] for row in after["outbox_messages"] if row["conversation_id"] == group["id"]}
    senders = {row["id"]: row["sender_id"] for row in after["inbound_messages"]}
    assert {senders[i] for i in answered} == {"ann-42"}


async def test_a_team_post_that_named_an_erased_member_keeps_the_others_and_not_them(learning_bot, database_url):
    from datetime import time

    from dialogs.i18n import translator
    from dialogs.teams import announce, leaderboard
    from storage.models import User
    from storage.teams import Team, TeamMember, add_team_admin

    bot, channel = learning_bot
    ann_dm, bob_dm = Learning(bot, channel, chat="ann-42"), Learning(bot, channel, chat="bob-7")
    await say(bot, "/start", chat="ann-42", sender="ann-42", name="Ann_Lee")
    await onboard(ann_dm)
    await say(bot, "/start", chat="bob-7", sender="bob-7", name="Roberto")
    await onboard(bob_dm)
    ann, bob = await user_of(bot, "ann-42"), await user_of(bot, "bob-7")
    async with bot.db.transaction() as session:
        (await session.get(User, ann)).display_name = "Ann_Lee"  # escaped in the post's Markdown: Ann\_Lee
        (await session.get(User, bob)).display_name = "Roberto"
        team = Team(channel="test", chat_id="grp", workspace="W", course_id=await session.scalar(select(Course.id)),
                    lesson_time=time(9), created_by="bob-7")
        session.add(team)
        await session.flush()
        session.add_all([TeamMember(team_id=team.id, member="ann-42", user_id=ann),
                         TeamMember(team_id=team.id, member="bob-7", user_id=bob)])
        await session.flush()
        await announce(session, team, await leaderboard(session, team, translator("en")))
        await announce(session, team, "A lesson on Ann_Lee's habits: 🔥 and % stay as written.")
        await add_team_admin(session, "test", "W", "W/U9", by="ann-42")
        await add_team_admin(session, "test", "E1", "E1/ann-42", by="bob-7")  # Ann, named by an org-wide install
    before = every_row(database_url)
    assert any("Ann\\\\_Lee" in json.dumps(as_json(row["payload"])) for row in before["outbox_messages"])

    await ann_dm.say("/stop")
    await ann_dm.press("Stop and delete my data")
    after = every_row(database_url)
    [board] = [as_json(row["payload"])["text"] for row in after["outbox_messages"]
               if "Leaderboard" in as_json(row["payload"]).get("text", "")]
    assert "Ann" not in board and "Roberto" in board and ERASED_ACTOR in board, board
    assert any(as_json(row["payload"]).get("text") == "A lesson on Ann_Lee's habits: 🔥 and % stay as written."
               for row in after["outbox_messages"])  # only a leaderboard's or a list's name slots change
    [added] = after["team_admins"]  # her own grant goes, whichever workspace named her in it
    assert added["added_by"] == ERASED_ACTOR


def test_the_erasure_reads_markdown_escapes_as_the_bot_writes_and_reads_them():
    """storage imports nothing of the project, so the erasure keeps its own copy of bot.messages.unescaped: the two
    agree, and undo what the dialogs' translator does to an address."""
    from bot.messages import MARKDOWN_ESCAPES, literal, unescaped
    from storage import personal_data

    assert set(personal_data._MARKDOWN_ESCAPES) == MARKDOWN_ESCAPES
    for typed in ("test:ann_lee", "slack:T01/U*2", "# 1. [x]~`y`", "a\\b", "- web:ses_1\n2) x"):
        assert personal_data.unescaped(literal(typed)) == unescaped(literal(typed)) == typed


def test_the_erasure_reads_a_whatsapp_number_as_admins_and_roles_read_it():
    """storage imports nothing of the project, so the erasure keeps its own copy of how bot.messages.address_as_named
    reads a WhatsApp number an admin typed: the two agree, on numbers that are someone's and on those that are not."""
    from bot.messages import address_as_named
    from storage.personal_data import whatsapp_as_named

    for typed in ("whatsapp:15551234567", "whatsapp:+1-555-123-4567", "whatsapp:0015551234567",
                  "whatsapp:+1(555)123.4567", "whatsapp:+15551234567.", "whatsapp:1234", "whatsapp:+0123456789",
                  "whatsapp:", "whatsapp:+1555123456789012"):
        assert whatsapp_as_named(typed) == address_as_named(typed), typed


def test_the_export_reads_a_reply_s_credential_mark_as_the_bot_writes_it():
    """storage imports nothing of the project, so the export keeps its own name of bot.messages.SECRET: the two
    agree, a text marked secret keeps its mark through its payload, and an export shows WITHHELD in its place."""
    from bot.messages import SECRET, Text, reply_from_payload
    from storage import personal_data
    from storage.models import OutboxMessage

    assert personal_data.SECRET == SECRET
    payload = Text("Your link code is ABCDE-FGHJK.", secret=True).to_payload()
    assert reply_from_payload(payload) == Text("Your link code is ABCDE-FGHJK.", secret=True)
    assert personal_data._reply_text(OutboxMessage(payload=payload)) == personal_data.WITHHELD
    assert personal_data._reply_text(OutboxMessage(payload=Text("Lesson 1").to_payload())) == "Lesson 1"


async def a_team_of_two(bot, channel, ann_name: str) -> tuple[Learning, Learning, int]:
    """Ann (named `ann_name`, 25 points) and Roberto (10), in a team Roberto made and gets the digest of."""
    from datetime import time

    from storage.learners import Learner
    from storage.models import User
    from storage.teams import Team, TeamMember

    ann_dm, bob_dm = Learning(bot, channel, chat="ann-42"), Learning(bot, channel, chat="bob-7")
    await say(bot, "/start", chat="ann-42", sender="ann-42", name=ann_name)
    await onboard(ann_dm)
    await say(bot, "/start", chat="bob-7", sender="bob-7", name="Roberto")
    await onboard(bob_dm)
    ann, bob = await user_of(bot, "ann-42"), await user_of(bot, "bob-7")
    async with bot.db.transaction() as session:
        (await session.get(User, ann)).display_name = ann_name
        (await session.get(User, bob)).display_name = "Roberto"
        (await session.get(Learner, ann)).points = 25
        (await session.get(Learner, bob)).points = 10
        team = Team(channel="test", chat_id="grp", workspace="W", course_id=await session.scalar(select(Course.id)),
                    lesson_time=time(9), created_by="bob-7", digest_chat="bob-7")
        session.add(team)
        await session.flush()
        session.add_all([TeamMember(team_id=team.id, member="ann-42", user_id=ann),
                         TeamMember(team_id=team.id, member="bob-7", user_id=bob)])
    return ann_dm, bob_dm, team.id


def rows_naming(url: str, word: str) -> dict[str, list[Any]]:
    return {table: found for table, rows in every_row(url).items()
            if (found := [row.get("payload") or row for row in rows if mentions(row, word)])}


@pytest.mark.parametrize("name", ["Annabel", "Lee, Ann"])  # Slack shows "Last, First" names with a comma
async def test_a_digest_that_named_an_erased_member_keeps_no_part_of_their_name(learning_bot, database_url, name):
    from dialogs.teams import digest_message, send_to
    from storage.courses import Lesson
    from storage.teams import Team, TeamLessonPost

    bot, channel = learning_bot
    ann_dm, _bob_dm, team_id = await a_team_of_two(bot, channel, name)
    async with bot.db.transaction() as session:
        team = await session.get(Team, team_id)
        today = utcnow().date()
        session.add(TeamLessonPost(team_id=team.id, local_date=today - timedelta(days=2),
                                   lesson_id=await session.scalar(select(Lesson.id))))
        await session.flush()
        digest = await digest_message(session, team, day=today)
        assert f"Behind: {name}, Roberto (2 members)." in digest.text, digest.text
        await send_to(session, team, team.digest_chat, digest, key=f"team-digest:{team.id}:{today}")
    await bot.settle()
    await ann_dm.say("/stop")
    await ann_dm.press("Stop and delete my data")
    assert rows_naming(database_url, name) == {}
    digests = [as_json(row["payload"])["text"] for row in every_row(database_url)["outbox_messages"]
               if "Behind: " in as_json(row["payload"]).get("text", "")]
    assert digests and all(f"Behind: {ERASED_ACTOR}, Roberto (2 members)." in text for text in digests), digests


async def test_a_team_admins_home_that_named_an_erased_member_no_longer_does(learning_bot, database_url):
    bot, channel = learning_bot
    ann_dm, bob_dm, _team = await a_team_of_two(bot, channel, "Annabel")
    [home] = await bob_dm.say("/home")
    assert "Top: Annabel (25), Roberto (10)" in home, home
    await ann_dm.say("/stop")
    await ann_dm.press("Stop and delete my data")
    assert rows_naming(database_url, "Annabel") == {}
    assert any(f"Top: {ERASED_ACTOR} (25), Roberto (10)" in as_json(row["payload"]).get("text", "")
               for row in every_row(database_url)["outbox_messages"])


async def test_an_export_names_no_other_member_of_the_persons_teams(learning_bot):
    """A team admin's export holds the replies they were sent, /home's standings among them: the other members'
    names there are theirs, not the admin's, and read "(another member)"; the admin's own name stays."""
    from storage.personal_data import ANOTHER_MEMBER, export_person

    bot, channel = learning_bot
    _ann_dm, bob_dm, _team = await a_team_of_two(bot, channel, "Annabel")
    await bob_dm.say("/home")
    async with bot.db.sessions() as session:
        document = await export_person(session, await user_of(bot, "bob-7"), now=utcnow())
    assert "Annabel" not in json.dumps(document, ensure_ascii=False)
    assert any(f"Top: {ANOTHER_MEMBER} (25), Roberto (10)" in reply["text"] for reply in document["replies"])


async def test_the_dashboards_hardest_questions_forget_an_erased_learners_typed_answer(learning_bot, database_url):
    """The learning page quotes the wrong answers typed to its hardest questions: an erasure drops those figures
    with the knowledge page's (they are counted again at the next recount, without them)."""
    from storage.courses import QuestionCard
    from storage.dashboard import compute
    from storage.models import User

    phrase = "zebracrossing-annabel-guess"
    bot, channel = learning_bot
    ann = Learning(bot, channel, chat="ann-42")
    await onboard(ann)
    await ann.press("Start my first lesson")
    for _ in range(60):  # through the lesson to its typed question, answered wrong
        last = ann.last()
        if last.text.endswith("(Type your answer.)"):
            await ann.say(phrase)
            break
        if last.choices and last.choices[0].value.startswith("quiz:"):
            await ann.say("pressed", choice=last.choices[0].value)
        elif last.choices:
            await ann.press(last.choices[0].label)
        else:
            await ann.say("/next")
    async with bot.db.transaction() as session:
        [card] = [c for c in await session.scalars(select(QuestionCard)) if c.last_answer == phrase]
        for n in range(4):  # four others got it wrong too: a question among the hardest
            other = User(display_name=f"Other{n}")
            session.add(other)
            await session.flush()
            session.add(QuestionCard(user_id=other.id, question_id=card.question_id, card={}, due=utcnow(),
                                     last_rating=1, last_answer="other wrong", attempts=1, correct=0))
        await session.flush()
        figures = await compute(session, "learning", utcnow())  # the dashboard's recount
        assert phrase in json.dumps(figures.figures)

    await ann.say("/stop")
    [done] = await ann.press("Stop and delete my data")
    assert done.startswith("Done: I deleted everything")
    assert rows_naming(database_url, phrase) == {}
