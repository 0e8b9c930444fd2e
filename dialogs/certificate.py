"""Certificates: at a course's end, a one-page PDF with the learner's name, the course, the date and a code.

The code is 80 random bits written as "LB-XXXX-XXXX-XXXX-XXXX" (base32, no look-alike ambiguity once upper-cased):
unguessable, stored with what it certifies. Anyone holding the certificate checks it on the public page printed on
it, as an address and a QR code: SITE/certificates/CODE (bot/certificate_page.py; SITE is PUBLIC_BASE_URL), which
shows the name, the course and the date; an operator can also run `lessonbot certificate verify CODE`. The PDF is
kept under DATA_DIR/certificates and sent as a document; /certificate sends it again.

Rendering happens outside the pipeline's transaction (it writes a file), so a replayed turn reuses the first result.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
from importlib.util import find_spec
from pathlib import Path

from sqlalchemy import exists, select

from bot.messages import Document
from bot.text import code_letters, storable
from dialogs import access
from dialogs.i18n import Translator
from dialogs.learner import name_of, tr
from dialogs.turn import Exchange, Turn
from storage.courses import Course, Enrollment, course_lessons
from storage.learners import Certificate, zone_for

PDF = "application/pdf"
QR_SIZE = 96.0  # points: about 34 mm, read by a phone from arm's length
QR_ROOM = QR_SIZE + 64  # the right-hand strip it sits in, kept clear of the centred text


def new_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode()  # 16 characters, 80 bits
    return "LB-" + "-".join(raw[i:i + 4] for i in range(0, 16, 4))


def canonical_code(typed: str) -> str | None:
    """A code as a person may type it ("lb k3fq7xjd…", lower case, spaces) in its stored form; None for what cannot
    be one (not 16 letters and digits after the LB): no certificate holds it, so it is not looked up at all (a NUL
    in it, which PostgreSQL stores nowhere, would fail the lookup)."""
    letters = code_letters(typed).removeprefix("LB")
    if len(letters) != 16:
        return None
    return "LB-" + "-".join(letters[i:i + 4] for i in range(0, 16, 4))


SHOWN_AS_TYPED = 40  # characters of a code that is none repeated back (a real one is 22)


def as_typed(typed: str) -> str:
    """What a page or an answer repeats of a code that is none (`canonical_code` None): as typed, without what no
    text holds (a NUL), and at most SHOWN_AS_TYPED characters of it, so a long made-up one is not echoed whole."""
    text = storable(typed.strip())
    return text if len(text) <= SHOWN_AS_TYPED else text[:SHOWN_AS_TYPED] + "…"


def verification_url(site_url: str | None, code: str) -> str | None:
    """The public page that says whether the certificate with `code` is genuine (bot/certificate_page.py)."""
    return f"{site_url.rstrip('/')}/certificates/{code}" if site_url else None


def render_pdf(
    path: Path, *, _: Translator, learner: str, course: str, issued: str, code: str, verify_url: str | None
) -> None:
    """Draw the certificate: A4 landscape, the name large, the course, the date, the code, and where to check it
    (the address, and a QR code of it in the corner)."""
    from reportlab.lib.colors import HexColor
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    regular, bold = _fonts(pdfmetrics, TTFont)
    width, height = landscape(A4)
    drawn = io.BytesIO()
    pdf = canvas.Canvas(drawn, pagesize=(width, height))
    pdf.setTitle(_("Certificate of completion"))
    pdf.setAuthor("Lessonbot")
    ink, accent = HexColor("#1f2937"), HexColor("#2563eb")
    pdf.setStrokeColor(accent)
    pdf.setLineWidth(6)
    pdf.rect(28, 28, width - 56, height - 56)
    pdf.setLineWidth(1.5)
    pdf.rect(42, 42, width - 84, height - 84)
    pdf.setFillColor(accent)
    pdf.setFont(bold, 34)
    pdf.drawCentredString(width / 2, height - 130, _("Certificate of completion"))
    pdf.setFillColor(ink)
    pdf.setFont(regular, 16)
    pdf.drawCentredString(width / 2, height - 190, _("This certifies that"))
    learner, size = _fit(pdfmetrics, learner, bold, 40, width - 160)
    pdf.setFont(bold, size)
    pdf.drawCentredString(width / 2, height - 250, learner)
    pdf.setFont(regular, 16)
    pdf.drawCentredString(width / 2, height - 300, _("has completed the course"))
    course, size = _fit(pdfmetrics, course, bold, 24, width - 160)
    pdf.setFont(bold, size)
    pdf.drawCentredString(width / 2, height - 345, course)
    pdf.setFont(regular, 14)
    pdf.drawCentredString(width / 2, height - 395, _("on {date}", date=issued))
    pdf.setFont(regular, 11)
    pdf.drawCentredString(width / 2, 92, _("Verification code: {code}", code=code))
    if verify_url:
        line = _("Check it at {address}", address=verify_url)
        line, size = _fit(pdfmetrics, line, regular, 11, width - 2 * QR_ROOM)
        pdf.setFont(regular, size)
        pdf.drawCentredString(width / 2, 74, line)
        _draw_qr(pdf, verify_url, x=width - QR_ROOM + 10, y=56, size=QR_SIZE)
    pdf.showPage()
    pdf.save()
    write_private(path, drawn.getvalue())


# DejaVu Sans is Vera's design with the letters Vera lacks (Ś, ą, Ș, ễ, Cyrillic, Greek …), so a name or a course
# title in any European alphabet prints as typed; the copy matplotlib (a dependency) ships. Vera, which reportlab
# ships, where that copy is not found.
_DEJAVU = ("mpl-data", "fonts", "ttf")


def _fonts(metrics, ttfont) -> tuple[str, str]:
    """The names of the certificate's regular and bold fonts, registered with reportlab (once)."""
    if "CertificateBold" not in metrics.getRegisteredFontNames():
        folder = _dejavu_folder()
        if folder is not None:
            regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        else:
            regular, bold = Path("Vera.ttf"), Path("VeraBd.ttf")  # (found on reportlab's own font path)
        metrics.registerFont(ttfont("Certificate", str(regular)))  # embedded as Unicode subsets
        metrics.registerFont(ttfont("CertificateBold", str(bold)))
    return "Certificate", "CertificateBold"


def _dejavu_folder() -> Path | None:
    """The folder of matplotlib's DejaVu fonts, found without importing matplotlib; None where it is not."""
    spec = find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent.joinpath(*_DEJAVU)
    return folder if (folder / "DejaVuSans.ttf").is_file() and (folder / "DejaVuSans-Bold.ttf").is_file() else None


def write_private(path: Path, content: bytes) -> None:
    """Write `content` readable by this server's user only (0600, in a 0700 folder): a certificate carries a
    learner's name and a code that proves it, for the learner and no other local user."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)  # mkdir's mode yields to the umask, and leaves a folder that exists as it was
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # a file that existed keeps its mode through O_CREAT
        file.write(content)


def _draw_qr(pdf, data: str, *, x: float, y: float, size: float) -> None:
    """A QR code of `data`, `size` points square, its lower left corner at (x, y)."""
    from reportlab.graphics.barcode.qr import QrCodeWidget
    from reportlab.graphics.renderPDF import draw
    from reportlab.graphics.shapes import Drawing

    widget = QrCodeWidget(data, barLevel="M")
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(size, size, transform=[size / (right - left), 0, 0, size / (top - bottom), 0, 0])
    drawing.add(widget)
    draw(drawing, pdf, x, y)


SMALLEST = 10.0  # points: text that does not fit at this size is cut, with "…"


def _fit(metrics, text: str, font: str, size: float, room: float) -> tuple[str, float]:
    """`text` and the largest font size up to `size` at which it fits in `room` points; a text too long even at
    SMALLEST (a name of 200 characters, as a platform may give one) is cut to fit, ending in "…"."""
    width = metrics.stringWidth(text, font, size)
    if width <= room:
        return text, size
    if metrics.stringWidth(text, font, SMALLEST) <= room:
        return text, size * room / width
    while text and metrics.stringWidth(text + "…", font, SMALLEST) > room:
        text = text[:-1]
    return text.rstrip() + "…", SMALLEST


RETAKE = "/retake"  # the command that asks the quiz questions missed again (dialogs/review.py)


async def send_certificate(x: Exchange, course: Course) -> None:
    """Issue the learner's certificate for `course` (once) and send it as a document.

    Issued only when the learner finished every live lesson of the course and reached its pass mark, if it has one
    (dialogs/access.py)."""
    _ = tr(x)
    row = await issued(x, course)
    if row is None and not await _earned(x, course):
        return
    if row is None:
        if x.data_dir is None:
            raise RuntimeError("certificates need a data folder (DATA_DIR)")
        learner = name_of(x) or _("Learner")
        issued_at = x.now
        local = issued_at.astimezone(zone_for(x.user.timezone))
        folder = Path(x.data_dir) / "certificates"
        title = course.title  # read now: the call runs after this transaction is rolled back
        site_url = x.site_url

        async def render() -> str:
            code = new_code()
            render_pdf(folder / f"{code}.pdf", _=_, learner=learner, course=title, issued=_.date(local),
                       code=code, verify_url=verification_url(site_url, code))
            return code

        code = await x.call_outside_transaction(f"certificate:{course.id}", render)
        row = Certificate(code=code, user_id=x.user.id, course_id=course.id, learner_name=learner[:200],
                          course_title=course.title[:200], issued_at=issued_at, issued_on=local.date(),
                          file_path=str(folder / f"{code}.pdf"))
        x.session.add(row)
        await x.session.flush()
    x.send(document(_, row, course.slug))


async def issued(x: Exchange, course: Course) -> Certificate | None:
    """The learner's certificate for `course`, if it was issued."""
    return await x.session.scalar(
        select(Certificate).where(Certificate.user_id == x.user.id, Certificate.course_id == course.id)
    )


async def _earned(x: Exchange, course: Course) -> bool:
    """Whether the learner has earned the certificate; if not, they are told what is missing."""
    _ = tr(x)
    missing = await access.lesson_to_do(x, course)
    if missing is not None:
        x.say(_("The certificate needs every lesson done: “{title}” is still to do.", title=missing.title))
        return False
    right, total = await access.quiz_score(x, course)
    if not access.passes(course, right, total):
        x.say(_("The certificate needs {mark}% of the quiz questions right at the first try; you got {right} of "
                "{total}. Retake each one you missed a day after you last answered it: it counts as you answer it "
                "then.", mark=course.pass_mark, right=right, total=total),
              choices=[(_("Retake the questions I missed"), f"{RETAKE} {course.slug}")])
        return False
    return True


def document(_: Translator, row: Certificate, slug: str) -> Document:
    return Document(
        filename=f"certificate-{slug}.pdf",
        path=row.file_path,
        media_type=PDF,
        caption=_("Your certificate for “{title}”. Verification code: {code}", title=row.course_title, code=row.code),
    )


async def resend(turn: Turn, _args: str) -> None:
    """/certificate: the certificates the learner has earned, sent again. A course of theirs finished without one
    (held back for its pass mark, which a re-import may have lowered or taken away since) is weighed again: issued
    now if it is earned, else they hear what it still needs."""
    _ = tr(turn)
    weighed = await finished_without_certificate(turn)
    for course in weighed:
        await send_certificate(turn, course)
    rows = list(await turn.session.scalars(
        select(Certificate).where(Certificate.user_id == turn.user.id).order_by(Certificate.issued_at)
    ))
    if not rows and not weighed:
        turn.say(_("No certificates yet: finish a course to earn one. /progress shows how far you are."))
        return
    for row in rows:
        if row.course_id in {course.id for course in weighed}:
            continue  # (sent just now)
        held = await turn.session.get(Course, row.course_id)
        turn.send(document(_, row, held.slug if held else "course"))


async def finished_without_certificate(turn: Turn) -> list[Course]:
    """The courses the learner is enrolled in, has done every live lesson of (one at least), and holds no
    certificate for."""
    courses = await turn.session.scalars(
        select(Course)
        .join(Enrollment, Enrollment.course_id == Course.id)
        .where(Enrollment.user_id == turn.user.id,
               ~exists().where(Certificate.user_id == turn.user.id, Certificate.course_id == Course.id))
        .order_by(Course.id)
    )
    return [course for course in courses
            if await course_lessons(turn.transaction, course.id) and await access.lesson_to_do(turn, course) is None]
