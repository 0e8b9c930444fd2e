"""Settings: a bad value stops start-up with a message naming the variable and what it expects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, knowledge_settings, load_settings


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
        ("ADMINS", "whatsapp:ann", "no WhatsApp number"),
        ("DATABASE_URL", "mysql://x", "sqlite:/// or postgresql://"),
        ("SECRET_KEY", "short", "at least 16 characters"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("STARS_PER_UNIT", "EUR:55", "is not CURRENCY=STARS"),
        ("STARS_PER_UNIT", "EUR=-1", "a positive number"),
        ("STRIPE_SECRET_KEY", "pk_test_123", "never the publishable pk_ key"),
        ("WEB_CHAT_SESSION_IDLE_DAYS", "0", "greater than 0"),
        ("WEB_CHAT_STREAMS_PER_ADDRESS", "none", "WEB_CHAT_STREAMS_PER_ADDRESS"),
        # a URL SQLAlchemy cannot read is refused here, not met as a traceback when the database is opened
        ("DATABASE_URL", "sqlite", "sqlite:/// or postgresql://"),
        ("DATABASE_URL", "sqlite:", "sqlite:/// or postgresql://"),
        ("DATABASE_URL", "postgresql://lb@db:port/lessonbot", "sqlite:/// or postgresql://"),
        # a database in memory would be each process's own, empty: `db upgrade` could never reach `serve`'s
        ("DATABASE_URL", "sqlite://", "in memory lasts as long as one process"),
        ("DATABASE_URL", "sqlite:///:memory:", "in memory lasts as long as one process"),
        ("DATABASE_URL", "sqlite:///file:lb?mode=memory&uri=true", "in memory lasts as long as one process"),
        # the answer bound of PostgreSQL's round trips (storage.postgres_statements): refused here, not at the first
        # connection
        ("DATABASE_URL", "postgresql://lb@db/lessonbot?answer_timeout=soon", "expected ?answer_timeout=N"),
        ("DATABASE_URL", "postgresql://lb@db/lessonbot?answer_timeout=-1", "expected ?answer_timeout=N"),
        ("DATABASE_URL", "postgresql://lb@db/lessonbot?answer_timeout=inf", "expected ?answer_timeout=N"),
        ("DATABASE_URL", "postgresql://lb@db/lessonbot?answer_timeout=nan", "expected ?answer_timeout=N"),
        ("DATABASE_URL", "postgresql://lb@db/lb?answer_timeout=1&answer_timeout=2", "expected ?answer_timeout=N"),
        # no inf or nan, and durations within bounds: each becomes a timedelta or a timeout
        ("WORKER_LEASE_SECONDS", "inf", "finite number"),
        ("WORKER_POLL_SECONDS", "nan", "finite number"),
        ("LEADER_LEASE_SECONDS", "1e308", "less than or equal to 3600"),
        ("OUTBOX_BACKOFF_MAX_SECONDS", "1e308", "less than or equal to 86400"),
        ("WEB_CHAT_SESSION_IDLE_DAYS", "1e9", "less than or equal to 3650"),
        ("KNOWLEDGE_CACHE_SECONDS", "99999999999999999999", "less than or equal to"),
        ("OUTBOX_MAX_ATTEMPTS", "2000", "less than or equal to 100"),
        ("STARS_PER_UNIT", "EUR=nan", "a positive number"),
    ],
)
def test_bad_values_are_named(monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert variable in str(caught.value) and expected in str(caught.value)


ADDRESSES = ["PUBLIC_BASE_URL", "TELEGRAM_API_BASE_URL", "TWILIO_API_BASE_URL", "SLACK_API_BASE_URL",
             "STRIPE_API_BASE_URL", "OPENAI_BASE_URL", "RASA_URL", "RASA_NLU_URL", "RASA_ACTIONS_PUBLIC_URL"]


@pytest.mark.parametrize("variable", ADDRESSES)
@pytest.mark.parametrize("value", ["bot.example.com", "ftp://bot.example.com", "https://", "http://:8000/v1",
                                   "https://bot.example.com:port", "https://bot example.com", "http://[::1"])
def test_an_address_is_an_http_url_with_a_host(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert f"{variable}: Value error, expected an http(s) address with a host, e.g. http" in str(caught.value)


@pytest.mark.parametrize("variable", ADDRESSES)
def test_an_address_with_a_host_is_taken_and_empty_only_where_that_turns_something_off(monkeypatch, variable):
    monkeypatch.setenv(variable, " https://bot.example.com:8443/path/ ")
    kept = getattr(load_settings(_env_file=None), variable.lower())
    assert kept == ("https://bot.example.com:8443/path" if variable.startswith("RASA_") else
                    "https://bot.example.com:8443/path/")  # (an API's own trailing / kept: Slack's paths need it)
    monkeypatch.setenv(variable, "")
    if Settings.model_fields[variable.lower()].default:  # an API's address: no default means none at all
        with pytest.raises(ConfigError, match=variable):
            load_settings(_env_file=None)
    else:
        assert getattr(load_settings(_env_file=None), variable.lower()) == ""


@pytest.mark.parametrize("variable", ["CHROMA_PATH", "KNOWLEDGE_TOKENIZER_DIR", "RASA_NLU_INTENTS"])
def test_an_optional_path_left_empty_is_its_default_not_the_current_folder(monkeypatch, tmp_path, variable):
    monkeypatch.setenv(variable, "")
    settings = load_settings(_env_file=None, data_dir=tmp_path)
    assert getattr(settings, variable.lower()) is None
    if variable == "CHROMA_PATH":  # "empty means DATA_DIR/chroma"
        assert knowledge_settings(settings).chroma_path == tmp_path / "chroma"


@pytest.mark.parametrize("variable", ["DATA_DIR", "SAMPLE_COURSE_DIR"])
def test_a_folder_left_empty_is_refused_not_taken_for_the_current_one(monkeypatch, variable):
    monkeypatch.setenv(variable, " ")
    with pytest.raises(ConfigError, match=f"{variable}: Value error, empty: give a folder"):
        load_settings(_env_file=None)


@pytest.mark.parametrize("value", ["", " "])
def test_a_host_left_empty_is_refused_not_taken_for_every_interface(monkeypatch, value):
    """An empty address is the wildcard: `HOST=` would have served the web chat and the dashboard to the network."""
    monkeypatch.setenv("HOST", value)
    with pytest.raises(ConfigError, match="HOST: Value error, empty: give an address, 127.0.0.1 for this machine"):
        load_settings(_env_file=None)


def test_certificates_name_the_public_address_or_where_the_server_listens(tmp_path):
    public = load_settings(_env_file=None, data_dir=tmp_path, public_base_url="https://bot.example.com/")
    assert public.site_url == "https://bot.example.com"
    assert load_settings(_env_file=None, data_dir=tmp_path, port=8080).site_url == "http://127.0.0.1:8080"
    # Listening everywhere is no address to print: this machine's own name is.
    assert load_settings(_env_file=None, data_dir=tmp_path, host="0.0.0.0").site_url == "http://localhost:8000"


def test_admins_are_parsed(monkeypatch):
    monkeypatch.setenv("ADMINS", " telegram:12345, slack:T01/U02 ,whatsapp:+15551234567,whatsapp:44 20 7946 0958,")
    settings = load_settings(_env_file=None)
    assert settings.admins == ("telegram:12345", "slack:T01/U02", "whatsapp:+15551234567", "whatsapp:+442079460958")
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


@pytest.mark.parametrize("bound", ["0", "2.5", "30", " 30"])
def test_an_answer_bound_of_seconds_is_taken(monkeypatch, bound):
    url = f"postgresql://lb@db/lessonbot?connect_timeout=5&answer_timeout={bound}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert load_settings(_env_file=None).database_url == url


@pytest.mark.parametrize("password", ["hunter2", "pa/ss", "s3cr@t"])
def test_a_password_in_a_bad_database_url_is_not_shown(monkeypatch, password):
    monkeypatch.setenv("DATABASE_URL", f"postgresql://lb:{password}@db:port/lessonbot")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert password not in str(caught.value) and "postgresql://lb:***@db:port/lessonbot" in str(caught.value)


def test_every_duration_has_an_upper_bound():
    # inf, 1e308: a timedelta of that many seconds overflows (the worker's lease, the leader's), so none may get there
    durations = [name for name in Settings.model_fields if name.endswith(("_seconds", "_days", "_hours"))]
    unbounded = [name for name in durations
                 if not any(getattr(rule, "le", None) is not None for rule in Settings.model_fields[name].metadata)]
    assert durations and unbounded == []


def test_an_env_file_that_is_not_utf8_is_named(tmp_path):
    env = tmp_path / "lessonbot.env"
    env.write_bytes(b"LOG_LEVEL=INFO\nPORT=80\xff80\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=env)
    assert str(caught.value).splitlines() == [
        "Configuration error:",
        f"  {env}: line 2 holds the byte 0xff, which is not UTF-8. Save the file as UTF-8 (or fix that line), or set "
        "the variable in the environment instead.",
    ]


def test_an_env_file_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("PORT=8080\n")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(env))

    monkeypatch.setattr("pydantic_settings.sources.providers.dotenv.dotenv_values", refused)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=env)
    assert f"{env} cannot be read (Permission denied)" in str(caught.value)


def _lessonbot(tmp_path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *argv],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parents[2]), "DATA_DIR": str(tmp_path / "var"),
             **env},
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )


@pytest.mark.parametrize(("argv", "env", "says"), [
    (["course", "list"], {"DATABASE_URL": "sqlite"}, "DATABASE_URL: Value error, expected a sqlite:/// or "),
    (["course", "list"], {"DATABASE_URL": "sqlite:"}, "DATABASE_URL: Value error, expected a sqlite:/// or "),
    (["course", "list"], {"DATABASE_URL": "postgresql://lb:hunter2@127.0.0.1:1/lb?answer_timeout=soon"},
     "DATABASE_URL: Value error, expected ?answer_timeout=N"),
    (["serve"], {"WORKER_LEASE_SECONDS": "inf"}, "WORKER_LEASE_SECONDS: Input should be a finite number"),
    (["serve"], {"LEADER_LEASE_SECONDS": "1e308"}, "LEADER_LEASE_SECONDS: Input should be less than or equal to"),
    # an address without its scheme would print broken links (dashboard sign-in, certificates): refused at start-up
    (["serve"], {"PUBLIC_BASE_URL": "bot.example.com"},
     "PUBLIC_BASE_URL: Value error, expected an http(s) address with a host, e.g. https://bot.example.com (got "
     "'bot.example.com')"),
    (["chat", "--user", "pat"], {"PUBLIC_BASE_URL": "bot.example.com"}, "PUBLIC_BASE_URL: Value error, expected"),
])
def test_the_cli_names_a_setting_it_cannot_use(tmp_path, argv, env, says):
    result = _lessonbot(tmp_path, *argv, **env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == "Configuration error:" and says in result.stderr
    assert not (tmp_path / "var").exists()  # stopped before anything was opened


def test_the_cli_names_an_env_file_that_is_not_utf8(tmp_path):
    (tmp_path / ".env").write_bytes(b"PORT=80\xff80\n")
    result = _lessonbot(tmp_path, "course", "list")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "Configuration error:",
        "  .env: line 1 holds the byte 0xff, which is not UTF-8. Save the file as UTF-8 (or fix that line), or set "
        "the variable in the environment instead.",
    ]
