"""The import rules of docs/architecture.md, kept true: which room may import which.

Every module of the project's packages is parsed (nothing is imported) and each import of a project package is
checked against RULES: top-level imports, imports inside functions, under `if TYPE_CHECKING:`, relative imports and
`importlib.import_module("…")` with a literal name alike. A module falls under the rule of its longest prefix in
RULES, so `channels.slack.installations` has a rule of its own inside `channels`, and `bot.pipeline` one inside `bot`.

The rooms that do the learning (dialogs, scheduler, knowledge, storage, authoring) are held to a second list,
SDK_RULES: which of the outside world's SDKs (OUTSIDE: the platforms', the web's, the models') each may import.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from collections.abc import Callable
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
# The path a message takes through the core, which the wiring builds: it never imports the wiring back.
MESSAGE_PATH = ("bot.pipeline", "bot.dispatcher", "bot.routing", "bot.activity", "bot.ratelimit")
_MESSAGE_PATH_RULE = Rule(
    (*MESSAGE_PATH, "bot.config", "bot.observability", "bot.outage", *VOCABULARY, "dialogs", "storage"),
    "the message's path (bot.pipeline, bot.dispatcher, bot.routing, bot.activity, bot.ratelimit) may import each "
    "other, bot.config, bot.observability, bot.outage, the core's vocabulary, dialogs and storage — never the wiring "
    "(bot.core, bot.app, bot.dashboard, bot.rasa_actions, bot.cli), bot.payments, a channel or the scheduler",
)

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
        ("scheduler", "storage", "dialogs", "bot.channel", "bot.messages", "bot.text", "bot.outage"),
        "scheduler may import storage, dialogs, the core's vocabulary and bot.outage — never a channel or the bot's "
        "wiring",
    ),
    "standins": Rule(("standins",), "the platforms' stand-ins import nothing of the project: they play the "
                                    "outside world"),
    "bot": Rule(
        ("bot", "channels", "dialogs", "knowledge", "scheduler", "storage", "authoring"),
        "the core and its wiring may import every room but bench, standins and simulation (only the command line "
        "runs benches and simulations)",
    ),
    **dict.fromkeys(MESSAGE_PATH, _MESSAGE_PATH_RULE),
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

# The outside world's SDKs, as installed (pyproject.toml; FastAPI is not): the chat and payment platforms', the web's
# (served and asked over HTTP), and the language models' with their vector store. The channels and the wiring speak
# to the outside; the rooms below say what to send in bot.messages' words, and knowledge alone talks to the models.
PLATFORM_SDKS = ("telegram", "slack_sdk", "slack_bolt", "twilio", "stripe", "rasa_sdk")
WEB = ("starlette", "uvicorn", "httptools", "tornado", "aiohttp", "httpx")
MODEL_SDKS = ("openai", "langchain_core", "langchain_openai", "langchain_text_splitters", "chromadb")
OUTSIDE = (*PLATFORM_SDKS, *WEB, *MODEL_SDKS)
_NO_PLATFORM = ("never a platform's SDK or the web's (telegram, slack_sdk, slack_bolt, twilio, stripe, rasa_sdk, "
                "starlette, uvicorn, httptools, tornado, aiohttp, httpx): the channels and the wiring speak to the "
                "outside")
_NO_SDK = f"{_NO_PLATFORM}, and knowledge alone to the models (openai, langchain, chromadb)"

SDK_RULES: dict[str, Rule] = {  # may_import: the few of OUTSIDE the room may import
    "dialogs": Rule((), f"dialogs import no outside SDK — {_NO_SDK}"),
    "scheduler": Rule((), f"scheduler imports no outside SDK — {_NO_SDK}"),
    "storage": Rule((), f"storage imports no outside SDK — {_NO_SDK}"),
    "authoring": Rule((), f"authoring imports no outside SDK — {_NO_SDK}"),
    "knowledge": Rule(MODEL_SDKS,
                      f"knowledge may import the models' SDKs (openai, langchain, chromadb) — {_NO_PLATFORM}"),
}


@dataclass(frozen=True)
class Import:
    target: str  # dotted: `from bot.text import fold` → "bot.text.fold"; `from bot import text` → "bot.text"
    line: int


def _in(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def imports_in(source: str, module: str, *, package: bool = False) -> list[Import]:
    """Every import in `source`, the text of `module` (`package`: it is an `__init__.py`)."""
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
    return found


def project_imports(source: str, module: str, *, package: bool = False) -> list[Import]:
    """The imports of project packages in `source`, the text of `module` (`package`: it is an `__init__.py`)."""
    return [found for found in imports_in(source, module, package=package)
            if any(_in(found.target, room) for room in PROJECT)]


def _longest_prefix(rules: dict[str, Rule], module: str) -> str | None:
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        if name in rules:
            return name
    return None


def rule_for(module: str) -> tuple[str, Rule]:
    name = _longest_prefix(RULES, module)
    if name is None:
        raise LookupError(f"{module} is in no room of RULES: add its package there")
    return name, RULES[name]


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


def sdk_violations(module: str, source: str, *, package: bool = False, path: str | None = None) -> list[str]:
    """What in `source` imports an outside SDK (OUTSIDE) that its room's SDK_RULES does not allow, one line per
    import; a module of a room without a rule there may import any."""
    name = _longest_prefix(SDK_RULES, module)
    if name is None:
        return []
    rule = SDK_RULES[name]
    return [f"{path or module}:{found.line} imports {found.target}: {rule.says}"
            for found in imports_in(source, module, package=package)
            if any(_in(found.target, sdk) for sdk in OUTSIDE)
            and not any(_in(found.target, allowed) for allowed in rule.may_import)]


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


def _broken(check: Callable[..., list[str]], modules: list[tuple[str, Path, bool]]) -> list[str]:
    """`check` (violations, sdk_violations) of each module's file as it is."""
    return [line for module, path, package in modules
            for line in check(module, path.read_text(), package=package, path=str(path.relative_to(ROOT)))]


def test_every_module_keeps_the_import_rules():
    modules = project_modules()
    assert len(modules) > 100, "the walk found too few modules to be looking at the project"
    broken = _broken(violations, modules)
    assert not broken, "imports that break docs/architecture.md's rules:\n" + "\n".join(broken)


def test_the_learning_rooms_import_only_the_outside_sdks_they_may():
    modules = [found for found in project_modules() if _longest_prefix(SDK_RULES, found[0]) is not None]
    assert len(modules) > 100, "the walk found too few modules of dialogs, scheduler, knowledge, storage, authoring"
    broken = _broken(sdk_violations, modules)
    assert not broken, "outside SDKs imported where the room may not:\n" + "\n".join(broken)


def test_every_outside_sdk_is_installed_and_every_sdk_rule_is_a_room():
    """A name misspelt in OUTSIDE, or a rule for a room that is not one, would be a rule that cannot fail."""
    assert not [name for name in OUTSIDE if importlib.util.find_spec(name) is None]
    assert set(SDK_RULES) <= set(ROOMS)
    assert not [sdk for rule in SDK_RULES.values() for sdk in rule.may_import if sdk not in OUTSIDE]


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
        ("bot.pipeline", "from bot.core import Lessonbot\n", RULES["bot.pipeline"]),
        ("bot.pipeline", "from bot import core\n", RULES["bot.pipeline"]),
        ("bot.pipeline", "from channels.telegram import TelegramChannel\n", RULES["bot.pipeline"]),
        ("bot.dispatcher", "def f():\n    from bot.app import create_app\n", RULES["bot.dispatcher"]),
        ("bot.dispatcher", "from bot.payments import payment_desk\n", RULES["bot.dispatcher"]),
        ("bot.routing", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.dashboard import Access\n",
         RULES["bot.routing"]),
        ("bot.activity", "from .cli import main\n", RULES["bot.activity"]),
        ("bot.ratelimit", "import importlib\nimportlib.import_module('bot.rasa_actions')\n", RULES["bot.ratelimit"]),
    ],
)
def test_a_planted_bad_import_is_caught(module, source, rule):
    broken = violations(module, source)
    assert len(broken) == 1 and broken[0].startswith(f"{module}:") and broken[0].endswith(rule.says)


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("dialogs.fake", "from telegram import InlineKeyboardMarkup\n", SDK_RULES["dialogs"]),
        ("dialogs.fake", "def f():\n    import stripe\n", SDK_RULES["dialogs"]),
        ("dialogs.fake", "from langchain_openai import ChatOpenAI\n", SDK_RULES["dialogs"]),
        ("dialogs.payments.fake", "import rasa_sdk.events\n", SDK_RULES["dialogs"]),
        ("scheduler.fake", "from slack_sdk.web.async_client import AsyncWebClient\n", SDK_RULES["scheduler"]),
        ("scheduler.fake", "import importlib\nimportlib.import_module('slack_bolt')\n", SDK_RULES["scheduler"]),
        ("storage.fake", "import httpx\n", SDK_RULES["storage"]),
        ("storage.fake", "import chromadb\n", SDK_RULES["storage"]),
        ("authoring.fake", "from starlette.requests import Request\n", SDK_RULES["authoring"]),
        ("knowledge.fake", "from twilio.rest import Client\n", SDK_RULES["knowledge"]),
        ("knowledge.fake", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import aiohttp\n",
         SDK_RULES["knowledge"]),
    ],
)
def test_a_planted_outside_sdk_is_caught(module, source, rule):
    broken = sdk_violations(module, source)
    assert len(broken) == 1 and broken[0].startswith(f"{module}:") and broken[0].endswith(rule.says)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("knowledge.fake", "from langchain_openai import ChatOpenAI\nimport chromadb\nimport openai\n"),
        ("storage.fake", "from sqlalchemy import select\nimport psycopg\nimport alembic\n"),
        ("dialogs.fake", "from reportlab.pdfgen import canvas\nimport fsrs\nfrom . import stripe\n"),
        ("dialogs.fake", "import telegramish\n"),  # a name that starts like an SDK's is not one
        ("channels.telegram.fake", "from telegram import Bot\nimport httpx\n"),
        ("bot.fake", "import stripe\nfrom starlette.responses import Response\n"),
    ],
)
def test_an_allowed_outside_import_passes(module, source):
    assert sdk_violations(module, source) == []


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
        ("bot.pipeline", "from bot.activity import Activity\nfrom bot.config import Settings\nfrom bot.observability "
                         "import MESSAGES_IN\nfrom dialogs.turn import Turn\nfrom storage.db import Database\n", False),
        ("bot.dispatcher", "from bot.ratelimit import RateLimiter\nfrom bot.channel import Delivery\n", False),
        ("bot.core", "from bot import pipeline\nfrom bot.dashboard import dashboard_routes\n", False),
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
