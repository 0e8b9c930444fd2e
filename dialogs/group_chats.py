"""What a platform reports about a group chat itself, rather than a message in it: the group moved to another chat
id (a Telegram group became a supergroup, `meta[MOVED_FROM]` naming the old one), or someone left it (`left`).

The supergroup continues the group: the learners whose home the group was have the supergroup as their home, what
waits to go to the group goes there, the choices offered in the group are honoured there (its history shows them),
and a dialog under way in the group goes on there. Nothing is said in the chat. The channel sends anything still
addressed to the old id on to the new one by itself (Telegram's ChatMigrated), so a reply queued meanwhile is not
lost either.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from bot.messages import MOVED_FROM
from dialogs.access import withdraw_held_lessons
from dialogs.learner import tr
from dialogs.linking import private_chat, queue
from dialogs.turn import Turn
from storage.learners import Learner, move_homes
from storage.models import Conversation
from storage.outbox import follow_moved_chat, withdraw_unasked

log = logging.getLogger(__name__)


async def moved(turn: Turn) -> None:
    """The chat of this turn continues the one `meta[MOVED_FROM]` names (same channel): its learners, what waits for
    it, its offered choices and its dialog state come here."""
    old_chat = turn.message.meta.get(MOVED_FROM)
    new = turn.conversation
    if not isinstance(old_chat, str) or new is None or old_chat == new.chat_id:
        return
    old = await turn.session.scalar(select(Conversation).where(
        Conversation.channel == turn.message.channel, Conversation.chat_id == old_chat))
    if old is None:
        return  # the bot never spoke in the group: nothing to carry over
    homes = await move_homes(turn.session, old.id, new.id)
    replies = await follow_moved_chat(turn.session, old.id, new.id, new.chat_id)
    if not turn.state and old.state:
        turn.state.update(old.state)  # (a dialog under way in the group: saved with the turn, as any state)
        old.state = {}  # (and over there: a message still waiting in the old chat finds none to answer)
    new.shared = True if old.shared is None else old.shared
    if new.opted_out_at is None:  # (a STOP sent in the supergroup already stands)
        new.opted_out_at, new.refused_by_platform = old.opted_out_at, old.refused_by_platform
    log.info("a group chat moved to another id; its learners and waiting replies follow",
             extra={"channel": new.channel, "conversation_id": new.id, "from_conversation_id": old.id,
                    "learners": homes, "replies": replies})


NOT_SENT = "not sent: the learner left the group, their home"


async def left(turn: Turn) -> None:
    """The person of this turn left its group, or was removed from it (a platform's report: they wrote nothing). If
    it was their home, it ends: nothing more goes there on its own for them (no lesson at their hour, no reminder, no
    announcement; what was queued for them there and not sent is withdrawn, a lesson's place put back), and they are
    told once, in their private chat with the bot if they have one, that /next where they want their lessons makes
    that chat their home (`dialogs.learner.mark_home`)."""
    group = turn.conversation
    if turn.user.id is None:  # someone the bot never knew: nothing of theirs there
        return
    learner = await turn.session.get(Learner, turn.user.id)  # (none made for someone who never set up lessons)
    if group is None or learner is None or learner.home_conversation_id != group.id:
        return
    learner.home_conversation_id = None
    await withdraw_unasked(turn.session, group.id, learner.user_id, reason=NOT_SENT)
    await withdraw_held_lessons(turn.transaction, group, learner.user_id, now=turn.now, reason=NOT_SENT)
    log.info("a learner left the group that was their home; it is no longer",
             extra={"channel": group.channel, "conversation_id": group.id})
    private = await private_chat(turn)
    if private is not None:
        _ = tr(turn)
        await queue(turn, private, _("You are no longer in the group where your lessons came, so I no longer send "
                                     "them there. Send /next here, or in another group with me, and they come to "
                                     "that chat from then on."), note_here=False)
