"""Which reminder template to send: Thompson sampling over each template's record, with a recency penalty.

Each nudge kind has several templates (dialogs/nudges.py). A template's record is how many of its nudges were
delivered and settled (`sent`) and after how many the learner came back (`came_back`): wrote to the bot and learned
(a lesson part, a quiz or review answer; a pause or /stop is no coming back) within NUDGE_REWARD_WINDOW (two hours,
storage/scheduling.py) of the nudge going out (scheduler/nudges.py settles it). Every choice draws a plausible
response rate for each template from its Beta posterior, Beta(1 + came_back, 1 + sent - came_back), and picks the
highest draw: templates with little record are tried now and then, a template that works is sent more and more,
and one that stops working loses its lead as its record grows.

Recency penalty: the draw of a template this learner got recently for this kind is multiplied down (the last one by
RECENCY_PENALTY[0], the one before by RECENCY_PENALTY[1]), so a learner does not read the same words twice in a row
unless that template is far better than every other.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.scheduling import NudgeTemplateStats, insert_many_ignoring_conflicts

# Multipliers for the learner's most recent template of this kind, and the one before it.
RECENCY_PENALTY = (0.2, 0.6)


@dataclass(frozen=True)
class Arm:
    """One template's record: nudges delivered and settled, and how many brought the learner back."""

    template: str
    sent: int = 0
    came_back: int = 0


def choose(arms: Sequence[Arm], rng: random.Random, *, recent: Sequence[str] = ()) -> str:
    """The template to send now. `recent`: this learner's templates of this kind, most recent first."""
    if not arms:
        raise ValueError("no templates to choose from")
    best, best_score = arms[0].template, -1.0
    for arm in arms:
        score = rng.betavariate(1 + arm.came_back, 1 + max(arm.sent - arm.came_back, 0))
        for position, penalty in enumerate(RECENCY_PENALTY):
            if position < len(recent) and recent[position] == arm.template:
                score *= penalty
                break
        if score > best_score:
            best, best_score = arm.template, score
    return best


async def arms_for(session: AsyncSession, kind: str, templates: Sequence[str]) -> list[Arm]:
    """The record of each of `templates` (the ones the code has now: a retired template's record is left aside)."""
    rows = await session.execute(
        select(NudgeTemplateStats.template, NudgeTemplateStats.sent, NudgeTemplateStats.came_back).where(
            NudgeTemplateStats.kind == kind
        )
    )
    known = {template: (sent, came_back) for template, sent, came_back in rows.all()}
    return [Arm(template, *known.get(template, (0, 0))) for template in templates]


async def record_outcome(session: AsyncSession, kind: str, template: str, *, came_back: bool,
                         now: datetime) -> None:
    """Add one settled nudge to its template's record (in the transaction that settles it, so it counts once)."""
    await session.execute(
        insert_many_ignoring_conflicts(session, NudgeTemplateStats),
        [{"kind": kind, "template": template, "sent": 0, "came_back": 0, "updated_at": now}],
    )
    await session.execute(
        update(NudgeTemplateStats)
        .where(NudgeTemplateStats.kind == kind, NudgeTemplateStats.template == template)
        .values(
            sent=NudgeTemplateStats.sent + 1,
            came_back=NudgeTemplateStats.came_back + (1 if came_back else 0),
            updated_at=now,
        )
    )
