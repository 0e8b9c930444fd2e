"""YAML with line numbers: every scalar read as text, and every mapping and list knowing the lines it came from.

YAML is read with every scalar as text (no implicit booleans, dates or floats), so `language: no` stays Norwegian
and `amount: 9.90` keeps its cents; the fields that hold numbers are converted and checked by the readers. A syntax
error is reported at the line where the author can fix it, with a hint in their words.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from authoring.format.problems import Report

_TAB = re.compile(r"'\\t'|\btabs?\b", re.IGNORECASE)


class YamlMap(dict):
    """A YAML mapping that remembers where it and each key are (1-based lines), and keys written twice."""

    line: int
    key_lines: dict[str, int]
    repeated: list[tuple[str, int]]


class YamlList(list):
    line: int
    lines: list[int]


class _LineLoader(yaml.BaseLoader):
    """Every scalar is a string (BaseLoader); mappings and lists carry their line numbers."""

    line_offset = 0
    tags: list[tuple[int, str]]  # (line, tag as written) of each tag met

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """A tag ('!Important', '!!str') is noted in `tags` and left out: YAML would drop it from the value without a
        word, and no field needs one."""
        event = self.peek_event()
        if getattr(event, "tag", None) is not None:
            mark = event.start_mark
            written = re.search(r"!\S*", mark.buffer[mark.pointer:].split("\n", 1)[0]) if mark.buffer else None
            self.tags.append((mark.line + 1 + self.line_offset, written.group() if written else str(event.tag)))
            event.tag = None  # read the value as if the tag were not there
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> YamlMap:
        mapping = YamlMap()
        mapping.line = node.start_mark.line + 1 + self.line_offset
        mapping.key_lines, mapping.repeated = {}, []
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            key = key if isinstance(key, str) else str(key)
            line = key_node.start_mark.line + 1 + self.line_offset
            if key in mapping:
                mapping.repeated.append((key, line))
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = line
        return mapping

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> YamlList:
        items = YamlList(self.construct_object(child, deep=True) for child in node.value)
        items.line = node.start_mark.line + 1 + self.line_offset
        items.lines = [child.start_mark.line + 1 + self.line_offset for child in node.value]
        return items


def parse_yaml(text: str, file: str, first_line: int, report: Report) -> tuple[bool, Any]:
    """Parse YAML whose first line is line `first_line` of `file`: (True, data), or (False, None) after reporting
    the syntax error at its line with a hint. A tag is reported at its line and left out of the data."""
    loader = None
    try:
        loader = _LineLoader(text)  # reading the text already checks its characters: it may raise too
        loader.line_offset, loader.tags = first_line - 1, []
        data = loader.get_single_data()
        for line, tag in loader.tags:
            report(file, line, f"{tag} is read as a YAML tag, which is dropped from the value: put a value that "
                   f"starts with '!' in quotes, like \"{tag} …\"")
        return True, data
    except yaml.reader.ReaderError as exc:
        line = first_line + len((text[: exc.position] + "x").splitlines()) - 1
        report(file, line, f"this is not valid YAML: it contains the character U+{exc.character:04X}, which YAML "
               "does not allow: delete it (editors often show it as a box, or not at all)")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        # An unclosed bracket or a line without ':' is found a line or more later; the context says where it began.
        if exc.context_mark is not None and (
            "<stream end>" in str(exc.problem)
            or any(w in str(exc.context) for w in ("simple key", "flow", "quoted scalar"))
        ):
            mark = exc.context_mark
        line = (mark.line + first_line) if mark is not None else first_line
        report(file, line, f"this is not valid YAML ({exc.problem or exc.context}){_yaml_hint(exc)}")
    except yaml.YAMLError as exc:
        report(file, first_line, f"this is not valid YAML: {exc}")
    finally:
        if loader is not None:
            loader.dispose()
    return False, None


def _yaml_hint(exc: yaml.MarkedYAMLError) -> str:
    problem = f"{exc.problem} {exc.context}"
    if "quoted scalar" in problem:
        return ": a quote is not closed: end the value with the same quote it starts with"
    if _TAB.search(problem):  # a tab as PyYAML quotes it, or the word: not the "tab" of "unconstructable"
        return ": indent with spaces, not tabs"
    if "alias" in problem or "recursive node" in problem:
        return ": a value that starts with '&' or '*' is read as a YAML anchor or alias: put it in quotes"
    if "flow" in problem:
        return ": a '[' or '{' opened here is never closed (a value that starts with one must be in quotes)"
    if "mapping values are not allowed" in problem:
        return ": a value that contains ': ' must be in quotes, e.g. title: \"Sleep: the basics\""
    if "could not find expected ':'" in problem or "simple key" in problem:
        return ": each line is 'key: value', and a value that spans lines must be indented"
    if "found character" in problem or "cannot start any token" in problem:
        return ": put a value that starts with a special character (` @ % * & !) in quotes"
    if "expected <block end>" in problem or "did not find expected" in problem:
        return ": check the indentation: items of one list or mapping line up under each other"
    return ": check the line for a missing space after ':' or a stray character"
