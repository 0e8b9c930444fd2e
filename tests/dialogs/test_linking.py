"""/link as a thief meets it: long single-use codes, wrong guesses refused, no code in a group, the learner told;
and what the joining chat brings along (certificates, team memberships, the questions it asked)."""

from __future__ import annotations

import re
from datetime import time

from sqlalchemy import func, select

from bot.messages import InboundMessage as Message
from dialogs.linking import CODE_ALPHABET, WRONG_CODES_PER_IDENTITY, WRONG_CODES_PER_SOURCE
from storage.courses import Course
from storage.learners import Learner
from storage.models import ChannelIdentity, User
from storage.teams import MEMBER_OPTED_OUT, Team, TeamMember
from tests.dialogs.learning_support import Learning, learner_row, learning_bot, onboard  # noqa: F401

CODE = re.compile(rf"Your link code is ([{CODE_ALPHABET}]{{5}}-[{CODE_ALPHABET}]{{5}})\.")


async def code_from(t: Learning) -> str:
    [text] = await t.say("/link")
    found = CODE.search(text)
    assert found, text
    return found[1]


async def in_group(bot, channel, text: str, *, sender: str, group: str = "-100") -> list[str]:
    before = len(channel.sent[group])
    await bot.receive(Message(channel="test", platform_id=f"{sender}:{text}:{before}", chat_id=group,
                              sender_id=sender, text=text))
    await bot.settle()
    return channel.texts(group)[before:]


async def test_a_code_is_long_used_once_and_the_learner_is_told(learning_bot):
    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    code = await code_from(web)
    assert len(code.replace("-", "")) == 10 and not set(code) & set("0O1IL")
    phone = Learning(bot, channel, chat="ann-phone")
    await phone.say("/start")  # the phone had a learner of its own, with a name from the platform
    [linked] = await phone.say(f"/link {code.lower().replace('-', ' ')}")
    assert linked.startswith("Linked! This chat now continues your lessons, Ann.")
    [notice] = channel.texts("ann-web")[-1:]
    assert notice.startswith("A chat on test was just linked to your lessons") and "/stop" in notice
    async with bot.db.sessions() as session:
        owners = set(await session.scalars(select(ChannelIdentity.user_id)))
        assert len(owners) == 1  # both chats are one learner now
        assert await session.scalar(select(func.count()).select_from(User)) == 1  # no user row left behind
    other = Learning(bot, channel, chat="mallory")
    [again] = await other.say(f"/link {code}")
    assert again.startswith("That code is unknown or has expired")


async def test_wrong_codes_are_refused_for_a_while_per_person(learning_bot):
    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    code = await code_from(web)
    thief = Learning(bot, channel, chat="mallory")
    for _attempt in range(WRONG_CODES_PER_IDENTITY):
        [wrong] = await thief.say("/link ABCDE-FGHJK")
        assert wrong.startswith("That code is unknown or has expired")
    [refused] = await thief.say(f"/link {code}")  # even the right code, now
    assert refused == ("Too many wrong codes. Try again in 15 minutes, with a new code from /link on the other app.")
    async with bot.db.sessions() as session:
        assert len(set(await session.scalars(select(ChannelIdentity.user_id)))) == 2  # Ann's and the thief's own
    # Someone else on the same channel is not held up by one person's guesses.
    [linked] = await Learning(bot, channel, chat="ann-phone").say(f"/link {code}")
    assert linked.startswith("Linked!")


async def test_wrong_codes_from_many_throwaway_chats_close_the_channel_for_a_while(learning_bot):
    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    code = await code_from(web)
    for n in range(WRONG_CODES_PER_SOURCE):
        await bot.receive(Message(channel="test", platform_id=f"guess-{n}", chat_id=f"session-{n}",
                                  sender_id=f"session-{n}", text="/link ABCDE-FGHJK"))
    await bot.settle()
    [refused] = await Learning(bot, channel, chat="session-new").say(f"/link {code}")
    assert refused.startswith("Too many wrong codes.")


async def test_in_a_group_the_code_goes_to_the_private_chat_or_nowhere(learning_bot):
    bot, channel = learning_bot
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    [sent_privately] = await in_group(bot, channel, "/link", sender="ann")
    assert sent_privately == "I've sent you the code in a private message."
    assert CODE.search(channel.texts("ann")[-1])
    assert not any(CODE.search(text) for text in channel.texts("-100"))

    # Bob never opened a private chat with the bot: he is asked to, and no code is made.
    await in_group(bot, channel, "/start", sender="bob")
    told, asked_again = await in_group(bot, channel, "/link", sender="bob")
    assert told == "Link codes are only given in a private chat: send /link to me there, not in a group."
    assert "Is that OK with you?" in asked_again  # his set-up's open question, asked again as after /help
    assert not any(CODE.search(text) for text in channel.texts("-100"))
    async with bot.db.sessions() as session:
        codes = [code for code in await session.scalars(select(Learner.link_code)) if code]
    assert codes == [CODE.search(channel.texts("ann")[-1])[1].replace("-", "")]  # Ann's only

    code = CODE.search(channel.texts("ann")[-1])[1]
    [refused] = await in_group(bot, channel, f"/link {code}", sender="carol")
    assert refused.startswith("Send /link CODE in a private chat with me, not in a group")


async def test_a_certificate_earned_in_the_joining_chat_still_verifies_after_the_link(learning_bot):
    """/link joins this chat to another learner's progress; what it learned alone goes, but a certificate it earned,
    whose code is printed on a PDF someone may check, goes with it to the learner it joins."""
    import httpx
    from starlette.applications import Starlette

    from bot.certificate_page import certificate_routes
    from bot.messages import Document
    from tests.dialogs.learning_support import answer_until

    bot, channel = learning_bot
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    await ann.press("Start my first lesson")
    await answer_until(ann, bot, "🏆")
    await bot.settle()
    [document] = [reply for reply in channel.sent["ann"] if isinstance(reply, Document)]
    code = document.caption.rsplit(" ", 1)[1]
    app = Starlette(routes=certificate_routes(bot.db))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        other = Learning(bot, channel, chat="ann-web")  # the same person, set up on another chat before
        await onboard(other)
        [told] = await other.say("/link")
        link_code = told.split("Your link code is ")[1][:11]
        [linked] = await ann.say(f"/link {link_code}")
        assert linked.startswith("Linked!")
        assert (await client.get(f"/certificates/{code}")).status_code == 200


async def test_a_team_membership_of_the_joining_chat_goes_with_it_opted_out_and_hidden(learning_bot):
    bot, channel = learning_bot
    ann = Learning(bot, channel, chat="ann")
    await onboard(ann)
    bob = Learning(bot, channel, chat="bob")  # her other app, where she is a team member who opted out
    await bob.say("/start")
    async with bot.db.transaction() as session:
        bob_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "bob"))
        team = Team(channel="test", chat_id="grp", workspace="W", course_id=await session.scalar(select(Course.id)),
                    lesson_time=time(9), created_by="someone")
        session.add(team)
        await session.flush()
        session.add(TeamMember(team_id=team.id, member="bob", user_id=bob_id, status=MEMBER_OPTED_OUT, hidden=True))
    await bob.say(f"/link {await code_from(ann)}")
    async with bot.db.sessions() as session:
        ann_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "ann"))
        members = [(m.member, m.user_id, m.status, m.hidden) for m in await session.scalars(select(TeamMember))]
    assert members == [("bob", ann_id, MEMBER_OPTED_OUT, True)]  # (the next member sync would invite them again)


async def test_the_questions_the_joining_chat_asked_stay_counted_as_the_learners_it_joins(learning_bot):
    """The admins' knowledge page counts every question learners asked (what the course should answer): those asked
    in the chat that joins another learner's lessons are that learner's now, not gone with the dropped one."""
    from storage.knowledge import KnowledgeQuestion

    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    await web.say("/ask what is smishing?")
    phone = Learning(bot, channel, chat="ann-phone")
    await onboard(phone)
    await phone.say("/ask what is vishing?")
    await phone.say("/ask how do I report a phish?")
    [linked] = await phone.say(f"/link {await code_from(web)}")
    assert linked.startswith("Linked!")
    ann, _ = await learner_row(bot, "test", "ann-web")
    async with bot.db.sessions() as session:
        asked = [(row.user_id, row.question) for row in
                 await session.scalars(select(KnowledgeQuestion).order_by(KnowledgeQuestion.id))]
    assert asked == [(ann.id, "what is smishing?"), (ann.id, "what is vishing?"),
                     (ann.id, "how do I report a phish?")]


async def test_the_model_answers_cached_for_the_joining_chat_are_the_learners_it_joins_and_go_when_she_is_erased(
        learning_bot):
    """A model's answer is cached with the learner it was composed for (`asked_by`), so that erasing them forgets it:
    after /link the answers composed for the joining chat are the joined learner's, and erasing her forgets them
    (left under the dropped learner's id, they were forgotten by nobody, or, where SQLite gives the id to a new
    person, by that person's erasure)."""
    from storage.knowledge import KnowledgeCachedAnswer, remember_answer
    from storage.personal_data import erase_person

    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    phone = Learning(bot, channel, chat="ann-phone")
    await onboard(phone)
    phone_user, _ = await learner_row(bot, "test", "ann-phone")
    async with bot.db.sessions() as session, session.begin():
        await remember_answer(session, "what-is-vishing", {"text": "Phishing by phone."}, asked_by=str(phone_user.id))
    [linked] = await phone.say(f"/link {await code_from(web)}")
    assert linked.startswith("Linked!")
    ann, _ = await learner_row(bot, "test", "ann-web")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(KnowledgeCachedAnswer.asked_by)) == str(ann.id)
    async with bot.db.sessions() as session, session.begin():
        await erase_person(session, ann.id, by="test:admin")
    async with bot.db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(KnowledgeCachedAnswer)) == 0


async def test_a_learner_who_comes_after_a_link_gets_the_lesson_of_that_day_and_none_of_the_joined_chats_data(
        learning_bot):
    """Ann has set up on the web and on her phone; her phone got its morning lesson, then she links the phone to
    her web progress (the phone's learner row goes). Bob starts that day with lessons in the evening. On SQLite his
    new user row may take the dropped learner's id: the phone's lesson still holds the day's key
    (`lesson:<user>:<date>`), so Bob's evening lesson must still be queued and sent, and his /export must not hold
    Ann's phone chat."""
    import json
    from collections import Counter
    from datetime import timedelta
    from pathlib import Path
    from zoneinfo import ZoneInfo

    from scheduler.planner import next_lesson_after, plan_lessons
    from storage.models import OutboxMessage, utcnow
    from storage.outbox import OutboxStatus
    from storage.scheduling import QUEUED
    from tests.scheduler.support import HandClock, context

    lisbon = ZoneInfo("Europe/Lisbon")
    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web, at="21:00")
    phone = Learning(bot, channel, chat="ann-phone")
    await onboard(phone, at="08:00")
    phone_user, _ = await learner_row(bot, "test", "ann-phone")
    clock = HandClock(utcnow())
    jobs = context(bot.db, clock)
    await plan_lessons(jobs)
    clock.move(minutes=1)
    await plan_lessons(jobs)
    morning = next_lesson_after(clock.now(), zone=lisbon, at=time(8), days="1234567")
    clock.at(morning + timedelta(seconds=30))
    assert await plan_lessons(jobs) == Counter({QUEUED: 1})  # the phone's morning lesson
    await bot.settle()
    day = morning.astimezone(lisbon).date().isoformat()

    [linked] = await phone.say(f"/link {await code_from(web)}")
    assert linked.startswith("Linked!")

    bob = Learning(bot, channel, chat="bob")
    await onboard(bob, at="20:00")
    bob_user, _ = await learner_row(bot, "test", "bob")
    clock.move(minutes=1)
    await plan_lessons(jobs)
    evening = next_lesson_after(clock.now(), zone=lisbon, at=time(20), days="1234567")
    assert evening.astimezone(lisbon).date().isoformat() == day
    clock.at(evening + timedelta(seconds=30))
    await plan_lessons(jobs)
    await bot.settle()
    async with bot.db.sessions() as session:
        sent = [(row.status, row.chat_id) for row in await session.scalars(select(OutboxMessage).where(
            OutboxMessage.idempotency_key == f"lesson:{bob_user.id}:{day}"))]
    # Bob's own lesson of that day reached Bob's chat (not a row of Ann's phone, under Bob's key)
    await bob.say("/export")
    document = channel.sent["bob"][-1]
    export_chats = {reply["chat"] for reply in json.loads(Path(document.path).read_text(encoding="utf-8"))["replies"]}
    assert (sent, export_chats - {"bob"}) == ([(OutboxStatus.SENT, "bob")], set()), (phone_user.id, bob_user.id)


async def test_a_code_sent_from_two_chats_at_once_links_only_one(learning_bot):
    """Ann's code is typed on her phone and, in the same moment, by someone who saw it: one chat is linked, the
    other told the code is used up (the two turns run side by side on PostgreSQL; SQLite takes writes one at a
    time)."""
    import asyncio

    from sqlalchemy import text

    bot, channel = learning_bot
    web = Learning(bot, channel, chat="ann-web")
    await onboard(web)
    code = await code_from(web)
    ann_id = (await learner_row(bot, "test", "ann-web"))[0].id
    chats = ("ann-phone", "mallory")
    for chat in chats:
        await Learning(bot, channel, chat=chat).say("/start")
    before = {chat: len(channel.texts(chat)) for chat in chats}
    async with bot.db.transaction() as session:
        # Ann's learner row held for a moment, as a turn of hers (a lesson answered) holds it while it runs
        if bot.db.backend == "postgresql":
            await session.execute(text("SELECT 1 FROM learners WHERE user_id = :ann FOR UPDATE"), {"ann": ann_id})
        for chat in chats:
            await bot.receive(Message(channel="test", platform_id=f"{chat}:link", chat_id=chat, sender_id=chat,
                                      text=f"/link {code}"))
        await asyncio.sleep(1.0)  # both turns have read the code and wait for the row
    await bot.settle()
    answers = sorted(channel.texts(chat)[before[chat]][:30] for chat in chats)  # (then the set-up's question)
    assert answers == ["Linked! This chat now continue", "That code is unknown or has ex"], answers
    async with bot.db.sessions() as session:
        assert len(set(await session.scalars(select(ChannelIdentity.user_id).where(
            ChannelIdentity.external_id.in_(chats))))) == 2  # one joined Ann, the other kept its own learner
