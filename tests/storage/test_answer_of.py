"""What a platform's own response hands back (a Rasa action call's): the replies to its message, and before them the
replies to an earlier message whose call gave up waiting and that no sender took (a Rasa assistant without
RASA_URL): the person was told they would follow. Each handed back once; a retried call gets the same answer."""

from __future__ import annotations

from sqlalchemy import select

from bot.messages import Text
from storage.db import Database
from storage.models import Conversation, InboundMessage, OutboxMessage
from storage.outbox import IN_RESPONSE, OutboxEntry, OutboxStatus, answer_of, enqueue


async def test_the_replies_an_earlier_call_gave_up_on_come_with_the_next_answer(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            conversation = Conversation(channel="rasa", chat_id="u1", state={})
            session.add(conversation)
            await session.flush()
            calls = [InboundMessage(channel="rasa", platform_id=f"call-{n}", conversation_id=conversation.id, seq=n,
                                    sender_id="u1", payload={"text": "next"}, status="done") for n in (1, 2)]
            session.add_all(calls)
            await session.flush()
            await enqueue(session, [
                OutboxEntry(conversation_id=conversation.id, channel="rasa", chat_id="u1",
                            payload=Text(text).to_payload(), inbound_message_id=call.id)
                for call, text in ((calls[0], "the late part"), (calls[1], "the progress asked now"))
            ])
        async with db.transaction() as session:
            answer = await answer_of(session, "rasa", "call-2")
        assert answer is not None
        assert [payload["text"] for _id, payload in answer.replies] == ["the late part", "the progress asked now"]
        async with db.transaction() as session:  # the same call retried: the same answer, nothing twice
            again = await answer_of(session, "rasa", "call-2")
            statuses = list(await session.scalars(select(OutboxMessage.status)))
            ids = list(await session.scalars(select(OutboxMessage.platform_message_id)))
        assert again is not None and again.replies == answer.replies
        assert statuses == [OutboxStatus.SENT, OutboxStatus.SENT] and all(i.startswith(IN_RESPONSE) for i in ids)
        async with db.transaction() as session:  # the earlier call, looked at late (or retried): nothing twice
            earlier = await answer_of(session, "rasa", "call-1")
        assert earlier is not None and earlier.replies == []
    finally:
        await db.dispose()
