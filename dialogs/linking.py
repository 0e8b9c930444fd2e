"""/link: continue the same lessons on another channel (start on the web, go on in Telegram).

On the channel that has the progress, /link gives a code; on the other channel, `/link CODE` joins that channel's
identity to the same learner, so progress, streak and settings follow. Whatever the joining channel had learned on
its own is dropped (the code's owner wins), and it says so before.

A code is the key to a learner's data, so it is made to be useless to anyone else:
- 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L): about 49 bits, valid 15 minutes, used once;
- wrong codes are counted per identity (5 in 15 minutes) and per source, the channel they came through (50 in 15
  minutes, against many throwaway web sessions): past either, /link refuses until the window has moved on;
- never shown in a group: the code goes to the person's private chat with the bot if there is one, else they are
  asked to send /link there; `/link CODE` typed in a group is refused too;
- the learner's own chat is told when another app was linked, so a takeover does not go unnoticed.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta
from functools import partial

from sqlalchemy import delete, select, update

from bot.messages import IF_UNREACHABLE, REPLY_ADDRESS, IfUnreachable, Reply, Text
from bot.text import code_letters
from dialogs import flow
from dialogs.i18n import translator
from dialogs.learner import is_set_up, learner_of, local_now, tr
from dialogs.personal import remove_paths
from dialogs.turn import Turn
from storage.courses import Entitlement
from storage.knowledge import KnowledgeCachedAnswer, KnowledgeQuestion
from storage.learners import Certificate, Learner, LinkAttempt, move_conversations
from storage.models import ChannelIdentity, Conversation, User
from storage.outbox import OutboxEntry, enqueue
from storage.payments import Payment
from storage.personal_data import drop_user
from storage.teams import TeamMember

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 10
CODE_LIFETIME = timedelta(minutes=15)
WRONG_CODE_WINDOW = timedelta(minutes=15)
WRONG_CODES_PER_IDENTITY = 5
WRONG_CODES_PER_SOURCE = 50


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def shown(code: str) -> str:
    """ABCDE-FGHJK: two halves are easier to copy by eye."""
    return f"{code[:5]}-{code[5:]}"


def canonical_code(typed: str) -> str:
    """A code as typed ("abcde fghjk", a dash, lower case) in its stored form."""
    return code_letters(typed)


async def link(turn: Turn, args: str) -> None:
    code = canonical_code(args)
    if code:
        await _use_code(turn, code)
    else:
        await _give_code(turn)
    # In the middle of something (setting up, /settings): its question is asked again, as after /help (once joined to
    # other lessons there is none: joining ends what this chat had started)
    await flow.resume(turn)


# Giving a code --------------------------------------------------------------------------------------------------------


async def _give_code(turn: Turn) -> None:
    _ = tr(turn)
    private = None if turn.message.private else await private_chat(turn)
    if not turn.message.private and private is None:
        turn.say(_("Link codes are only given in a private chat: send /link to me there, not in a group."))
        return
    learner = await learner_of(turn)
    if not is_set_up(learner):
        turn.say(_("To continue lessons from another channel, send /link CODE here with the code that /link gives "
                   "you there. To link this chat to others, set it up first with /start."))
        return
    code = await _unused_code(turn)
    learner.link_code, learner.link_code_expires_at = code, turn.now + CODE_LIFETIME
    text = Text(_("Your link code is {code}. On the other app, send: /link {code}\nIt works once, for 15 minutes; "
                  "never share it. Whatever that chat had learned on its own is replaced by your progress here.",
                  code=shown(code)), secret=True)
    if private is None:
        turn.send(text)
        return
    await queue(turn, private, text)
    turn.say(_("I've sent you the code in a private message."))


async def _unused_code(turn: Turn) -> str:
    while True:
        code = new_code()
        if await turn.session.scalar(select(Learner.user_id).where(Learner.link_code == code)) is None:
            return code


async def private_chat(turn: Turn) -> Conversation | None:
    """The person's private chat with the bot on this channel, if they ever opened one (a bot cannot start it) and
    the platform has not refused it since (they closed it: nothing goes there until they write again)."""
    return await turn.session.scalar(
        select(Conversation).where(
            Conversation.channel == turn.message.channel, Conversation.chat_id == turn.message.sender_id,
            Conversation.refused_by_platform.is_(False),
        )
    )


async def queue(turn: Turn, conversation: Conversation, *replies: str | Reply, note_here: bool = True) -> None:
    """Replies to another chat than the one this turn answers (its person's private chat), in the same
    transaction; sent as replies the person waits for (`Turn.answered_elsewhere`). Should the platform refuse that
    chat, the chat the command was typed in gets a note instead (`if_unreachable`), unless not `note_here` (a group
    the person has left)."""
    turn.answered_elsewhere.add(conversation.id)
    instead = if_unreachable(turn, conversation) if note_here else None
    await enqueue(turn.session, [
        OutboxEntry(conversation_id=conversation.id, channel=conversation.channel, chat_id=conversation.chat_id,
                    payload={**(Text(reply) if isinstance(reply, str) else reply).to_payload(),
                             **({IF_UNREACHABLE: instead} if instead is not None else {})})
        for reply in replies
    ])


def if_unreachable(turn: Turn, private: Conversation) -> IfUnreachable | None:
    """What the chat this turn answers hears if the platform refuses the person's private chat (they never opened
    it, or closed it): a short note in their language, naming nothing of what was for them alone, that they should
    open a chat with the bot first (with a button that opens it, where the platform has one); once a day at most.
    None where there is no other chat to tell."""
    if turn.conversation is None or turn.conversation.id == private.id:
        return None
    _ = tr(turn)
    name = turn.message.sender_name
    note = Text(_("{name}, I can't write to you privately until you open a chat with me. Open it, then ask again "
                  "here.", name=name) if name else
                _("I can't write to you privately until you open a chat with me. Open it, then ask again here."))
    payload = note.to_payload()
    if (address := turn.message.meta.get(REPLY_ADDRESS)) is not None:
        payload[REPLY_ADDRESS] = address  # the forum topic the command was typed in
    return IfUnreachable(conversation_id=turn.conversation.id, chat_id=turn.conversation.chat_id,
                         key=f"private-chat-refused:{private.id}:{local_now(turn).date().isoformat()}",
                         reply=payload, link_label=_("Open a chat with me"))


# Using a code ---------------------------------------------------------------------------------------------------------


async def _use_code(turn: Turn, code: str) -> None:
    _ = tr(turn)
    if not turn.message.private:
        turn.say(_("Send /link CODE in a private chat with me, not in a group: everyone here can read it. Then ask "
                   "for a new code, since this one was seen."))
        return
    minutes = await _minutes_refused(turn)
    if minutes:
        turn.say(_.plural("Too many wrong codes. Try again in {n} minute, with a new code from /link on the other app.",
                          "Too many wrong codes. Try again in {n} minutes, with a new code from /link on the other "
                          "app.", minutes))
        return
    owner = await _code_owner(turn, code) if len(code) == CODE_LENGTH else None
    if owner is None:
        await _count_wrong_code(turn)
        turn.say(_("That code is unknown or has expired. Send /link on the channel you used before to get a new one."))
        return
    if owner.user_id == turn.user.id:
        turn.say(_("This chat already uses those lessons."))
        return
    owner.link_code, owner.link_code_expires_at = None, None
    await _tell_owner(turn, owner)
    await _join(turn, owner.user_id)


async def _code_owner(turn: Turn, code: str) -> Learner | None:
    """The learner whose unexpired code this is, their row locked for this turn: a code typed in two chats at once
    is found by one of them only (the other reads it once that turn has used it up, and finds none)."""
    return await turn.session.scalar(
        select(Learner).where(Learner.link_code == code, Learner.link_code_expires_at > turn.now).with_for_update()
    )


async def _count_wrong_code(turn: Turn) -> None:
    """Note a wrong code; the channel's notes older than the window are of no use any more and go."""
    await turn.session.execute(delete(LinkAttempt).where(
        LinkAttempt.source == turn.message.channel, LinkAttempt.at <= turn.now - WRONG_CODE_WINDOW
    ))
    turn.session.add(LinkAttempt(identity=turn.identity.address, source=turn.message.channel, at=turn.now))


async def _minutes_refused(turn: Turn) -> int:
    """How long /link refuses this person for the wrong codes of the last window (0: it does not)."""
    since = turn.now - WRONG_CODE_WINDOW
    until = turn.now
    for column, value, limit in (
        (LinkAttempt.identity, turn.identity.address, WRONG_CODES_PER_IDENTITY),
        (LinkAttempt.source, turn.message.channel, WRONG_CODES_PER_SOURCE),
    ):
        times = list(await turn.session.scalars(
            select(LinkAttempt.at).where(column == value, LinkAttempt.at > since).order_by(LinkAttempt.at.desc())
            .limit(limit)
        ))
        if len(times) >= limit:  # refused until the oldest of the last `limit` leaves the window
            until = max(until, times[-1] + WRONG_CODE_WINDOW)
    return math.ceil((until - turn.now).total_seconds() / 60)


async def _tell_owner(turn: Turn, owner: Learner) -> None:
    """The learner's own chat hears that another app now shares their lessons (a stolen code shows here)."""
    home = await turn.session.get(Conversation, owner.home_conversation_id) if owner.home_conversation_id else None
    if home is None:
        home = await turn.session.scalar(
            select(Conversation).where(Conversation.user_id == owner.user_id)
            .order_by(Conversation.last_inbound_at.desc()).limit(1)
        )
    user = await turn.session.get(User, owner.user_id)
    if home is None or user is None:
        return
    _ = translator(user.locale)
    await queue(turn, home, _("A chat on {channel} was just linked to your lessons and can now see your progress. "
                               "If that wasn't you, send /stop and choose to delete your data.",
                               channel=turn.message.channel))


async def _join(turn: Turn, owner_id: int) -> None:
    """This chat's identity, chats, purchases, certificates, team memberships, the questions it asked and the model's
    answers cached for them go to the code's owner; what it had learned alone is dropped."""
    previous = turn.user.id
    session = turn.session
    await session.execute(update(ChannelIdentity).where(ChannelIdentity.user_id == previous).values(user_id=owner_id))
    await session.execute(update(Entitlement).where(Entitlement.user_id == previous).values(user_id=owner_id))
    # and what it bought: the platforms' later events (renewals, refunds) are the owner's, as is the sale's record
    await session.execute(update(Payment).where(Payment.user_id == previous).values(user_id=owner_id))
    # and the certificates it earned, whose codes others may check: kept, unless the owner holds one for that course
    owned = select(Certificate.course_id).where(Certificate.user_id == owner_id).scalar_subquery()
    await session.execute(
        update(Certificate).where(Certificate.user_id == previous, Certificate.course_id.not_in(owned))
        .values(user_id=owner_id)
    )
    # and its places in Slack teams, with what the member chose there (opted out, hidden from the leaderboard)
    await session.execute(update(TeamMember).where(TeamMember.user_id == previous).values(user_id=owner_id))
    # and the questions it asked the answerer: the admins' knowledge page counts them (what the course should answer)
    await session.execute(update(KnowledgeQuestion).where(KnowledgeQuestion.user_id == previous)
                          .values(user_id=owner_id))
    # and the model's answers cached for its questions, which the owner's erasure forgets (`asked_by`, keyed as the
    # question allowance is, by user id)
    await session.execute(update(KnowledgeCachedAnswer).where(KnowledgeCachedAnswer.asked_by == str(previous))
                          .values(asked_by=str(owner_id)))
    await move_conversations(session, previous, owner_id)
    turn.after_commit.append(partial(remove_paths, await drop_user(session, previous)))  # its certificates' PDFs
    user = await session.get(User, owner_id)
    assert user is not None
    if turn.conversation is not None:
        turn.conversation.user_id = user.id
    flow.clear(turn)
    turn.user = user
    _ = tr(turn)
    turn.say(_("Linked! This chat now continues your lessons, {name}. Send /next to go on where you left off.",
               name=user.display_name or ""), choices=[(_("Next ▸"), "lesson:next")])
