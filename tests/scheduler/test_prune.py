"""The nightly prune: the history nothing reads any more goes, in batches, each a transaction of its own; what is
still read stays."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import event, select

from scheduler.clock import prune
from storage.learners import Learner
from storage.scheduling import (
    QUEUED,
    SENT,
    Broadcast,
    BroadcastRecipient,
    ClockRun,
    NudgeLog,
    ScheduledLesson,
)
from tests.scheduler.support import HandClock, add_learner, context, sample_course

UTC = timezone.utc
NOW = datetime(2026, 9, 1, 3, 17, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=200)
BATCH = 2


async def _history(db, users):
    """Months of history, more of each table's than one batch, beside the rows still read."""
    async with db.transaction() as session:
        for minute in range(7):
            session.add(ClockRun(job="prune", scheduled_for=LONG_AGO, owner="leader", outcome="ok",
                                 finished_at=LONG_AGO + timedelta(minutes=minute)))
        session.add(ClockRun(job="prune", scheduled_for=NOW, owner="leader", outcome="ok",
                             finished_at=NOW - timedelta(hours=1)))
        for user in users:
            for day in range(4):
                session.add(ScheduledLesson(user_id=user, local_date=date(2026, 2, 1) + timedelta(days=day),
                                            due_at=LONG_AGO + timedelta(days=day), outcome=QUEUED))
        # the first learner's last queued lesson is recent: all four old ones go; the others' last old one stays
        session.add(ScheduledLesson(user_id=users[0], local_date=date(2026, 8, 31), due_at=NOW - timedelta(days=1),
                                    outcome=QUEUED))
        for number in range(9):
            settled = number != 7  # (an old reminder not settled yet stays, as does a recent one)
            created = NOW - timedelta(days=1) if number == 8 else LONG_AGO + timedelta(minutes=number)
            session.add(NudgeLog(user_id=users[number % 3], kind="inactive", template="t", outcome=QUEUED,
                                 idempotency_key=f"nudge:{number}", created_at=created,
                                 settled_at=created + timedelta(days=1) if settled else None))
        old = Broadcast(text="old", created_by="admin", status=SENT, queued_all_at=LONG_AGO)
        recent = Broadcast(text="recent", created_by="admin", status=SENT, queued_all_at=NOW - timedelta(days=1))
        session.add_all([old, recent])
        await session.flush()
        for broadcast in (old, recent):
            for user in users:
                home = await session.scalar(select(Learner.home_conversation_id).where(Learner.user_id == user))
                session.add(BroadcastRecipient(broadcast_id=broadcast.id, user_id=user, conversation_id=home))
        return recent.id


async def test_a_backlog_larger_than_a_batch_is_pruned_whole_a_batch_a_transaction_and_what_is_read_stays(db):
    course = await sample_course(db)
    users = [await add_learner(db, course_id=course) for _ in range(3)]
    recent_broadcast = await _history(db, users)
    seen: list[str] = []

    def deleted(_conn, _cursor, statement, _parameters, _context, _many):
        if statement.lstrip().upper().startswith("DELETE"):
            seen.append(f"D{_cursor.rowcount}")

    def committed(_conn):
        seen.append("C")

    engine = db.engine.sync_engine
    event.listen(engine, "after_cursor_execute", deleted)
    event.listen(engine, "commit", committed)
    try:
        pruned = await prune(context(db, HandClock(NOW)), batch=BATCH)
    finally:
        event.remove(engine, "after_cursor_execute", deleted)
        event.remove(engine, "commit", committed)

    assert pruned == {"outbox_messages": 0, "inbound_messages": 0,  # (tests/scheduler/test_message_retention.py)
                      "offered_choices": 0,  # (tests/scheduler/test_message_retention.py)
                      "knowledge_questions": 0,  # (tests/scheduler/test_message_retention.py)
                      "knowledge_answer_cache": 0,  # (tests/knowledge/test_allowance.py)
                      "admin_sessions": 0,  # (below)
                      "clock_runs": 7, "scheduled_lessons": 10, "nudge_log": 7, "broadcast_recipients": 3}
    deletes = [int(step[1:]) for step in seen if step.startswith("D")]
    assert max(deletes) == BATCH and sum(deletes) == 27  # no statement deleted more than a batch …
    # … and each is committed before the next one runs
    assert all(after == "C" for before, after in zip(seen, seen[1:], strict=False) if before.startswith("D"))
    async with db.sessions() as session:  # what is still read stays
        assert list(await session.scalars(select(ClockRun.finished_at))) == [NOW - timedelta(hours=1)]
        kept = set(await session.execute(select(ScheduledLesson.user_id, ScheduledLesson.local_date)))
        assert kept == {(users[0], date(2026, 8, 31)), (users[1], date(2026, 2, 4)), (users[2], date(2026, 2, 4))}
        assert set(await session.scalars(select(NudgeLog.idempotency_key))) == {"nudge:7", "nudge:8"}
        assert set(await session.scalars(select(BroadcastRecipient.broadcast_id))) == {recent_broadcast}
    assert await prune(context(db, HandClock(NOW)), batch=BATCH) == dict.fromkeys(pruned, 0)  # nothing left


async def test_the_dashboards_sign_ins_that_ended_go_with_the_nightly_prune_a_batch_a_transaction(db):
    """Links never used and sessions that ended more than a day ago went in one statement every five minutes, in the
    dashboard's count; the nightly prune takes them, in batches, with the rest of the history. Those still usable,
    or ended within the day, stay."""
    from storage.admins import AdminSession

    now = NOW
    ended, fresh = now - timedelta(days=1, hours=1), now - timedelta(hours=1)
    rows = {
        "link never used, long expired": dict(link_expires_at=ended),
        "link never used, expired lately": dict(link_expires_at=fresh),
        "session ended long ago": dict(link_expires_at=ended, used_at=ended, session_expires_at=ended),
        "session ended lately": dict(link_expires_at=ended, used_at=ended, session_expires_at=fresh),
        "session going on": dict(link_expires_at=ended, used_at=ended, session_expires_at=now + timedelta(hours=7)),
    }
    async with db.transaction() as session:
        for number, (identity, times) in enumerate(rows.items()):
            session.add(AdminSession(identity=identity, link_hash=f"link-{number}",
                                     session_hash=f"session-{number}" if "used_at" in times else None, **times))
        for number in range(3):  # more than a batch
            session.add(AdminSession(identity=f"another link {number}", link_hash=f"old-{number}",
                                     link_expires_at=ended))

    pruned = await prune(context(db, HandClock(now)), batch=BATCH)

    assert pruned["admin_sessions"] == 5
    async with db.sessions() as session:
        assert set(await session.scalars(select(AdminSession.identity))) == {
            "link never used, expired lately", "session ended lately", "session going on"}
