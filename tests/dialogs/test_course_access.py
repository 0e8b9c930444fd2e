"""The one entitlement check: free courses, the free preview of a paid course, and entitlements that lapse."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from authoring.format import load_course
from authoring.importer import import_course
from storage.courses import Course, Entitlement, may_access
from storage.db import Database
from storage.models import User, utcnow
from tests.authoring.course_files import PAID_EXAMPLE, SAMPLE


@pytest.fixture
async def db(database_url):
    database = Database(database_url)
    async with database.transaction() as session:
        for folder in (SAMPLE, PAID_EXAMPLE):
            await import_course(session, load_course(folder))
        session.add_all([User(display_name="Ann"), User(display_name="Bo")])
    yield database
    await database.dispose()


async def course_and_users(session, slug: str) -> tuple[Course, int, int]:
    course = await session.scalar(select(Course).where(Course.slug == slug))
    ann, bo = (await session.scalars(select(User.id).order_by(User.id))).all()
    return course, ann, bo


async def test_free_course_is_open_to_everyone(db):
    async with db.sessions() as session:
        course, ann, _bo = await course_and_users(session, "spot-phishing")
        assert all([await may_access(session, ann, course, position) for position in range(1, 6)])


async def test_paid_course_opens_its_preview_only(db):
    async with db.sessions() as session:
        course, ann, _bo = await course_and_users(session, "passwords-that-hold")
        assert course.free_preview_lessons == 1
        assert await may_access(session, ann, course, 1)
        assert not await may_access(session, ann, course, 2)
        assert not await may_access(session, ann, course, 3)


@pytest.mark.parametrize(
    ("expires_in", "revoked", "allowed"),
    [(None, False, True), (timedelta(days=30), False, True), (timedelta(seconds=-1), False, False),
     (None, True, False)],
    ids=["for good", "until next month", "expired", "revoked"],
)
async def test_entitlement_opens_the_rest_while_it_holds(db, expires_in, revoked, allowed):
    now = utcnow()
    async with db.transaction() as session:
        course, ann, _bo = await course_and_users(session, "passwords-that-hold")
        session.add(Entitlement(user_id=ann, course_id=course.id, source="purchase", reference="cs_test_1",
                                granted_at=now - timedelta(days=1),
                                expires_at=now + expires_in if expires_in is not None else None,
                                revoked_at=now if revoked else None))
    async with db.sessions() as session:
        course, ann, _bo = await course_and_users(session, "passwords-that-hold")
        assert await may_access(session, ann, course, 3, now=now) is allowed
        assert await may_access(session, ann, course, 1, now=now), "the preview stays open either way"


async def test_an_entitlement_is_for_one_learner_and_one_course(db):
    async with db.transaction() as session:
        paid, ann, bo = await course_and_users(session, "passwords-that-hold")
        free = await session.scalar(select(Course).where(Course.slug == "spot-phishing"))
        session.add(Entitlement(user_id=ann, course_id=free.id, source="grant"))
        session.add(Entitlement(user_id=bo, course_id=paid.id, source="grant"))
    async with db.sessions() as session:
        paid, ann, bo = await course_and_users(session, "passwords-that-hold")
        assert not await may_access(session, ann, paid, 2)
        assert await may_access(session, bo, paid, 2)
