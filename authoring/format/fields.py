"""Typed access to the fields of a YAML mapping: each missing, unknown ("did you mean …?") or bad field is reported
at its line, and a field that cannot be used reads as None, so the check goes on and finds every problem at once."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from authoring.format.problems import Report
from authoring.format.yaml_lines import YamlMap

ID_CHARS = 64
ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # course, module, lesson and question ids
ID_HINT = "use lowercase letters, digits and hyphens"


class Fields:
    """Typed access to a YAML mapping's fields; each bad or missing field is reported at its line."""

    def __init__(self, data: YamlMap, file: str, report: Report) -> None:
        self.data, self.file, self._report = data, file, report
        for key, line in data.repeated:
            self._report(file, line, f"{key!r} is written twice in this block: keep one")

    def line(self, key: str) -> int:
        return self.data.key_lines.get(key, self.data.line)

    def problem(self, key: str, message: str) -> None:
        self._report(self.file, self.line(key), message)

    def missing(self, key: str, hint: str) -> None:
        self._report(self.file, self.data.line, f"'{key}:' is missing: {hint}")

    def reject_unknown(self, known: Iterable[str]) -> None:
        known = tuple(known)
        for key in self.data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"the fields here are {', '.join(known)}"
                self.problem(key, f"unknown field '{key}': {hint}")

    def text(self, key: str, *, limit: int) -> str | None:
        if key not in self.data:
            self.missing(key, f"add '{key}: …'")
            return None
        value = self.data[key]
        if not isinstance(value, str):
            self.problem(key, f"{key} must be text on one line (or a '>' block), not a list or mapping")
            return None
        value = value.strip()
        if not value:
            self.problem(key, f"{key} is empty: write it after '{key}:'")
            return None
        if len(value) > limit:
            self.problem(key, f"{key} is {len(value)} characters; keep it under {limit}")
            return None
        return value

    def identifier(self, key: str, *, what: str) -> str | None:
        value = self.text(key, limit=ID_CHARS)
        if value is not None and not ID.match(value):
            self.problem(key, f"{what} id {value!r} cannot be used: {ID_HINT}, like morning-light. Once "
                         "learners have started, keep it as it is: progress is matched by id")
            return None
        return value

    def number(self, key: str, *, low: int, high: int) -> int | None:
        value = self.text(key, limit=12)
        if value is None:
            return None
        if not re.fullmatch(r"[0-9]+", value) or not low <= int(value) <= high:
            self.problem(key, f"{key} is {value!r}: write a whole number from {low} to {high}")
            return None
        return int(value)
