"""The course format: the shipped courses read cleanly, and every kind of mistake is reported at its file and line."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from authoring.format import (
    CHOICE,
    PART_CHARS,
    SHORT_TEXT,
    TRUE_FALSE,
    CourseInvalid,
    check_course,
    load_course,
    split_part,
)
from dialogs.i18n import translator
from dialogs.questions import check
from storage.courses import Question
from tests.authoring.course_files import LESSON_THREE, PAID_EXAMPLE, SAMPLE, edit, write_tiny_course


def test_sample_course_is_a_complete_free_course():
    course = load_course(SAMPLE)
    assert course.id == "spot-phishing" and course.access == "free" and course.price is None
    assert course.language == "en"
    assert len(course.modules) == 2 and len(course.lessons) == 5
    assert all(lesson.questions for lesson in course.lessons), "every lesson has a quiz"
    assert {q.kind for q in course.questions} == {CHOICE, TRUE_FALSE, SHORT_TEXT}
    assert all(q.explanation for q in course.questions)
    assert all(lesson.minutes for lesson in course.lessons)
    assert all(len(part) <= PART_CHARS for lesson in course.lessons for part in lesson.parts)
    # lesson 3's second part is longer than a chat message: it arrives as two
    link = course.lessons[2]
    assert link.file == "lessons/03-read-a-link.md"
    assert link.parts[1].startswith("Reading a web address") and link.parts[2].startswith("Some countries")
    assert len(link.parts) == 5


def test_sample_course_questions_keep_their_answers():
    questions = {q.id: q for q in load_course(SAMPLE).questions}
    parcel = questions["parcel-fee"]
    assert parcel.choices == ("Authority", "Urgency", "Reward") and parcel.correct_choice == 1
    assert questions["padlock"].is_true is False and questions["report-anyway"].is_true is True
    assert questions["link-owner"].accepted_answers == ("secure-check.net",)
    # soft-wrapped lines of the question text are joined into one line
    assert "\n" not in questions["failed-payment"].prompt


def test_paid_example_has_price_and_preview():
    course = load_course(PAID_EXAMPLE)
    assert course.access == "paid" and course.language == "en-GB"
    assert course.price is not None and course.price.amount == Decimal("3.00") and course.price.currency == "GBP"
    assert course.price.minor_units == 300
    assert course.free_preview_lessons == 1 and len(course.lessons) == 3


def test_tiny_course_reads(tmp_path):
    course = load_course(write_tiny_course(tmp_path / "tiny"))
    one, two = course.lessons
    assert one.parts == ("First part.", "Second part.") and one.minutes == 2 and two.minutes is None
    assert [q.kind for q in one.questions] == [CHOICE, TRUE_FALSE, SHORT_TEXT]
    assert two.questions[0].correct_choice == 1


def test_language_tags_are_written_canonically(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "language: en", "language: zh-hant-tw")
    assert load_course(folder).language == "zh-Hant-TW"


def test_drafts_and_readmes_are_not_lessons(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    (folder / "README.md").write_text("# About this course\n")
    (folder / "lessons" / "_draft.md").write_text("not even front matter")
    (folder / "_old").mkdir()
    (folder / "_old" / "three.md").write_text(LESSON_THREE)
    assert len(load_course(folder).lessons) == 2


def test_a_separator_inside_a_code_block_is_text(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "two.md", "The only part.\n", "The only part:\n\n```yaml\n---\nid: x\n```\n")
    lesson = load_course(folder).lessons[1]
    assert lesson.parts == ("The only part:\n\n```yaml\n---\nid: x\n```",)


# Every kind of bad course, each reported at its file and line --------------------------------------------------------

ONE, TWO, YAML = "lessons/one.md", "lessons/two.md", "course.yaml"

BAD_COURSES = {
    # course.yaml
    "yaml syntax": ((YAML, "title: Tiny course", "title: Tiny: course"), [(YAML, 2, "a value that contains ': '")]),
    "yaml tab": ((YAML, "  - id: basics", "\t- id: basics"), [(YAML, 7, "not tabs")]),
    "yaml unclosed bracket": ((YAML, "title: Tiny course", "title: [Tiny course"), [(YAML, 2, "not valid YAML")]),
    "missing field": ((YAML, "description: A course for tests.\n", ""), [(YAML, 1, "'description:' is missing")]),
    "empty field": ((YAML, "description: A course for tests.", "description:"), [(YAML, 3, "description is empty")]),
    "unknown field": ((YAML, "access: free\n", "access: free\ntitel: x\n"), [(YAML, 6, "did you mean 'title'")]),
    "field twice": ((YAML, "access: free\n", "access: free\ntitle: Again\n"), [(YAML, 6, "'title' is written twice")]),
    "bad course id": ((YAML, "id: tiny", "id: Tiny Course"), [(YAML, 1, "course id 'Tiny Course' cannot be used")]),
    "bad language": ((YAML, "language: en", "language: English"), [(YAML, 4, "not a BCP 47 language tag")]),
    "underscore language": ((YAML, "language: en", "language: pt_BR"), [(YAML, 4, "pt-BR")]),
    "unknown access": ((YAML, "access: free", "access: gratis"), [(YAML, 5, "'access: free' or 'access: paid'")]),
    "paid without price": ((YAML, "access: free", "access: paid"), [(YAML, 5, "a paid course needs a price")]),
    "free with price": ((YAML, "access: free\n", "access: free\nprice:\n  amount: 5\n  currency: EUR\n"),
                        [(YAML, 6, "a free course has no price")]),
    "preview on a free course": ((YAML, "access: free\n", "access: free\nfree_preview_lessons: 1\n"),
                                 [(YAML, 6, "has no preview")]),
    "bad currency": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: euro\n"),
                     [(YAML, 8, "not an ISO 4217 code")]),
    "bad amount": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: five\n  currency: EUR\n"),
                   [(YAML, 7, "is not a price")]),
    "bad period": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: EUR\n  period: week\n"),
                   [(YAML, 9, "write 'period: month'")]),
    "monthly in stars": ((YAML, "access: free\n",
                          "access: paid\nprice:\n  amount: 50\n  currency: XTR\n  period: month\n"),
                         [(YAML, 9, "not XTR")]),
    "amount past what a database stores": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 99999999999999999999\n  currency: EUR\n"),
        [(YAML, 7, "99999999999999999999 EUR is more than payments can take: keep the price at most 999999.99 EUR")]),
    "amount past what payments take": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 30000000\n  currency: EUR\n"),
        [(YAML, 7, "30000000 EUR is more than payments can take")]),
    "amount past what payments take, no decimals": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 100000000\n  currency: JPY\n"),
        [(YAML, 7, "keep the price at most 99999999 JPY")]),
    "amount with a huge exponent": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 1e999999999\n  currency: EUR\n"),
        [(YAML, 7, "amount '1e999999999' is not a price: write a positive number in plain digits, like 9.90")]),
    "amount with an exponent": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: 5E1\n  currency: EUR\n"),
                                [(YAML, 7, "is not a price")]),
    "amount infinity": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: Infinity\n  currency: EUR\n"),
                        [(YAML, 7, "is not a price")]),
    "too many decimals": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: 500.5\n  currency: JPY\n"),
                          [(YAML, 7, "JPY has 0 decimal places")]),
    "preview covers everything": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: EUR\nfree_preview_lessons: 2\n"),
        [(YAML, 9, "covers all 2 lessons")]),
    "preview not a number": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: EUR\nfree_preview_lessons: -1\n"),
        [(YAML, 9, "a whole number from 0")]),
    "pass mark over 100": ((YAML, "access: free\n", "access: free\npass_mark: 150\n"),
                           [(YAML, 6, "pass_mark is '150': write a whole number from 0 to 100")]),
    "yaml recursive alias": ((YAML, "access: free\n", "access: free\na: &x [*x]\n"),
                             [(YAML, 6, "found unconstructable recursive node): a value that starts with '&' or '*' "
                               "is read as a YAML anchor or alias: put it in quotes")]),
    "nul in course.yaml": ((YAML, "title: Tiny course", "title: Tiny\x00 course"),
                           [(YAML, 2, "this line contains the control character U+0000")]),
    "character yaml refuses": ((YAML, "title: Tiny course", "title: Tiny\uffff course"),
                               [(YAML, 2, "this is not valid YAML: it contains the character U+FFFF, which YAML does "
                                 "not allow: delete it")]),
    "no modules": ((YAML, "modules:\n  - id: basics\n    title: Basics\n    lessons:\n      - lessons/one.md\n"
                    "      - lessons/two.md\n", "modules: []\n"),
                   [(YAML, 6, "modules must be a list")]),
    "module without title": ((YAML, "    title: Basics\n", ""), [(YAML, 7, "'title:' is missing")]),
    "missing lesson file": ((YAML, "lessons/two.md", "lessons/tow.md"),
                            [(YAML, 11,
                              "no lesson file lessons/tow.md in the course folder; did you mean lessons/two.md?"),
                             (TWO, 1, "not listed in any module")]),
    "lesson listed twice": ((YAML, "lessons/two.md", "lessons/one.md"),
                            [(YAML, 11, "already listed on line 10"), (TWO, 1, "not listed in any module")]),
    "lesson outside the folder": ((YAML, "lessons/two.md", "../two.md"),
                                  [(YAML, 11, "outside the course folder"), (TWO, 1, "not listed")]),
    "lesson not markdown": ((YAML, "lessons/two.md", "lessons/two.txt"),
                            [(YAML, 11, "not a Markdown file"), (TWO, 1, "not listed")]),
    "duplicate module ids": (
        (YAML, "      - lessons/two.md\n", "  - id: basics\n    title: More\n    lessons:\n      - lessons/two.md\n"),
        [(YAML, 11, "module id 'basics' is already used on line 7")]),
    # lesson files
    "no front matter": ((ONE, "---\nid: one\ntitle: Lesson one\nminutes: 2\n---\n", "# Lesson one\n"),
                        [(ONE, 1, "starts with front matter")]),
    "front matter not closed": ((ONE, "minutes: 2\n---\n", "minutes: 2\n"), [(ONE, 1, "never closed")]),
    "front matter yaml": ((ONE, "title: Lesson one", "title: Lesson: one"), [(ONE, 3, "not valid YAML")]),
    "front matter missing title": ((ONE, "title: Lesson one\n", ""), [(ONE, 2, "'title:' is missing")]),
    "front matter unknown field": ((ONE, "minutes: 2\n", "minutes: 2\nauthor: me\n"),
                                   [(ONE, 5, "unknown field 'author'")]),
    "character yaml refuses in front matter": ((ONE, "title: Lesson one", "title: Lesson\ufffe one"),
                                               [(ONE, 3, "it contains the character U+FFFE")]),
    "nul in lesson text": ((TWO, "The only part.", "The only\x00 part."),
                           [(TWO, 6, "the control character U+0000")]),
    "escape in lesson text": ((TWO, "The only part.", "The only \x1b[1mpart."),
                              [(TWO, 6, "the control character U+001B")]),
    "nul in an explanation": ((ONE, "Explanation: Because.", "Explanation: Be\x00cause."),
                              [(ONE, 21, "the control character U+0000")]),
    "code block never closed swallows the quiz": (
        (ONE, "Second part.\n", "Second part.\n\n```\nFrom: security@kestre1bank.com\n"),
        [(ONE, 13, "a ``` code block opened on line 13 is never closed: add a line ``` where the code ends")]),
    "code block never closed in the quiz": (
        (TWO, "Explanation: Right is right.\n", "Explanation: Right is right.\n\n~~~~\ncode\n~~~\n"),
        [(TWO, 18, "a ~~~~ code block opened on line 18 is never closed")]),
    "minutes not a number": ((ONE, "minutes: 2", "minutes: two"), [(ONE, 4, "minutes is 'two'")]),
    "bad lesson id": ((ONE, "id: one", "id: One!"), [(ONE, 2, "lesson id 'One!' cannot be used")]),
    "duplicate lesson ids": ((TWO, "id: two", "id: one"), [(TWO, 2, "lesson id 'one' is already used at "
                                                                  "lessons/one.md:2")]),
    "empty part": ((ONE, "---\n\nSecond part.", "---\n\n---\n\nSecond part."), [(ONE, 11, "an empty part")]),
    "no text": ((TWO, "The only part.\n", ""), [(TWO, 5, "this lesson has no text")]),
    "no correct choice": ((ONE, "- [x] Right", "- [ ] Right"), [(ONE, 18, "no choice is marked right")]),
    "two correct choices": ((ONE, "- [ ] Wrong", "- [x] Wrong"), [(ONE, 19, "2 choices are ticked (lines 18, 19)")]),
    "one choice only": ((ONE, "- [ ] Wrong\n", ""), [(ONE, 18, "at least two choices")]),
    "same choice twice": ((ONE, "- [ ] Wrong", "- [ ] right"), [(ONE, 19, "the same choice as on line 18")]),
    "choice without checkbox": ((ONE, "- [ ] Wrong", "- Wrong"), [(ONE, 19, "a list item without a checkbox")]),
    "no explanation": ((ONE, "Explanation: Because.\n", ""), [(ONE, 15, "has no explanation")]),
    "empty explanation": ((ONE, "Explanation: Because.", "Explanation:"), [(ONE, 21, "has no explanation")]),
    "no question text": ((ONE, "### q-choice\nPick one.\n", "### q-choice\n"), [(ONE, 15, "has no question text")]),
    "unknown kind": ((ONE, "Answer: true\n", ""), [(ONE, 23, "its kind is unknown")]),
    "true false not true or false": ((ONE, "Answer: true", "Answer: maybe"), [(ONE, 26, "'Answer: maybe'")]),
    "mixed kinds": ((ONE, "Answer: true\n", "Answer: true\n\nAccepted answers:\n- yes\n"),
                    [(ONE, 23, "mixes kinds (true_false and text)")]),
    "no accepted answers": ((ONE, "Accepted answers:\n- it\n", "Accepted answers:\n"), [(ONE, 33, "no accepted")]),
    "same accepted answer twice": ((ONE, "- it\n", "- it\n- IT.\n"), [(ONE, 35, "the same answer as on line 34")]),
    "same number in words and digits": ((ONE, "- it\n", "- 21\n- Twenty-one\n"),
                                        [(ONE, 35, "the same answer as on line 34")]),
    "accepted answer only punctuation": ((ONE, "- it\n", "- it\n- !!!\n"),
                                         [(ONE, 35, "the answer '!!!' has no letters or digits, so learners cannot "
                                           "type it: punctuation and symbols are ignored")]),
    "accepted answer only emoji": ((ONE, "- it\n", "- 🙂\n"), [(ONE, 34, "learners cannot type it")]),
    "question heading not an id": ((ONE, "### q-true", "### Is it true?"), [(ONE, 23, "heading is its id")]),
    "duplicate question ids": ((TWO, "### q-two", "### q-text"),
                               [(TWO, 10, "question id 'q-text' is already used at lessons/one.md:30")]),
    "text before the first question": ((ONE, "## Quiz\n\n", "## Quiz\n\nAnswer these.\n\n"),
                                       [(ONE, 15, "start with a '### question-id' heading")]),
    "quiz without questions": ((TWO, "### q-two\nPick one.\n\n- [ ] Wrong\n- [x] Right\n\n"
                                "Explanation: Right is right.\n", ""), [(TWO, 8, "the quiz has no questions")]),
    "heading after the quiz": ((TWO, "Explanation: Right is right.\n", "Explanation: Right is right.\n\n## More\n"),
                               [(TWO, 18, "the quiz is the last section")]),
    # quiz syntax where learners would read it as lesson text
    "quiz syntax above the quiz": ((TWO, "The only part.\n", "The only part.\n\nAnswer: true\n"),
                                   [(TWO, 8, "'Answer:' belongs to a quiz question, but this line is in the lesson "
                                     "text, so learners would read it as written: the quiz is the section under "
                                     "'## Quiz' (line 10)")]),
    "no quiz heading": ((TWO, "## Quiz\n\n", ""),
                        [(TWO, 11, "a '- [ ]' choice belongs to a quiz question, but this line is in the lesson text "
                          "(and 2 more lines below), so learners would read it as written: the quiz starts at a line "
                          "that is exactly '## Quiz': write it above the first question")]),
    "a '---' line between questions": ((ONE, "Explanation: Because.\n", "Explanation: Because.\n\n---\n"),
                                       [(ONE, 23, "a '---' line in the quiz: '---' separates parts of the lesson "
                                         "text only, and here learners would see it in the explanation: remove it")]),
    "a '***' line between questions": ((ONE, "Explanation: Because.\n", "Explanation: Because.\n\n***\n"),
                                       [(ONE, 23, "a '***' line in the quiz")]),
    "a '---' line before the first question": ((ONE, "## Quiz\n\n", "## Quiz\n\n---\n\n"),
                                               [(ONE, 15, "a '---' line in the quiz")]),
    # Markdown that chat apps cannot show
    "image": ((TWO, "The only part.", "The only part. ![a chart](chart.png)"),
              [(TWO, 6, "an image, ![a chart](chart.png): chat lessons cannot show images, so learners would see this "
                "text as written: describe the picture in words, or link to it with a full https:// address")]),
    "image at a web address": ((TWO, "The only part.", "![a chart](https://example.com/chart.png)"),
                               [(TWO, 6, "chat lessons cannot show images")]),
    "link to a file": ((TWO, "The only part.", "The only part, after [lesson one](one.md)."),
                       [(TWO, 6, "the link [lesson one](one.md) does not go to a web address, so learners would see "
                         "it as written")]),
    "link in an explanation": ((TWO, "Explanation: Right is right.", "Explanation: See [the notes](#notes)."),
                               [(TWO, 16, "the link [the notes](#notes) does not go to a web address")]),
    "table": ((TWO, "The only part.\n", "The only part.\n\n| sign | means |\n|---|---|\n| a | b |\n"),
              [(TWO, 8, "a table: chat apps cannot show tables, so learners would see its '|' and '-' characters: "
                "write it as a list")]),
    # YAML that drops or runs on with what the author wrote
    "yaml tag": ((YAML, "title: Tiny course", "title: !Important tiny course"),
                 [(YAML, 2, "!Important is read as a YAML tag, which is dropped from the value: put a value that "
                   "starts with '!' in quotes")]),
    "yaml tag in front matter": ((ONE, "title: Lesson one", "title: !!str Lesson one"),
                                 [(ONE, 3, "!!str is read as a YAML tag")]),
    "quote never closed": ((YAML, "title: Tiny course", 'title: "Tiny course'), [(YAML, 2, "a quote is not closed")]),
    # every problem of a price at once, with the currency probably meant
    "amount with a comma and a currency in lower case": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 9,90\n  currency: eur\n"),
        [(YAML, 7, "amount '9,90' is not a price: write a positive number in plain digits, with a point for decimals"),
         (YAML, 8, "currency 'eur' is written in capitals: EUR")]),
    "currency that is not one": ((YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: USS\n"),
                                 [(YAML, 8, "currency 'USS' is not an ISO 4217 code: did you mean USD?")]),
    "period and currency both wrong": (
        (YAML, "access: free\n", "access: paid\nprice:\n  amount: 5\n  currency: EUROS\n  period: week\n"),
        [(YAML, 8, "did you mean EUR?"), (YAML, 9, "write 'period: month'")]),
}


@pytest.mark.parametrize("case", list(BAD_COURSES), ids=list(BAD_COURSES))
def test_bad_course_is_reported_at_file_and_line(tmp_path, case):
    (file, old, new), expected = BAD_COURSES[case]
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / file, old, new)
    course, problems = check_course(folder)
    assert course is None
    found = [(Path(p.file).relative_to(folder).as_posix(), p.line) for p in problems]
    assert found == [(f, line) for f, line, _text in expected], [str(p) for p in problems]
    for problem, (_file, _line, text) in zip(problems, expected, strict=True):
        assert text in problem.message
        assert str(problem) == f"{folder / _file}:{_line}: {problem.message}"


@pytest.mark.parametrize("heading", ["## Quiz:", "# Quiz", "### Quiz", "## Quiz questions", "## Quizz", "**Quiz**"])
def test_a_mistyped_quiz_heading_is_named_not_sent_as_lesson_text(tmp_path, heading):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "## Quiz\n", f"{heading}\n")
    course, problems = check_course(folder)
    assert course is None
    assert [str(p) for p in problems] == [
        f"{folder / 'lessons' / 'one.md'}:18: a '- [x]' choice belongs to a quiz question, but this line is in the "
        "lesson text (and 6 more lines below), so learners would read it as written: the quiz starts at a line that "
        f"is exactly '## Quiz', and line 13 reads '{heading}': write '## Quiz' there"
    ]


def test_quiz_syntax_and_markdown_in_a_code_block_are_text(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    code = "```\n- [x] Right\nAnswer: true\n![a chart](chart.png)\n| a | b |\n|---|---|\n```"
    edit(folder / "lessons" / "two.md", "The only part.\n", f"The only part:\n\n{code}\n")
    assert load_course(folder).lessons[1].parts == (f"The only part:\n\n{code}",)


def test_links_to_web_addresses_and_code_spans_stay_valid(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    text = ("Read [the guide](https://example.com/guide), [the old one](http://example.com) and "
            "`![alt](x.png)` or `[next](two.md)`.")
    edit(folder / "lessons" / "two.md", "The only part.", text)
    assert load_course(folder).lessons[1].parts == (text,)


def test_a_listed_draft_is_named_a_draft(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    (folder / "lessons" / "two.md").rename(folder / "lessons" / "_two.md")
    edit(folder / "course.yaml", "lessons/two.md", "lessons/_two.md")
    problems = check_course(folder)[1]
    assert [str(p) for p in problems] == [
        f"{folder / 'course.yaml'}:11: lessons/_two.md is a draft (_two.md starts with '_'), so it is left out of the "
        "course: rename it without the '_' to list it"
    ]


def test_a_lesson_linked_from_outside_the_folder_is_refused(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    outside = tmp_path / "elsewhere.md"
    (folder / "lessons" / "two.md").rename(outside)
    (folder / "lessons" / "two.md").symlink_to(outside)
    problems = check_course(folder)[1]
    assert [str(p) for p in problems] == [
        f"{folder / 'course.yaml'}:11: lessons/two.md is a link to {outside}, outside the course folder: copy that "
        "file into the folder instead of linking to it"
    ]
    (folder / "lessons" / "two.md").unlink()
    (folder / "lessons" / "two.md").symlink_to(folder / "lessons" / "one.md")  # inside the folder: read as usual
    assert "lesson id 'one' is already used" in check_course(folder)[1][0].message


def test_a_front_matter_error_does_not_hide_the_quiz_errors(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "title: Lesson one", "title: Lesson: one")
    edit(folder / "lessons" / "one.md", "- [ ] Wrong", "- [x] Wrong")
    problems = check_course(folder)[1]
    assert [(Path(p.file).name, p.line) for p in problems] == [("one.md", 3), ("one.md", 19)]
    assert "not valid YAML" in problems[0].message and "2 choices are ticked" in problems[1].message


def test_lesson_file_not_listed(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    (folder / "lessons" / "three.md").write_text(LESSON_THREE)
    problems = check_course(folder)[1]
    assert [(Path(p.file).name, p.line) for p in problems] == [("three.md", 1)]
    assert "not listed in any module of course.yaml" in problems[0].message


def test_no_course_yaml(tmp_path):
    (tmp_path / "empty").mkdir()
    problems = check_course(tmp_path / "empty")[1]
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'empty' / 'course.yaml'}:1: there is no course.yaml here: every course folder needs one "
        "(see docs/courses.md for a full example)"
    ]


def test_file_that_is_not_utf8(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    (folder / "lessons" / "two.md").write_bytes(b"---\nid: two\ntitle: Caf\xe9\n---\n\nText.\n")
    problems = check_course(folder)[1]
    assert [(Path(p.file).name, p.line) for p in problems] == [("two.md", 3)]
    assert "not UTF-8" in problems[0].message


def test_the_largest_price_payments_take_is_valid(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "access: free\n", "access: paid\nprice:\n  amount: 999999.99\n  currency: EUR\n")
    price = load_course(folder).price
    assert price is not None and price.minor_units == 99_999_999


def test_a_lesson_longer_than_any_bite_size_lesson_is_one_problem_saying_to_split_it(tmp_path):
    """A whole book pasted into one lesson file would pass as thousands of parts and be embedded as tens of thousands
    of passages: it is refused, once, with its size and the limit; a lesson just under the limit passes."""
    from authoring.format.reader import LESSON_CHARS

    folder = write_tiny_course(tmp_path / "tiny")
    two = folder / "lessons" / "two.md"
    padding = LESSON_CHARS - len(two.read_text(encoding="utf-8"))
    edit(two, "The only part.", "The only part." + ("\n\nA paragraph of words." * (padding // 23)))
    assert len(two.read_text(encoding="utf-8")) <= LESSON_CHARS
    assert check_course(folder)[1] == []
    edit(two, "The only part.", "The only part.\n\nA paragraph of words.")  # 23 characters more: over it
    size = len(two.read_text(encoding="utf-8"))
    course, problems = check_course(folder)
    assert course is None
    assert [str(p) for p in problems] == [
        f"{two}:1: this lesson is {size:,} characters long, more than the {LESSON_CHARS:,} a lesson may hold (a "
        "bite-size lesson is a few thousand): split it into several lessons, each a file of its own listed in "
        "course.yaml"
    ]


def test_control_characters_are_reported_once_per_file(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "First part.", "First\x00 part.\x00")
    edit(folder / "lessons" / "one.md", "Second part.", "Second\x07 part.")
    edit(folder / "lessons" / "one.md", "Pick one.", "Pick\x0c one.")
    problems = check_course(folder)[1]
    assert [str(p) for p in problems] == [
        f"{folder / 'lessons' / 'one.md'}:7: this line contains the control character U+0000, which is not text and "
        "cannot be stored (2 more lines below have one too): delete it (editors often show it as a box, or not at "
        "all)"
    ]


def test_an_unclosed_code_block_is_one_problem_not_a_shorter_quiz(tmp_path):
    """Left open, a code block would take the rest of the file, '## Quiz' too: the lesson would lose its questions
    and a re-import would retire them."""
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "Second part.\n", "Second part:\n\n```text\nFrom: x@example.com\n")
    course, problems = check_course(folder)
    assert course is None
    assert [str(p) for p in problems] == [
        f"{folder / 'lessons' / 'one.md'}:13: a ``` code block opened on line 13 is never closed: add a line ``` "
        "where the code ends (until then the rest of the lesson, its quiz too, is code)"
    ]


def test_a_recursive_yaml_alias_is_not_called_a_tab(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "access: free\n", "access: free\na: &x [*x]\n")
    problems = check_course(folder)[1]
    assert [str(p) for p in problems] == [
        f"{folder / 'course.yaml'}:6: this is not valid YAML (found unconstructable recursive node): a value that "
        "starts with '&' or '*' is read as a YAML anchor or alias: put it in quotes"
    ]


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "language: en", "language: english")
    edit(folder / "lessons" / "one.md", "- [x] Right", "- [ ] Right")
    edit(folder / "lessons" / "two.md", "Explanation: Right is right.\n", "")
    with pytest.raises(CourseInvalid) as caught:
        load_course(folder)
    assert [(Path(p.file).name, p.line) for p in caught.value.problems] == [
        ("course.yaml", 4), ("one.md", 18), ("two.md", 10)
    ]


# Bite-size parts -------------------------------------------------------------------------------------------------


def test_long_part_is_split_at_paragraphs_into_even_messages():
    paragraphs = [f"Paragraph {n} " + "word " * 60 for n in range(6)]  # about 320 characters each
    parts = split_part("\n\n".join(paragraphs), limit=700)
    assert all(len(part) <= 700 for part in parts)
    assert len(parts) == 3 and [part.count("Paragraph") for part in parts] == [2, 2, 2]
    assert " ".join(" ".join(parts).split()) == " ".join(" ".join(paragraphs).split())


def test_long_paragraph_is_split_after_sentences():
    sentence = "This sentence is about sixty characters long, give or take. "
    parts = split_part(sentence * 20, limit=300)
    assert [part.count("This sentence") for part in parts] == [5, 5, 5, 5]
    assert all(len(part) <= 300 and part.endswith("take.") for part in parts)


def test_soft_wrapped_lines_join_but_lists_keep_their_lines():
    text = ("A paragraph written\nacross two lines.\n\n- first item\n  continues here\n- second item\n"
            "Line with a break  \nnext")
    assert split_part(text) == ["A paragraph written across two lines.\n\n- first item continues here\n- second item\n"
                                "Line with a break\nnext"]


def test_code_block_is_never_cut():
    code = "```\n" + "\n".join(f"line {n}" for n in range(200)) + "\n```"
    parts = split_part("Before.\n\n" + code + "\n\nAfter.", limit=300)
    assert code in parts


@pytest.mark.parametrize("accepted, typed", [
    ("21", "twenty one"), ("Twenty-One", "21"), ("it", "IT."), ("Secure-Check.NET.", "secure check net"),
    ("Contraseña", "contrasena"), ("password manager", "password   manager"),
    ("21", "22"), ("smishing", "SMS phishing"), ("one hundred", "100 percent"),
])
def test_the_course_check_and_grading_agree_on_which_answers_are_the_same(tmp_path, accepted, typed):
    """Two accepted answers are refused as one exactly when a learner typing the second is graded right by the
    first: the import and the quiz compare answers the same way."""
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "- it\n", f"- {accepted}\n- {typed}\n")
    _course, problems = check_course(folder)
    refused = [p for p in problems if "the same answer as on line" in p.message]
    assert len(problems) == len(refused), [str(p) for p in problems]

    question = Question(id=1, kind=SHORT_TEXT, prompt="Type it.", accepted_answers=[accepted], explanation="")
    verdict = check(translator("en"), question, typed, "quiz")

    assert verdict is not None
    assert bool(refused) == verdict.correct


# The command line ----------------------------------------------------------------------------------------------------


def test_validate_command_lists_problems_as_file_and_line(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["course", "validate", str(SAMPLE)]) == 0
    assert "course spot-phishing is valid: 2 modules, 5 lessons, 14 questions (en, free)" in capsys.readouterr().out

    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "lessons" / "one.md", "- [ ] Wrong", "- [x] Wrong")
    edit(folder / "course.yaml", "language: en", "language: en_GB")
    assert main(["course", "validate", str(folder)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{folder}/course.yaml:4: language 'en_GB' is not a BCP 47 language tag (BCP 47 joins with hyphens: en-GB): "
        "write e.g. en, es or pt-BR",
        f"{folder}/lessons/one.md:19: 2 choices are ticked (lines 18, 19): a multiple-choice question has exactly "
        "one right answer, so tick one",
        "2 problems found.",
    ]


def test_validate_names_a_folder_that_does_not_exist(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SAMPLE_COURSE_DIR", raising=False)
    assert main(["course", "validate", "nope"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "nope does not exist: name the course folder, the one that holds course.yaml."
    ]
    assert main(["course", "validate"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"courses/sample does not exist: no PATH was given, so the SAMPLE_COURSE_DIR setting's default was used (from "
        f"{tmp_path}); pass the course folder: lessonbot course validate PATH."
    ]


def test_the_examples_in_docs_are_valid(tmp_path):
    docs = (Path(__file__).resolve().parents[2] / "docs" / "courses.md").read_text()
    course_yaml = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    lesson = docs.split("```markdown\n", 1)[1].split("\n```\n", 1)[0] + "\n"

    folder = tmp_path / "from-docs"
    (folder / "lessons").mkdir(parents=True)
    (folder / "course.yaml").write_text(course_yaml)
    files = [line.strip()[2:] for line in course_yaml.splitlines() if line.strip().startswith("- lessons/")]
    for number, name in enumerate(files):
        (folder / name).write_text(f"---\nid: lesson-{number}\ntitle: Lesson {number}\n---\n\nText.\n")
    course = load_course(folder)
    assert course.price is not None and course.price.minor_units == 990 and course.free_preview_lessons == 2
    assert course.pass_mark == 70

    (folder / files[1]).write_text(lesson)
    lesson_read = load_course(folder).lessons[1]
    assert len(lesson_read.parts) == 3 and [q.kind for q in lesson_read.questions] == [CHOICE, TRUE_FALSE, SHORT_TEXT]


def test_a_broken_course_yaml_does_not_hide_the_problems_of_the_lessons(tmp_path):
    folder = write_tiny_course(tmp_path / "tiny")
    edit(folder / "course.yaml", "title: Tiny course", "title: Tiny course: the basics")
    edit(folder / "lessons" / "one.md", "- [ ] Wrong", "- [x] Wrong")
    edit(folder / "lessons" / "two.md", "title: Lesson two", "title: [Lesson two")

    course, problems = check_course(folder)

    assert course is None
    assert [(Path(p.file).relative_to(folder).as_posix(), p.line) for p in problems] == [
        ("course.yaml", 2), ("lessons/one.md", 19), ("lessons/two.md", 3),
    ]
    assert "mapping values are not allowed" in problems[0].message
    assert problems[1].message.startswith("2 choices are ticked")
    assert "never closed" in problems[2].message
