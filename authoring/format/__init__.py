"""The course format authors write in a text editor: read a course folder, check it, and say what is wrong where.

A course is a folder with `course.yaml` and one Markdown file per lesson (docs/courses.md describes both).
`load_course` returns the parsed course or raises `CourseInvalid` carrying *every* problem found, each with its
file, line and a message that says how to fix it. Nothing here touches the database.

- `course`: what a course is, once read (plain frozen data);
- `reader`: reading the folder, `course.yaml` and each lesson file;
- `quiz`: a lesson's '## Quiz' section and its questions;
- `parts`: a lesson's text as bite-size chat messages;
- `fields` and `yaml_lines`: YAML with line numbers, and typed fields reported at their line ("did you mean …?");
- `problems`: what a check reports.
"""

from authoring.format.course import (
    CHOICE,
    FREE,
    PAID,
    SHORT_TEXT,
    TRUE_FALSE,
    Course,
    Lesson,
    Module,
    Price,
    Question,
    format_price,
)
from authoring.format.parts import PART_CHARS, split_part
from authoring.format.problems import CourseInvalid, Problem
from authoring.format.reader import COURSE_FILE, check_course, load_course

__all__ = [
    "CHOICE", "COURSE_FILE", "Course", "CourseInvalid", "FREE", "Lesson", "Module", "PAID", "PART_CHARS", "Price",
    "Problem", "Question", "SHORT_TEXT", "TRUE_FALSE", "check_course", "format_price", "load_course", "split_part",
]
