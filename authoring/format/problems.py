"""What a course check reports: each problem at its file and line, with a message that says how to fix it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.text import counted

# How the readers report a problem: (file relative to the course folder, 1-based line, message).
Report = Callable[[str, int, str], None]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a course: `file` as shown to the author (the folder they named joined with the file)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class CourseInvalid(Exception):
    """A course folder with problems; `problems` lists every one, in file and line order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(f"{counted(len(problems), 'problem')} in the course")
        self.problems = problems
