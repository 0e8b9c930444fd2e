"""A small valid course to write into a temporary folder, and to break one way at a time in tests.

Line numbers matter here: tests name the exact line a problem must be reported at.
"""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "courses" / "sample"
PAID_EXAMPLE = REPO / "courses" / "examples" / "passwords"

COURSE_YAML = """\
id: tiny
title: Tiny course
description: A course for tests.
language: en
access: free
modules:
  - id: basics
    title: Basics
    lessons:
      - lessons/one.md
      - lessons/two.md
"""

LESSON_ONE = """\
---
id: one
title: Lesson one
minutes: 2
---

First part.

---

Second part.

## Quiz

### q-choice
Pick one.

- [x] Right
- [ ] Wrong

Explanation: Because.

### q-true
True or false: yes.

Answer: true

Explanation: It is.

### q-text
Type it.

Accepted answers:
- it

Explanation: Typed.
"""

LESSON_TWO = """\
---
id: two
title: Lesson two
---

The only part.

## Quiz

### q-two
Pick one.

- [ ] Wrong
- [x] Right

Explanation: Right is right.
"""

LESSON_THREE = """\
---
id: three
title: Lesson three
---

A third lesson.
"""


def write_tiny_course(folder: Path) -> Path:
    (folder / "lessons").mkdir(parents=True)
    (folder / "course.yaml").write_text(COURSE_YAML)
    (folder / "lessons" / "one.md").write_text(LESSON_ONE)
    (folder / "lessons" / "two.md").write_text(LESSON_TWO)
    return folder


def copy_course(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact piece of a file's text (it must be there, once)."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))
