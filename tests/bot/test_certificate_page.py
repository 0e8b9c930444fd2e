"""The public certificate verification page, /certificates/CODE, served by the app: the name, the course and the
date of a real certificate, escaped; a clear 404 page for a code nobody holds; words in the browser's language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.app import create_app
from bot.config import Settings
from dialogs.certificate import new_code
from storage.courses import Course
from storage.db import Database
from storage.learners import Certificate
from storage.models import User

NAME = 'Ann <script>alert("x")</script> & Co'


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)  # only the database is needed: nothing is started
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test") as client:
        yield client
    await app.state.lessonbot.db.dispose()


async def issue(settings: Settings, *, name: str, zone: str | None = None) -> str:
    """A certificate row as the course's end writes it, issued at 23:30 UTC on 2026-11-30."""
    db = Database(settings.resolved_database_url)
    code = new_code()
    try:
        async with db.transaction() as session:
            user = User(display_name=name, timezone=zone)
            course = Course(slug="spot-phishing", title="Spot the phish <b>101</b>", description="", language="en",
                            access="free", content_hash="0" * 64)
            session.add_all([user, course])
            await session.flush()
            session.add(Certificate(code=code, user_id=user.id, course_id=course.id, learner_name=name,
                                    course_title=course.title, issued_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC),
                                    file_path="/srv/lessonbot/var/certificates/secret.pdf"))
    finally:
        await db.dispose()
    return code


async def test_a_certificate_shows_name_course_and_date_escaped_and_nothing_else(client, settings):
    code = await issue(settings, name=NAME, zone="Asia/Tokyo")
    page = await client.get(f"/certificates/{code}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "Valid certificate" in html
    assert "Ann &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html and "<script>" not in html
    assert "Spot the phish &lt;b&gt;101&lt;/b&gt;" in html
    assert "2026-12-01" in html  # the date in the learner's zone, as printed on the certificate
    assert code not in html  # the name, the course, the date: nothing else
    assert "/srv" not in html and "secret.pdf" not in html
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    # Typed as a person might: lower case, spaces for dashes.
    again = await client.get(f"/certificates/{code.lower().replace('-', ' ')}")
    assert again.status_code == 200 and NAME not in again.text and "Valid certificate" in again.text


async def test_a_right_to_left_name_reads_in_its_own_direction_on_the_page(client, settings):
    """A name in Arabic or Hebrew is set in its own direction, apart from the page's: "سارة (Sara) 2" does not come
    out with its brackets and number turned around."""
    code = await issue(settings, name="سارة (Sara) 2")
    html = (await client.get(f"/certificates/{code}")).text
    assert '<dd dir="auto">سارة (Sara) 2</dd>' in html
    assert '<dd dir="auto">Spot the phish &lt;b&gt;101&lt;/b&gt;</dd>' in html


async def test_an_unknown_code_is_a_clear_404_page(client, settings):
    await issue(settings, name="Ann")
    page = await client.get("/certificates/LB-AAAA-BBBB-CCCC-DDDD")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "Certificate not found" in page.text
    assert "No certificate has the code <code>LB-AAAA-BBBB-CCCC-DDDD</code>" in page.text
    assert "Ann" not in page.text
    odd = await client.get('/certificates/"><img src=x onerror=alert(1)>')
    assert odd.status_code == 404 and "<img" not in odd.text


async def test_what_cannot_be_a_code_is_the_404_page_never_a_500_and_is_echoed_short(client, settings):
    """A NUL (which PostgreSQL stores nowhere) in what was typed, or a made-up code thousands of characters long:
    the same 404 page with its headers, repeating at most 40 characters of it."""
    await issue(settings, name="Ann")
    app = client._transport.app  # an error of the app answered 500 as a server answers it (not raised here)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://lessonbot.test") as server:
        for path in ("/certificates/%00", "/certificates/LB-AAAA-BBBB-CCCC-DDD%00", "/certificates/" + "X" * 5000):
            page = await server.get(path)
            assert page.status_code == 404 and "Certificate not found" in page.text, (path[:40], page.status_code)
            assert page.headers["x-frame-options"] == "DENY" and "default-src 'none'" in page.headers[
                "content-security-policy"]
            assert "\x00" not in page.text and "X" * 41 not in page.text
        assert "<code>LB-AAAA-BBBB-CCCC-DDD</code>" in (await server.get("/certificates/LB-AAAA-BBBB-CCCC-DDD%00")).text
        assert f"<code>{'X' * 40}…</code>" in (await server.get("/certificates/" + "X" * 5000)).text


async def test_the_page_speaks_the_browsers_language(client, settings):
    code = await issue(settings, name="Ana")
    page = await client.get(f"/certificates/{code}", headers={"Accept-Language": "es-ES,es;q=0.9"})
    assert page.status_code == 200
    assert '<html lang="es">' in page.text and "Certificado válido" in page.text and "Otorgado a" in page.text
    missing = await client.get("/certificates/LB-AAAA-BBBB-CCCC-DDDD", headers={"Accept-Language": "es"})
    assert missing.status_code == 404 and "Certificado no encontrado" in missing.text


async def test_the_page_speaks_the_language_the_browser_weighs_highest(client, settings):
    code = await issue(settings, name="Ana")
    page = await client.get(f"/certificates/{code}", headers={"Accept-Language": "en;q=0.4, fr, es;q=0.7"})
    assert page.status_code == 200 and '<html lang="es">' in page.text and "Certificado válido" in page.text
