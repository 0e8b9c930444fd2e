"""The whole sample course to its end: the certificate arrives as a PDF document, and the CLI verifies its code."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from pypdf import PdfReader
from sqlalchemy import select

from bot.messages import Document
from dialogs.certificate import canonical_code, new_code
from storage.learners import Certificate
from tests.dialogs.learning_support import Learning, answer_until, learning_bot, onboard  # noqa: F401
from tests.support import LESSONBOT, server_env


def test_codes_are_random_and_typed_forms_are_read():
    codes = {new_code() for _ in range(200)}
    assert len(codes) == 200 and all(len(code) == 22 and code.startswith("LB-") for code in codes)
    code = next(iter(codes))
    assert canonical_code(code.lower().replace("-", " ")) == code


async def test_course_end_sends_a_certificate_that_verifies(learning_bot, settings, tmp_path):
    bot, channel = learning_bot
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    await answer_until(t, bot, "🏆")
    await bot.settle()
    documents = [r for r in channel.sent["ann"] if isinstance(r, Document)]
    assert len(documents) == 1
    document = documents[0]
    assert document.media_type == "application/pdf" and document.filename == "certificate-spot-phishing.pdf"
    path = Path(document.path)
    assert path.parent == settings.data_dir / "certificates" and path.read_bytes().startswith(b"%PDF")
    # Readable by the server's user only: the file 0600, its folder 0700.
    assert (stat.S_IMODE(path.stat().st_mode), stat.S_IMODE(path.parent.stat().st_mode)) == (0o600, 0o700)
    code = document.caption.rsplit(" ", 1)[1]
    printed = " ".join(PdfReader(path).pages[0].extract_text().split())
    # An outsider checks it on the public page printed on it (and in its QR code), not with a command.
    assert f"Check it at {settings.site_url}/certificates/{code}" in printed
    assert "lessonbot certificate verify" not in printed
    async with bot.db.sessions() as session:
        row = await session.scalar(select(Certificate))
        assert (row.code, row.learner_name, row.course_title) == (code, "Ann", "Spot the phish, five minutes a day")

    [progress] = await t.say("/progress")
    assert "📘 Lessons: 5 of 5 done" in progress and "🏆 1 certificate" in progress
    assert "Next lesson" not in t.labels()  # there is none
    [home] = await t.say("/home")
    assert "🏆 Finished. Well done!" in home and t.labels() == ["My progress"]  # nor on Home
    [finished] = await t.say("/next")
    assert finished.startswith("You have finished Spot the phish")
    before = len(channel.sent["ann"])
    await t.say("/certificate")
    assert channel.sent["ann"][before:] == [document]  # the same file again, not a new certificate

    env = server_env(settings.resolved_database_url, tmp_path / "cli")
    found = subprocess.run([*LESSONBOT, "certificate", "verify", code.lower()], env=env, capture_output=True,
                           text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("valid: Ann completed “Spot the phish, five minutes a day” on ")
    missing = subprocess.run([*LESSONBOT, "certificate", "verify", "LB-AAAA-BBBB-CCCC-DDDD"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and missing.stdout.startswith("not found")


def test_a_name_too_long_for_the_page_is_cut_to_fit_it(tmp_path):
    """A platform's name may be 200 characters (a Slack member's, kept as given): at the smallest size it still
    ran off both sides of the page; it is cut, ending in "…"."""
    from dialogs.certificate import render_pdf
    from dialogs.i18n import translator

    name = "Wolfeschlegelsteinhausenbergerdorff " * 5 + "Junior"
    render_pdf(tmp_path / "c.pdf", _=translator("en"), learner=name[:200], course="Spot the phish", issued="1 May",
               code="LB-AAAA-BBBB-CCCC-DDDD", verify_url=None)
    printed = PdfReader(tmp_path / "c.pdf").pages[0].extract_text()
    shown = next(line for line in printed.splitlines() if line.startswith("Wolfeschlegel"))
    assert shown.endswith("…") and 40 < len(shown) < 150, shown


def test_a_name_and_a_course_in_any_european_alphabet_print_as_typed(tmp_path):
    """A Polish, Romanian or Vietnamese name, a course titled in Russian or Greek: every letter is printed (Vera, the
    font before, had none of Ś, ą, Ș, ễ, nor Cyrillic or Greek, and left them blank)."""
    from dialogs.certificate import render_pdf
    from dialogs.i18n import translator

    name, course = "Łukasz Świątek-Nguyễn Ștefan", "Фишинг за пять минут · Ψάρεμα"
    render_pdf(tmp_path / "c.pdf", _=translator("es"), learner=name, course=course, issued="1 de mayo de 2027",
               code="LB-AAAA-BBBB-CCCC-DDDD", verify_url="https://learn.example/certificates/LB-AAAA-BBBB-CCCC-DDDD")
    printed = PdfReader(tmp_path / "c.pdf").pages[0].extract_text().splitlines()
    assert name in printed and course in printed, printed
    assert "\x00" not in "".join(printed)


async def test_the_command_line_prints_a_kept_name_without_its_control_characters(learning_bot, settings, tmp_path):
    """A certificate issued before names were cleaned may hold a terminal's escape sequence: `certificate verify`
    prints the name, not the sequence (which would erase the line and hide the rest)."""
    from storage.courses import Course
    from storage.models import User

    bot, _channel = learning_bot
    async with bot.db.transaction() as session:
        user = User(display_name="x")
        session.add(user)
        await session.flush()
        session.add(Certificate(code="LB-AAAA-BBBB-CCCC-DDDD", user_id=user.id,
                                course_id=await session.scalar(select(Course.id)),
                                learner_name="\x1b[2K\x1b[1GMallory\x1b[8m", course_title="Spot the phish",
                                file_path="c.pdf"))
    env = server_env(settings.resolved_database_url, tmp_path / "cli")
    found = subprocess.run([*LESSONBOT, "certificate", "verify", "LB-AAAA-BBBB-CCCC-DDDD"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("valid: [2K[1GMallory[8m completed “Spot the phish” on ")
    assert "\x1b" not in found.stdout
