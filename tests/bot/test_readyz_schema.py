"""/readyz names the right way out of a schema that is not the code's: behind, `lessonbot db upgrade`; ahead (a newer
Lessonbot migrated it), what the command line says of it, since no upgrade brings it back."""

from __future__ import annotations

import httpx

from bot.app import create_app
from bot.config import load_settings
from tests.bot.test_cli_database import NEWER, _migrated_by_a_newer_lessonbot


async def _readiness(url: str, tmp_path) -> httpx.Response:
    settings = load_settings(_env_file=None, database_url=url, data_dir=tmp_path / "var",
                             secret_key="test-secret-key-0123456789", log_format="text")
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://lessonbot.test"
    ) as client:
        return await client.get("/readyz")


async def test_a_database_a_newer_lessonbot_migrated_is_not_told_to_upgrade(unmigrated_url, tmp_path):
    stamped = _migrated_by_a_newer_lessonbot(unmigrated_url)

    ready = await _readiness(unmigrated_url, tmp_path)

    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    reason = ready.json()["reason"]
    assert reason.startswith(f"database schema is at {', '.join(sorted(stamped))}, the code expects ")
    assert reason.endswith(f". {NEWER}") and "db upgrade" not in reason


async def test_a_database_behind_the_code_is_still_told_to_upgrade(unmigrated_url, tmp_path):
    ready = await _readiness(unmigrated_url, tmp_path)
    assert ready.status_code == 503
    assert ready.json()["reason"].endswith(": run `lessonbot db upgrade`") and "is at nothing" in ready.json()["reason"]
