"""The import rules of docs/architecture.md, kept true: which room may import which.

Every module of the project's packages is parsed (nothing is imported) and each import of a project package is
checked against RULES: top-level imports, imports inside functions, under `if TYPE_CHECKING:`, relative imports and
`importlib.import_module("…")` with a literal name alike. A module falls under the rule of its longest prefix in
RULES, so `channels.slack.installations` has a rule of its own inside `channels`.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Rule:
    may_import: tuple[str, ...]  # module prefixes: "bot.text" allows bot.text and bot.text.anything
    says: str  # the rule in words, for the failure message


VOCABULARY = ("bot.messages", "bot.channel", "bot.text")  # the core's words every room may use
_VOCABULARY_RULE = Rule(VOCABULARY, "the core's vocabulary (bot.messages, bot.channel, bot.text) imports nothing of "
                                    "the project but itself")
_CHANNELS = ("channels", "bot.messages", "bot.channel", "bot.text")

RULES: dict[str, Rule] = {
    "storage": Rule(("storage",), "storage imports nothing of the project"),
    **dict.fromkeys(VOCABULARY, _VOCABULARY_RULE),
    "knowledge": Rule(("knowledge", "storage", "bot.text"), "knowledge may import storage and bot.text only"),
    "authoring": Rule(
        ("authoring", "storage", "knowledge", "bot.text", "bot.messages"),
        "authoring may import storage, knowledge, bot.text and bot.messages — never dialogs, a channel or the "
        "bot's wiring",
    ),
    "dialogs": Rule(
        ("dialogs", "storage", "knowledge", "bot.messages", "bot.text"),
        "dialogs may import storage, knowledge, bot.messages and bot.text — never a channel, never the bot's wiring",
    ),
    "channels": Rule(
        _CHANNELS,
        "channels may import the contract (bot.messages, bot.channel, bot.text) — never dialogs, knowledge, "
        "scheduler or storage (Slack's installations excepted)",
    ),
    "channels.slack.installations": Rule(
        (*_CHANNELS, "storage"), "Slack's installations live in our database: the one channel module that may "
                                 "import storage",
    ),
    "scheduler": Rule(
        ("scheduler", "storage", "dialogs", "bot.channel", "bot.messages", "bot.text"),
        "scheduler may import storage, dialogs and the core's vocabulary — never a channel or the bot's wiring",
    ),
    "standins": Rule(("standins",), "the platforms' stand-ins import nothing of the project: they play the "
                                    "outside world"),
    "bot": Rule(
        ("bot", "channels", "dialogs", "knowledge", "scheduler", "storage", "authoring"),
        "the core and its wiring may import every room but bench, standins and simulation (only the command line "
        "runs benches and simulations)",
    ),
    "bot.cli": Rule(
        ("bot", "channels", "dialogs", "knowledge", "scheduler", "storage", "authoring", "bench", "simulation"),
        "the command line may import every room, the benches and the simulator included (never the stand-ins: the "
        "benches start them)",
    ),
    "bench": Rule(
        ("bench", "standins", "bot", "channels", "dialogs", "knowledge", "scheduler", "storage", "authoring"),
        "the benches may import anything but the tests and the simulator",
    ),
    "simulation": Rule(
        ("simulation", "dialogs", "scheduler", "storage"),
        "the simulator may import the bot's learning logic (dialogs, scheduler, storage) — never a channel or the "
        "wiring; only the command line imports it",
    ),
}
ROOMS = tuple(sorted({name.split(".")[0] for name in RULES}))
PROJECT = (*ROOMS, "tests")
NO_TESTS = "nothing in the packages imports tests: the tests import the packages, not the other way round"


@dataclass(frozen=True)
class Import:
    target: str  # dotted: `from bot.text import fold` → "bot.text.fold"; `from bot import text` → "bot.text"
    line: int


def _in(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def project_imports(source: str, module: str, *, package: bool = False) -> list[Import]:
    """The imports of project packages in `source`, the text of `module` (`package`: it is an `__init__.py`)."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            found += [Import(base if alias.name == "*" else f"{base}.{alias.name}", node.lineno)
                      for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("import_module", "__import__"))):
            found.append(Import(node.args[0].value, node.lineno))
    return [found_import for found_import in found if any(_in(found_import.target, room) for room in PROJECT)]


def rule_for(module: str) -> tuple[str, Rule]:
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        if name in RULES:
            return name, RULES[name]
    raise LookupError(f"{module} is in no room of RULES: add its package there")


def violations(module: str, source: str, *, package: bool = False, path: str | None = None) -> list[str]:
    """What in `source` breaks the import rules, one line per import, naming the module, the import and the rule."""
    where = path or module
    _, rule = rule_for(module)
    broken = []
    for found in project_imports(source, module, package=package):
        if _in(found.target, "tests"):
            broken.append(f"{where}:{found.line} imports {found.target}: {NO_TESTS}")
        elif not any(_in(found.target, allowed) for allowed in rule.may_import):
            broken.append(f"{where}:{found.line} imports {found.target}: {rule.says}")
    return broken


def project_modules() -> list[tuple[str, Path, bool]]:
    """(dotted name, file, is a package's __init__) for every module of the project's packages."""
    modules = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            package = parts[-1] == "__init__"
            modules.append((".".join(parts[:-1] if package else parts), path, package))
    return modules


# the project as it is -------------------------------------------------------------------------------------------------


def test_every_module_keeps_the_import_rules():
    modules = project_modules()
    assert len(modules) > 100, "the walk found too few modules to be looking at the project"
    broken = [
        line
        for module, path, package in modules
        for line in violations(module, path.read_text(), package=package, path=str(path.relative_to(ROOT)))
    ]
    assert not broken, "imports that break docs/architecture.md's rules:\n" + "\n".join(broken)


def test_the_rules_cover_exactly_the_packaged_rooms():
    """A new top-level package is packaged only once it has a rule here (and a row in docs/architecture.md)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packaged == set(ROOMS)


def test_every_room_has_a_row_in_the_docs():
    rooms_table = (ROOT / "docs" / "architecture.md").read_text().split("## The rooms", 1)[1].split("\n\n", 2)[1]
    assert not [room for room in ROOMS if f"| `{room}/`" not in rooms_table], "add a row to docs/architecture.md"


def test_every_rule_names_a_module_that_exists():
    names = {module for module, _, _ in project_modules()}
    assert not [name for name in RULES if name not in names], "a rule for a module that is gone"


def touches_sys_path(source: str) -> list[int]:
    """The lines of `source` that reach for sys.path (or site.addsitedir)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in (("sys", "path"), ("site", "addsitedir"))):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "site"):
            lines += [node.lineno for alias in node.names if alias.name in ("path", "addsitedir")]
    return lines


def test_no_module_touches_sys_path():
    """The packages import each other as installed; the tests import them the same way."""
    paths = [path for room in PROJECT for path in sorted((ROOT / room).rglob("*.py"))]
    touched = [f"{path.relative_to(ROOT)}:{line}" for path in paths for line in touches_sys_path(path.read_text())]
    assert not touched, "sys.path edited at:\n" + "\n".join(touched)


# the checker can fail ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("dialogs.fake", "from channels.telegram import TelegramChannel\n", RULES["dialogs"]),
        ("dialogs.fake", "def f():\n    from bot.config import Settings\n", RULES["dialogs"]),
        ("dialogs.fake", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.core import Lessonbot\n",
         RULES["dialogs"]),
        ("dialogs.fake", "import bot\n", RULES["dialogs"]),
        ("storage.fake", "from bot.messages import Text\n", RULES["storage"]),
        ("storage.fake", "import importlib\nimportlib.import_module('dialogs.ask')\n", RULES["storage"]),
        ("knowledge.fake", "from bot import config\n", RULES["knowledge"]),
        ("channels.telegram.fake", "from storage.db import Database\n", RULES["channels"]),
        ("channels.telegram.fake", "from dialogs import ask\n", RULES["channels"]),
        ("channels.slack.fake", "from ...scheduler import clock\n", RULES["channels"]),
        ("bot.text", "from bot.config import Settings\n", RULES["bot.text"]),
        ("scheduler.fake", "from bot.core import Lessonbot\n", RULES["scheduler"]),
        ("standins.fake", "from bot.messages import Text\n", RULES["standins"]),
        ("bot.fake", "from bench import report\n", RULES["bot"]),
        ("authoring.fake", "from dialogs.flow import Flow\n", RULES["authoring"]),
        ("simulation.fake", "from bot.core import Lessonbot\n", RULES["simulation"]),
        ("simulation.fake", "from channels.telegram import TelegramChannel\n", RULES["simulation"]),
        ("dialogs.fake", "from simulation import reviews\n", RULES["dialogs"]),
        ("scheduler.fake", "from simulation.nudges import TRUTH\n", RULES["scheduler"]),
        ("bench.fake", "from simulation import memory\n", RULES["bench"]),
    ],
)
def test_a_planted_bad_import_is_caught(module, source, rule):
    broken = violations(module, source)
    assert len(broken) == 1 and broken[0].startswith(f"{module}:") and broken[0].endswith(rule.says)


@pytest.mark.parametrize("module", ["storage.fake", "bench.fake", "bot.cli.fake", "channels.fake"])
def test_importing_tests_is_caught_everywhere(module):
    assert violations(module, "from tests.support import RecordingChannel\n") == [
        f"{module}:1 imports tests.support.RecordingChannel: {NO_TESTS}"
    ]


@pytest.mark.parametrize(
    ("module", "source", "package"),
    [
        ("dialogs.fake", "from bot.text import fold\nfrom bot import messages\nfrom storage.db import Database\n",
         False),
        ("channels.slack.fake", "from ..webhook import Ignored\nfrom . import blocks\n", False),
        ("channels.slack", "from .channel import SlackChannel\n", True),
        ("channels.slack.installations", "from storage.db import Database\n", False),
        ("bot.cli.fake", "from bench import pipeline\n", False),
        ("bot.cli.fake", "from simulation import reviews\n", False),
        ("simulation.fake", "from dialogs.review import schedule\nfrom scheduler.nudges import decide\n", False),
        ("bench.fake", "from standins import telegram\nimport os, sys\n", False),
    ],
)
def test_an_allowed_import_passes(module, source, package):
    assert violations(module, source, package=package) == []


def test_relative_imports_resolve_to_the_module_they_name():
    assert [found.target for found in project_imports("from ..webhook import Ignored\n", "channels.slack.routes")] == [
        "channels.webhook.Ignored"
    ]
    assert [found.target for found in project_imports("from . import blocks\n", "channels.slack", package=True)] == [
        "channels.slack.blocks"
    ]


def test_a_planted_sys_path_edit_is_caught():
    assert touches_sys_path("import sys\nsys.path.insert(0, 'tests')\n") == [2]
    assert touches_sys_path("from sys import path\npath.append('x')\n") == [1]
    assert touches_sys_path("import sys\nprint(sys.argv)\n") == []
