"""What every scheduled job works with: the database, the time, and a way to wake the dispatcher.

All of the scheduler's sense of time comes through `now()`: the planner's windows, local dates, inactivity, quiet
hours, settling nudge outcomes. Tests pass a controllable clock and move it by hours or days without sleeping.
Leases, retry times and `sent_at` on outbox rows stay in real time (`storage.models.utcnow`): they coordinate with
other processes, which know nothing of a test's clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from bot.channel import ListsMembers, UnpromptedWindow
from storage.db import Database
from storage.models import utcnow
from storage.retention import ANSWERS_KEPT, MESSAGE_DAYS

Now = Callable[[], datetime]


@dataclass
class JobContext:
    db: Database
    now: Now = utcnow
    notify: Callable[[], None] = lambda: None  # outbox rows were written: the dispatcher may look at once
    data_dir: Path | None = None  # where generated files go (a certificate at the end of a pushed lesson)
    site_url: str | None = None  # where people reach the bot's pages (printed on a certificate)
    # Channel name → until when it may send what the person did not ask for (bot.channel.SendsUnpromptedWithin):
    # the channels' own rules, such as WhatsApp's 24-hour window; a channel not listed has no such limit.
    unprompted_windows: Mapping[str, UnpromptedWindow] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)  # the bandit's draws (seeded in tests)
    nudge_holdout: float = 0.0  # the share of decided nudges held back, to measure who comes back without one
    message_days: int = MESSAGE_DAYS  # how long the nightly prune keeps finished messages and replies
    answers_kept: timedelta = ANSWERS_KEPT  # how long the model's cached answers are reused (then pruned)
    # Channel name → who is in its group chats (bot.channel.ListsMembers): a team's members are read through it.
    member_lists: Mapping[str, ListsMembers] = field(default_factory=dict)
    # Learner → the local date on which the review reminder found none of their due questions open to them (all of a
    # course they lost access to): not counted again that day (scheduler.nudges.sweep).
    nothing_to_review: dict[int, date] = field(default_factory=dict)
