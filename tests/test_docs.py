"""The docs stay true: every setting is documented in .env.example and the README, every CLI command in the README."""

from __future__ import annotations

import re
from pathlib import Path

from bot.cli import build_parser
from bot.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def setting_names() -> list[str]:
    return [name.upper() for name in Settings.model_fields]


def test_every_setting_is_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert not set(setting_names()) - documented, "add these to .env.example"
    assert not documented - set(setting_names()), ".env.example names settings that do not exist"


def test_every_example_line_of_env_example_can_be_uncommented_as_it_stands(tmp_path):
    """The file invites copying it and filling in what is used: each `# NAME=value` line, uncommented alone, is a
    setting Lessonbot starts with (a note after the value, on the same line, would become part of the value)."""
    examples = re.findall(r"^# ([A-Z][A-Z0-9_]+=.*)$", (ROOT / ".env.example").read_text(), re.MULTILINE)
    refused = []
    for line in examples:
        if line.split("=", 1)[0].lower() not in Settings.model_fields:
            continue
        env = tmp_path / ".env"
        env.write_text(line + "\n")
        try:
            load_settings(_env_file=env, data_dir=tmp_path / "var")
        except ConfigError as exc:
            refused.append(f"{line}: {exc}")
    assert len(examples) > 50 and not refused


def test_every_setting_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    assert not [name for name in setting_names() if f"`{name}`" not in readme], "add these to the README's table"


def test_every_cli_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    assert not [name for name in commands if f"lessonbot {name}" not in readme]


def test_readme_shows_the_front_door():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_the_makefile_asks_for_the_python_the_package_requires():
    import tomllib

    wanted = re.search(r"^PYTHON_VERSION := (\d+)\.(\d+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert wanted, "the Makefile names the Python it builds .venv with: PYTHON_VERSION := 3.x"
    major, minor = map(int, wanted.groups())
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={major}.{minor},<{major}.{minor + 1}"


def test_the_connections_one_process_may_hold_are_counted_in_full_where_the_docs_and_compose_size_postgresql():
    """Every PostgreSQL connection one long-running process may hold at once: its Database's pools, the notices'
    listening and speaking connections (storage/notices.py), and the clock's job-store engine on the leader
    (scheduler/clock.py; APScheduler uses it under one lock, so one connection at a time)."""
    from storage.db import Database

    notices, job_store = 2, 1
    most = Database("postgresql://lessonbot@127.0.0.1:1/lessonbot").most_connections + notices + job_store
    architecture = (ROOT / "docs/architecture.md").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    assert re.findall(r"one process may hold up to (\d+)", architecture) == [str(most)]
    assert re.findall(r"size it as (\d+) × processes", architecture) == [str(most)]
    assert re.findall(r"may hold up to (\d+) connections", compose) == [str(most)]
