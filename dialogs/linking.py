"""/link: continue the same lessons on another channel (start on the web, go on in Telegram).

On the channel that has the progress, /link gives a six-digit code valid for 15 minutes; on the other channel,
`/link CODE` joins that channel's identity to the same learner, so progress, streak and settings follow. Whatever
the joining channel had learned on its own is dropped (the code's owner wins), and it says so before.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update

from dialogs import flow
from dialogs.learner import is_set_up, learner_of, tr
from dialogs.turn import Turn
from storage.learners import Learner, drop_learning, move_conversations
from storage.models import ChannelIdentity, User

CODE_LIFETIME = timedelta(minutes=15)


async def link(turn: Turn, args: str) -> None:
    _ = tr(turn)
    code = "".join(args.split())
    if not code:
        await _give_code(turn)
        return
    owner = await turn.session.scalar(
        select(Learner).where(Learner.link_code == code, Learner.link_code_expires_at > turn.now)
    )
    if owner is None or not code.isdigit():
        turn.say(_("That code is unknown or has expired. Send /link on the channel you used before to get a new one."))
        return
    if owner.user_id == turn.user.id:
        turn.say(_("This chat already uses those lessons."))
        return
    previous = turn.user.id
    owner.link_code, owner.link_code_expires_at = None, None
    await turn.session.execute(
        update(ChannelIdentity).where(ChannelIdentity.user_id == previous).values(user_id=owner.user_id)
    )
    await move_conversations(turn.session, previous, owner.user_id)
    await drop_learning(turn.session, previous)
    user = await turn.session.get(User, owner.user_id)
    assert user is not None
    if turn.conversation is not None:
        turn.conversation.user_id = user.id
    flow.clear(turn.state)
    turn.user = user
    _ = tr(turn)
    turn.say(_("Linked! This chat now continues your lessons, {name}. Send /next to go on where you left off.",
               name=user.display_name or ""), choices=[(_("Next ▸"), "lesson:next")])


async def _give_code(turn: Turn) -> None:
    _ = tr(turn)
    learner = await learner_of(turn)
    if not is_set_up(learner):
        turn.say(_("To continue lessons from another channel, send /link CODE here with the code that /link gives "
                   "you there. To link this chat to others, set it up first with /start."))
        return
    for _attempt in range(5):
        code = f"{secrets.randbelow(1_000_000):06d}"
        taken = await turn.session.scalar(select(Learner.user_id).where(Learner.link_code == code))
        if taken is None:
            break
    learner.link_code, learner.link_code_expires_at = code, turn.now + CODE_LIFETIME
    turn.say(_("Your link code is {code}. On the other app, send: /link {code}\nIt works for 15 minutes. "
               "Whatever that chat had learned on its own is replaced by your progress here.", code=code))
