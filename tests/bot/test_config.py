"""Settings: a bad value stops start-up with a message naming the variable and what it expects."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.config import ConfigError, load_settings


def test_defaults_need_no_configuration(tmp_path):
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'lessonbot.db'}"
    key = settings.resolved_secret_key
    assert len(key) == 64 and (tmp_path / "secret_key").read_text() == key
    assert load_settings(_env_file=None, data_dir=tmp_path).resolved_secret_key == key  # kept across restarts


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "eighty", "PORT"),
        ("PORT", "70000", "less than or equal to 65535"),
        ("ADMINS", "telegram12345", "is not channel:id"),
        ("ADMINS", "fax:123", "channels: console, web"),
        ("DATABASE_URL", "mysql://x", "sqlite:/// or postgresql://"),
        ("SECRET_KEY", "short", "at least 16 characters"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("STARS_PER_UNIT", "EUR:55", "is not CURRENCY=STARS"),
        ("STARS_PER_UNIT", "EUR=-1", "a positive number"),
        ("STRIPE_SECRET_KEY", "pk_test_123", "never the publishable pk_ key"),
        ("WEB_CHAT_SESSION_IDLE_DAYS", "0", "greater than 0"),
        ("WEB_CHAT_STREAMS_PER_ADDRESS", "none", "WEB_CHAT_STREAMS_PER_ADDRESS"),
    ],
)
def test_bad_values_are_named(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert variable in str(caught.value) and expected in str(caught.value)


def test_certificates_name_the_public_address_or_where_the_server_listens(tmp_path):
    public = load_settings(_env_file=None, data_dir=tmp_path, public_base_url="https://bot.example.com/")
    assert public.site_url == "https://bot.example.com"
    assert load_settings(_env_file=None, data_dir=tmp_path, port=8080).site_url == "http://127.0.0.1:8080"
    # Listening everywhere is no address to print: this machine's own name is.
    assert load_settings(_env_file=None, data_dir=tmp_path, host="0.0.0.0").site_url == "http://localhost:8000"


def test_admins_are_parsed(monkeypatch):
    monkeypatch.setenv("ADMINS", " telegram:12345, slack:T01/U02 ,whatsapp:+15551234567,")
    settings = load_settings(_env_file=None)
    assert settings.admins == ("telegram:12345", "slack:T01/U02", "whatsapp:+15551234567")
    assert settings.is_admin("slack", "T01/U02") and not settings.is_admin("slack", "U02")


def test_the_cli_reports_a_bad_setting_and_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "db", "current"],
        env={"PORT": "abc", "PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path)},
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 2
    assert "Configuration error" in result.stderr and "PORT" in result.stderr
    assert "Traceback" not in result.stderr
