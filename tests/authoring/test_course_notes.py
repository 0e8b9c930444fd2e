"""Notes on a valid course: what will read badly on a chat platform, said at its file and line, never blocking."""

from __future__ import annotations

import asyncio

from authoring.format import load_course
from bot.cli import main
from bot.cli.course_notes import course_notes, part_lines, part_reply
from channels.slack.blocks import SECTION_TEXT_LIMIT
from channels.telegram.channel import MAX_TEXT_CHARS
from channels.whatsapp.render import MAX_BODY_CHARS
from tests.authoring.course_files import SAMPLE, copy_course, edit, write_tiny_course
from tests.dialogs.learning_support import Learning, learning_bot, onboard  # noqa: F401

# A code block of about 2,300 characters: too long for one WhatsApp message, short enough for Telegram and Slack.
LISTING = "\n".join(["```", *(f"line {n} of the listing, with words enough to make it long" for n in range(40)), "```"])


def validate(folder, capsys) -> tuple[int, list[str], str]:
    status = main(["course", "validate", str(folder)])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


def test_the_sample_course_validates_with_notes_that_do_not_block(capsys):
    status, out, err = validate(SAMPLE, capsys)
    assert status == 0 and err == ""
    [note, count, valid] = out
    assert valid.startswith(f"{SAMPLE}: course spot-phishing is valid")
    assert count == "1 note: they do not stop an import."
    assert note == (
        f"{SAMPLE}/lessons/02-check-the-sender.md:46: note: question lookalike-sender has 4 choices, 4 of them over 20 "
        "characters: WhatsApp's quick-reply buttons take at most 3 choices of at most 20 characters, so learners there "
        "see these as numbered lines under the question ('1. alerts@kestre1bank.com') and answer with the number or "
        "the words (as 3 other questions will: 03-read-a-link.md:56, 04-odd-requests.md:35, 05-if-you-clicked.md:33)")


def test_a_clean_course_prints_no_notes(tmp_path, capsys):
    folder = write_tiny_course(tmp_path / "tiny")
    status, out, _err = validate(folder, capsys)
    assert status == 0 and out == [f"{folder}: course tiny is valid: 1 module, 2 lessons, 4 questions (en, free)."]


def test_a_part_longer_than_a_whatsapp_message_is_noted_at_its_line(tmp_path, capsys):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "Second part.\n", f"Second part, then code:\n\n{LISTING}\n")
    status, out, _err = validate(folder, capsys)
    assert status == 0
    [note, count, _valid] = out
    # the code block, the lesson's third part, opens on line 13
    assert note.startswith(f"{folder / 'lessons' / 'one.md'}:13: note: part 3 of 3 is 2,3")
    assert "as WhatsApp receives it" in note and "learners there get it as 2 messages." in note
    assert "Telegram" not in note and "Slack" not in note  # both take it whole
    assert "Split it with a line '---'" in note and count == "1 note: they do not stop an import."


def test_a_part_too_long_for_every_platform_says_what_each_makes_of_it(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    listing = "```\n" + "\n".join(f"line {n} of the listing, with words enough" for n in range(150)) + "\n```"
    edit(folder / "lessons" / "two.md", "The only part.\n", f"The only part.\n\n{listing}\n")
    [note] = course_notes(load_course(folder))
    assert (note.file, note.line) == (str(folder / "lessons" / "two.md"), 8)
    assert note.message.startswith("part 2 of 2 is 6,")
    assert "as 5 messages; on Telegram, as 2 messages of at most 4,096 characters; on Slack, as 1 message in 3 " \
           "sections of at most 3,000 characters." in note.message


def test_whatsapp_has_the_smallest_message():
    """The notes ask Telegram and Slack only about a part WhatsApp splits (bot.cli.course_notes)."""
    assert MAX_BODY_CHARS <= MAX_TEXT_CHARS and MAX_BODY_CHARS <= SECTION_TEXT_LIMIT


def test_part_lines_follow_wrapped_lines_breaks_and_split_parts():
    lines = ["---", "id: x", "title: X", "---", "", "A paragraph", "wrapped over\\", "lines.", "", "---", "",
             "- one", "- two", "", "## Quiz"]
    assert part_lines(lines, ("A paragraph wrapped over\nlines.", "- one\n- two")) == [6, 12]
    # a part split after a sentence starts on the line holding that sentence
    assert part_lines(["---", "---", "One. Two.", "Three."], ("One.", "Two. Three.")) == [3, 3]


def test_choices_whatsapp_cannot_show_as_buttons(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    one, two = folder / "lessons" / "one.md", folder / "lessons" / "two.md"
    assert course_notes(load_course(folder)) == []  # two or three short choices are buttons
    edit(one, "- [ ] Wrong\n", "- [ ] Wrong\n- [ ] Third\n- [ ] Fourth\n")
    edit(two, "- [ ] Wrong\n", "- [ ] Wrong, and more words than a button holds\n")
    [note] = course_notes(load_course(folder))  # one for the course, at the first such question
    assert (note.file, note.line) == (str(one), 15)  # its heading
    assert note.message.startswith("question q-choice has 4 choices: WhatsApp's quick-reply buttons take at most 3 "
                                   "choices of at most 20 characters, so learners there see these as numbered lines "
                                   "under the question ('1. Right')")
    assert note.message.endswith(" (as 1 other question will: two.md:10)")
    edit(one, "- [ ] Wrong\n- [ ] Third\n- [ ] Fourth\n", "- [ ] Wrong\n")
    [note] = course_notes(load_course(folder))
    assert (note.file, note.line) == (str(two), 10)
    assert note.message.startswith("question q-two has 1 choice over 20 characters: ")


def test_minutes_far_from_the_reading_time(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    one = folder / "lessons" / "one.md"
    assert course_notes(load_course(folder)) == []  # a few words, and minutes: 2, within 2 minutes of them
    edit(one, "minutes: 2\n", "minutes: 9\n")
    [note] = course_notes(load_course(folder))
    assert (note.file, note.line) == (str(one), 4)
    assert note.message.startswith("minutes: 9, but the lesson's 18 words (text and quiz) and 3 answers take about "
                                   "1 minute (reading 200 words a minute, answering in 20 seconds), and learners see "
                                   "'about 9 min' in its heading")
    edit(one, "minutes: 9\n", "minutes: 1\n")
    edit(one, "First part.\n", "Five words in a sentence. " * 240 + "\n")  # six minutes of reading, and one of answers
    [note] = course_notes(load_course(folder))
    assert note.message.startswith("minutes: 1, but the lesson's 1,216 words") and "set it nearer 7" in note.message
    edit(folder / "course.yaml", "language: en\n", "language: ja\n")  # words without spaces are not counted
    assert course_notes(load_course(folder)) == []


async def test_a_part_is_measured_as_a_learner_is_sent_it(learning_bot):
    bot, channel = learning_bot
    lesson = load_course(SAMPLE).lessons[0]
    t = Learning(bot, channel)
    await onboard(t)
    await t.press("Start my first lesson")
    for index in range(len(lesson.parts)):
        sent, measured = t.last(), part_reply(lesson, index, 1, 5)
        assert sent.text == measured.text
        assert [choice.label for choice in sent.choices] == [choice.label for choice in measured.choices]
        await t.press(sent.choices[0].label)


async def test_import_prints_the_notes_before_importing(database_url, tmp_path, monkeypatch, capsys):
    folder = copy_course(SAMPLE, tmp_path / "sample")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await asyncio.to_thread(main, ["course", "import", "--dry-run", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    count = next(index for index, line in enumerate(out) if line.endswith(": they do not stop an import."))
    assert count > 0 and all(": note: " in line for line in out[:count])
    assert out[count + 1:] == ["Dry run, nothing was written. Importing would add new course spot-phishing: "
                               "2 modules, 5 lessons, 14 questions."]
