"""One person with everything the contract speaks of: two chats joined by /link, a Slack address in a team, a course
bought (its charges and the payment platform's events), questions asked of the answerer, a certificate. Their export
holds all of it, readable; their erasure leaves nothing the contract erases, on SQLite and on PostgreSQL; asking
again is harmless."""

from __future__ import annotations

import json
import re
from datetime import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.messages import Document
from dialogs.linking import CODE_ALPHABET
from storage.courses import Course, Entitlement
from storage.knowledge import KnowledgeQuestion
from storage.learners import Certificate
from storage.models import ChannelIdentity, Conversation, InboundMessage, User, utcnow
from storage.payments import PURCHASE_CHARGE, Payment, PaymentCharge, PaymentEvent
from storage.personal_data import COLUMNS, ERASED, PLAN, erase_person
from storage.teams import Team, TeamMember
from tests.dialogs.learning_support import Learning, learner_row, learning_bot, onboard  # noqa: F401
from tests.storage.test_personal_data import every_row, mentions

CODE = re.compile(rf"Your link code is ([{CODE_ALPHABET}]{{5}}-[{CODE_ALPHABET}]{{5}})\.")
EMAIL = "annabel.zed@example.com"
SLACK_ANN = "T0TEAM/U0A1B2C3"
# What is hers, as it stands in the rows: nothing of it may be left once she is erased (her chats' addresses aside,
# kept where replies are routed, and her Slack member id in the team's bare opt-out: docs/data.md).
HERS = ("Annabel", EMAIL, "zebra")


async def a_person_with_everything(bot, channel, data_dir: Path) -> dict[str, Any]:
    web, phone = Learning(bot, channel, chat="ann-web"), Learning(bot, channel, chat="ann-phone")
    await onboard(web)
    await onboard(phone)
    await phone.say("what is a zebra phish?")
    [text] = await web.say("/link")
    [linked] = await phone.say(f"/link {CODE.search(text)[1]}")
    assert linked.startswith("Linked!"), linked
    bob = Learning(bot, channel, chat="bob-7")
    await onboard(bob)
    ann, _ = await learner_row(bot, "test", "ann-web")
    roberto, _ = await learner_row(bot, "test", "bob-7")
    pdf = data_dir / "certificates" / "ANNCERT1.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.write_bytes(b"%PDF-1.4 Annabel")
    async with bot.db.transaction() as session:
        course = await session.scalar(select(Course))
        (await session.get(User, ann.id)).display_name = "Annabel"
        (await session.get(User, roberto.id)).display_name = "Roberto"
        session.add(ChannelIdentity(user_id=ann.id, channel="slack", external_id=SLACK_ANN))
        team_chat = Conversation(channel="slack", chat_id="T0TEAM/C0TEAM", state={})
        session.add(team_chat)
        team = Team(channel="slack", chat_id="T0TEAM/C0TEAM", workspace="T0TEAM", course_id=course.id,
                    lesson_time=time(9), created_by=SLACK_ANN, digest_chat="ann-web")
        session.add(team)
        await session.flush()
        session.add(TeamMember(team_id=team.id, member=SLACK_ANN, user_id=ann.id))
        session.add(InboundMessage(channel="slack", platform_id="Ev0ANN", conversation_id=team_chat.id, seq=1,
                                   sender_id=SLACK_ANN, status="done",
                                   payload={"text": "zebra in the team", "sender_name": "Annabel"}))
        sale = Payment(user_id=ann.id, offered_to=ann.id, course_id=course.id, provider="stripe",
                       reference="cs_0SALE1", charge_reference="pi_0SALE1", amount_minor=900, currency="EUR",
                       status="paid", channel="test", chat_id="ann-web", sender_id="ann-web", paid_at=utcnow())
        session.add(sale)
        await session.flush()
        session.add_all([
            PaymentCharge(payment_id=sale.id, reference=PURCHASE_CHARGE, amount_minor=900, charged_at=utcnow(),
                          paid_by="pi_0SALE1"),
            PaymentEvent(provider="stripe", event_id="evt_ann", type="checkout.session.completed", outcome="ok",
                         payload={"data": {"object": {"id": "cs_0SALE1", "payment_intent": "pi_0SALE1",
                                                      "customer_details": {"email": EMAIL, "name": "Annabel"}}}}),
            Entitlement(user_id=ann.id, course_id=course.id, source="stripe", reference="cs_0SALE1"),
            KnowledgeQuestion(user_id=ann.id, question="why do zebra phishers use urgency?",
                              normalized="why do zebra phishers use urgency", outcome="answered"),
            Certificate(code="ANNCERT1", user_id=ann.id, course_id=course.id, learner_name="Annabel",
                        course_title=course.title, file_path=str(pdf)),
        ])
    return {"web": web, "phone": phone, "bob": bob, "ann": ann.id, "pdf": pdf}


async def test_a_person_on_linked_chats_in_a_team_who_bought_asked_and_earned_is_exported_then_erased_whole(
        learning_bot, database_url, tmp_path):
    bot, channel = learning_bot
    data_dir = tmp_path / "var"
    person = await a_person_with_everything(bot, channel, data_dir)
    web, phone, ann = person["web"], person["phone"], person["ann"]

    # The export: one readable JSON file with everything the contract lists.
    await web.say("/export")
    [document] = [reply for reply in channel.sent["ann-web"] if isinstance(reply, Document)]
    exported = json.loads(Path(document.path).read_text(encoding="utf-8"))
    assert sorted(exported["profile"]["addresses"]) == sorted(["test:ann-web", "test:ann-phone", f"slack:{SLACK_ANN}"])
    assert exported["profile"]["name"] == "Annabel"
    [bought] = exported["payments"]
    assert (bought["amount_minor"], bought["currency"], len(bought["charges"])) == (900, "EUR", 1)
    assert [row["course_id"] for row in exported["entitlements"]] == [bought["course_id"]]
    assert "why do zebra phishers use urgency?" in [q["question"] for q in exported["questions"]]
    assert [c["code"] for c in exported["certificates"]] == ["ANNCERT1"]
    assert [t["chat"] for t in exported["teams"]] == ["T0TEAM/C0TEAM"]
    said = {m["text"] for m in exported["messages"]}
    assert {"what is a zebra phish?", "zebra in the team"} <= said  # from the phone before /link, and from Slack
    assert {m["chat"] for m in exported["messages"]} >= {"ann-web", "ann-phone", "T0TEAM/C0TEAM"}
    assert "Roberto" not in json.dumps(exported, ensure_ascii=False)
    before = every_row(database_url)

    await web.say("/stop")
    [done] = await web.press("Stop and delete my data")
    assert done.startswith("Done: I deleted everything"), done
    after = every_row(database_url)
    for table, rows in after.items():
        for word in HERS:
            found = [row for row in rows if mentions(row, word)]
            assert not found, f"{table} still holds {word!r}: {found} ({PLAN[table]})"
        if PLAN[table].treatment is ERASED:
            for column in ("user_id", "learner", "asked_by", "offered_to"):
                assert not [row for row in rows if str(row.get(column)) == str(ann)], f"{table}.{column}"
    for table in after:
        if table not in ("conversations", "outbox_messages", "inbound_messages"):
            for address in ("ann-web", "ann-phone"):
                assert not [row for row in after[table] if mentions(row, address)], (table, address)
        if table != "team_members":
            assert not [row for row in after[table] if mentions(row, "U0A1B2C3")], table
    for table, columns in COLUMNS.items():  # the columns the contract empties hold none of her numbers or addresses
        for column, rule in columns.items():
            if rule.treatment is ERASED:
                held = {str(row[column]) for row in after[table]} & {str(ann), "ann-web", "ann-phone", SLACK_ANN}
                assert not held, f"{table}.{column} still holds {held}: {rule.reason}"
    [membership] = after["team_members"]
    assert (membership["user_id"], membership["status"]) == (None, "opted_out")
    [sale] = after["payments"]  # the sale stays, by law, without her
    assert (sale["user_id"], sale["offered_to"], sale["amount_minor"]) == (None, None, 900)
    assert len(after["payment_charges"]) == 1 and [e["event_id"] for e in after["payment_events"]] == ["evt_ann"]
    assert not person["pdf"].exists() and not (data_dir / "exports" / f"user-{ann}").exists()
    # Roberto is as he was.
    roberto = {table: [row for row in rows if mentions(row, "Roberto")] for table, rows in before.items()}
    assert {table: [row for row in rows if mentions(row, "Roberto")] for table, rows in after.items()
            if table not in ("admin_audit",)} == {t: r for t, r in roberto.items() if t != "admin_audit"}

    # A second request is harmless: the same erasure again changes nothing, and the button pressed again (from the
    # other chat she had) finds no one to erase.
    async with bot.db.transaction() as session:
        await erase_person(session, ann, by="cli:operator")
    again = every_row(database_url)
    for table in after:
        if table != "admin_audit":
            assert again[table] == after[table], table
    assert await phone.say("Stop and delete my data", choice="stop:delete") == ["That button isn't available."]
    last = every_row(database_url)
    for table, rows in last.items():
        for word in HERS:
            assert not [row for row in rows if mentions(row, word)], (table, word)
    assert not last["entitlements"] and not last["certificates"] and not last["knowledge_questions"]
